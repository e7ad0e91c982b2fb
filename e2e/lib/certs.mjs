// A throwaway CA and a certificate for localhost / 127.0.0.1, made with the openssl CLI, for the
// suites that run an HTTPS server the binary is told to trust (its extra_ca_file settings).
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

function openssl(dir, args) {
    try {
        execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
        throw new Error(`openssl ${args.join(' ')}: ${err.stderr?.toString() ?? err.message}`);
    }
}

/** Writes ca.pem (+ key) and leaf.pem/leaf.key for localhost and 127.0.0.1 into `dir`. */
export async function makeCerts(dir, caName = 'bridgekeeper e2e CA') {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${caName}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
    openssl(dir, ['req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost']);
    await writeFile(path.join(dir, 'leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    openssl(dir, ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'leaf.ext']);
}
