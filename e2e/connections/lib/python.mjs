// The e2e Python environment (e2e/python/.venv with its locked requirements), shared by the
// tests here that run Python: the official `mcp` SDK client and the Prometheus text parser of
// `prometheus-client` (the reference client library).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pyDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'python');

/**
 * The interpreter of e2e/python/.venv with the locked requirements installed: created and
 * installed the way e2e/python/run.sh does when missing or when requirements.txt changed.
 */
export function pythonVenv() {
    const venv = path.join(pyDir, '.venv');
    const python = path.join(venv, 'bin', 'python');
    const requirements = path.join(pyDir, 'requirements.txt');
    const stamp = path.join(venv, '.e2e-requirements-stamp');
    const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    if (!existsSync(python)) {
        const system = process.env.PYTHON || 'python3';
        try {
            run(system, ['-c', 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)']);
        } catch (err) {
            throw new Error(`Python >= 3.10 is required (${system}): ${err.stderr ?? err.message}`);
        }
        run(system, ['-m', 'venv', venv]);
    }
    const locked = readFileSync(requirements);
    if (!existsSync(stamp) || !readFileSync(stamp).equals(locked)) {
        run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements]);
        copyFileSync(requirements, stamp);
    }
    return python;
}

/**
 * `text` (Prometheus text exposition) read by prometheus-client's own parser: the families, each
 * `{ name, type, help, samples: [{ name, labels, value }] }` (a counter family is named without
 * `_total`; its samples keep it).
 */
export function parsePrometheus(text) {
    const script = [
        'import json, sys',
        'from prometheus_client.parser import text_string_to_metric_families',
        'out = [{"name": f.name, "type": f.type, "help": f.documentation,',
        '        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}',
        '       for f in text_string_to_metric_families(sys.stdin.read())]',
        'print(json.dumps(out))'
    ].join('\n');
    return JSON.parse(execFileSync(pythonVenv(), ['-c', script], { input: text, timeout: 60_000 }).toString());
}
