// Per-scenario summary of a run.sh output directory: every scenario of every phase
// with its failed (FAILURE or WARNING) checks, each marked as in the baseline or not.
//
//   node summary.mjs <out dir> <expected-failures.yaml>
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const [outDir, baselineFile] = process.argv.slice(2);

// The baseline's client: entries ("scenario" or "scenario:check"), enough YAML for that file.
const baseline = new Set();
let section;
for (const line of readFileSync(baselineFile, 'utf8').split('\n')) {
    const top = line.match(/^([a-z]+):/);
    if (top) section = top[1];
    const entry = line.match(/^\s+-\s+([^\s#]+)/);
    if (entry && section === 'client') baseline.add(entry[1]);
}

function* checkFiles(dir) {
    for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) yield* checkFiles(p);
        else if (name === 'checks.json') yield p;
    }
}

const severity = { FAILURE: 3, WARNING: 2, SUCCESS: 1, INFO: 0, SKIPPED: 0 };
const phases = readdirSync(outDir).filter(d => statSync(path.join(outDir, d)).isDirectory())
    // In run.sh's order: the two suite runs, then the draft scenarios.
    .sort((a, b) => Number(a.startsWith('draft')) - Number(b.startsWith('draft')) || a.localeCompare(b));
let total = 0;
for (const phase of phases) {
    console.log(`=== ${phase} ===`);
    const rows = [];
    for (const file of checkFiles(path.join(outDir, phase))) {
        const rel = path.relative(path.join(outDir, phase), path.dirname(file)).split(path.sep).join('/');
        const scenario = rel.replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
        const checks = JSON.parse(readFileSync(file, 'utf8'));
        // One verdict per check id, the most severe (as the baseline comparison does).
        const byId = new Map();
        for (const c of checks) {
            const prev = byId.get(c.id);
            if (!prev || severity[c.status] > severity[prev.status]) byId.set(c.id, c);
        }
        const passed = [...byId.values()].filter(c => c.status === 'SUCCESS').length;
        const bad = [...byId.values()].filter(c => c.status === 'FAILURE' || c.status === 'WARNING');
        rows.push({ scenario, passed, bad, dir: path.dirname(file) });
    }
    rows.sort((a, b) => a.scenario.localeCompare(b.scenario));
    for (const r of rows) {
        total++;
        const wholeExpected = baseline.has(r.scenario);
        const mark = r.bad.length === 0 ? '✓' : r.bad.every(c => wholeExpected || baseline.has(`${r.scenario}:${c.id}`)) ? '~' : '✗';
        console.log(`${mark} ${r.scenario}: ${r.passed} check ids passed${r.bad.length ? `, ${r.bad.length} failed` : ''}`);
        for (const c of r.bad) {
            const expected = wholeExpected || baseline.has(`${r.scenario}:${c.id}`) ? 'expected' : 'NOT IN BASELINE';
            const why = (c.errorMessage || c.description || '').replace(/\s+/g, ' ').slice(0, 300);
            console.log(`    ${c.status} ${c.id} (${expected}): ${why}`);
        }
    }
    console.log();
}
console.log('✓ passed   ~ failed only in checks the baseline expects   ✗ a failure outside the baseline');
if (total === 0) {
    console.error(`no checks.json under ${outDir}`);
    process.exit(1);
}
