// A Client ID Metadata Document (CIMD) publisher for the tests: a throwaway CA
// and a certificate for localhost/127.0.0.1 (openssl CLI), and a Node https
// server on 127.0.0.1 serving the client's metadata document at
// https://localhost:<port>/client.json. The server binary is told to trust the
// CA (client_metadata_documents.extra_ca_file).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { makeCerts } from '../../lib/certs.mjs';

/**
 * Starts the document server. The document's client_id is its own URL, its one
 * redirect URI a loopback http://127.0.0.1:<port>/callback (nothing listens there:
 * the test reads the code from the consent page's 303).
 *
 * @returns {Promise<{clientId: string, redirectUrl: string, host: string, caFile: string,
 *   document: object, fetches: {path: string, userAgent?: string}[], stop: () => Promise<void>}>}
 */
export async function startDocumentServer({ clientName }) {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-cimd-'));
    await makeCerts(dir);
    const fetches = [];
    let document;
    const server = createServer(
        { cert: await readFile(path.join(dir, 'leaf.pem')), key: await readFile(path.join(dir, 'leaf.key')) },
        (req, res) => {
            fetches.push({ path: req.url, userAgent: req.headers['user-agent'] });
            if (req.method === 'GET' && req.url === '/client.json') {
                const body = JSON.stringify(document);
                res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=600', 'Content-Length': Buffer.byteLength(body) });
                res.end(body);
            } else {
                res.writeHead(404, { 'Content-Length': 0 });
                res.end();
            }
        }
    );
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address();
    const clientId = `https://localhost:${port}/client.json`;
    const redirectUrl = `http://127.0.0.1:${port}/callback`;
    document = {
        client_id: clientId,
        client_name: clientName,
        redirect_uris: [redirectUrl],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none'
    };
    async function stop() {
        server.closeAllConnections?.();
        await new Promise(resolve => server.close(resolve));
        await rm(dir, { recursive: true, force: true });
    }
    return { clientId, redirectUrl, host: 'localhost', caFile: path.join(dir, 'ca.pem'), document, fetches, stop };
}
