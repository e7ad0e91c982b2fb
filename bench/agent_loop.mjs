#!/usr/bin/env node
// Agent-loop overhead per step, the model's own latency excluded: `use-agent` runs of N steps
// through Bridgekeeper against the same work done by hand, in one run, in alternating rounds.
// Node.js >= 20, standard library only.
//
//   node bench/agent_loop.mjs BRIDGEKEEPER_BIN [STEPS_LIST] [ITERATIONS] [ROUNDS]
//
// Starts the scripted OpenAI-compatible server (e2e/lib/scripted-llm.mjs, in this process: each run
// sets its script) and a Bridgekeeper (temporary SQLite, one model on the scripted server, a signup
// grant no run can spend), signs one person up through the pages and makes a PAT with
// `universal-mcp-read-write`. For each N of STEPS_LIST (default "1 4 8"; at most agents.max_steps,
// 8 by default), the model's script is N-1 turns each calling `whoami` (a built-in the default agent
// enables: the cheapest tool there is), then an answer. Then ROUNDS rounds, alternating which goes
// first, of ITERATIONS one at a time of:
//   agent     one `tools/call use-agent` on /mcp (X-Response-Format: json): N model turns (credits
//             reserved and settled for each), N-1 tool calls through the gateway, the loop itself;
//   baseline  the same work by hand: the N chat-completions bodies the loop sent (recorded in a
//             warm-up run) posted straight to the scripted server, and N-1 `tools/call whoami` on
//             /mcp with the same PAT.
// So agent - baseline is what the loop adds (tool listing, prompt building, fencing, credits per
// turn, audit events, one more /mcp request) and the scripted model's own time cancels out.
// The chat-completions proxy's own overhead is bench/llm_proxy.mjs's (run.sh runs both).
// Prints key=value lines (prefix agent_loop_), per N: agent_n<N>_ms_p50, baseline_n<N>_ms_p50,
// overhead_n<N>_ms_per_step and agent_vs_baseline_n<N>_ratio (medians of all iterations).
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { personWithPat, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { startScriptedLlm } from '../e2e/lib/scripted-llm.mjs';

const [bin, stepsArg = '1 4 8', iterArg = '20', roundsArg = '2'] = process.argv.slice(2);
if (!bin) {
    console.error('usage: agent_loop.mjs BRIDGEKEEPER_BIN [STEPS_LIST] [ITERATIONS] [ROUNDS]');
    process.exit(2);
}
const STEPS = stepsArg.split(/[ ,]+/).filter(Boolean).map(Number);
const ITERATIONS = Number(iterArg);
const ROUNDS = Number(roundsArg);
if (STEPS.some(n => !(n >= 1 && n <= 8))) {
    console.error('agent_loop.mjs: each N must be 1 to 8 (agents.max_steps)');
    process.exit(2);
}
const children = [];
const dataDir = mkdtempSync(join(tmpdir(), 'bk-agent-bench-'));
const cleanup = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const llm = await startScriptedLlm({ replies: [{ content: 'ok' }] });
const KEY = 'sk-bench-agent-upstream-key';
const models = `[{id="bench-model", base_url="${llm.baseUrl}", api_key_env="BENCH_LLM_KEY", ` +
    'prompt_credits_per_million=1000, completion_credits_per_million=2000}]';
const base = await startBridgekeeper(children, bin, dataDir, {
    BRIDGEKEEPER_LLM__MODELS: models,
    BRIDGEKEEPER_CREDITS__SIGNUP_GRANT: '1000000000000',
    BENCH_LLM_KEY: KEY,
});
// A person: signed up and in through the pages, then a PAT for /mcp.
const pat = await personWithPat(base, ['universal-mcp-read-write'], {
    email: `bench-agent-${Date.now()}@example.com`,
    password: 'bench password for the agent loop',
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
/** One POST: resolves with {status, text}. */
function post(url, headers, body) {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json',
            'content-length': Buffer.byteLength(body), ...headers } }, r => {
            const chunks = [];
            r.on('data', c => chunks.push(c));
            r.on('end', () => resolve({ status: r.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
        });
        req.on('error', reject);
        req.end(body);
    });
}
const mcpHeaders = { authorization: `Bearer ${pat}`, 'x-response-format': 'json' };
const rpc = (name, args) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });
const useAgentBody = rpc('use-agent', { prompt: 'Who am I? Ask as often as your script says.' });
const whoamiBody = rpc('whoami', {});

function scriptOf(n) {
    const replies = [];
    for (let i = 1; i < n; i++) replies.push({ tool_calls: [{ id: `call_${i}`, name: 'whoami', arguments: {} }] });
    replies.push({ content: 'You are the bench account.' });
    return { replies };
}

/** One use-agent run; checks it took exactly n steps and every tool call succeeded. */
async function agentRun(n) {
    llm.setScript(scriptOf(n));
    const t = performance.now();
    const r = await post(`${base}/mcp`, mcpHeaders, useAgentBody);
    const ms = performance.now() - t;
    let s;
    try {
        s = JSON.parse(r.text).result?.structuredContent;
    } catch { /* below */ }
    if (r.status !== 200 || s?.steps !== n || s.stopReason !== 'answered' || s.toolCalls.length !== n - 1 || s.toolCalls.some(c => !c.ok)) {
        throw new Error(`use-agent (N=${n}) answered ${r.status}: ${r.text.slice(0, 500)}`);
    }
    return ms;
}

/** The same work by hand: the recorded model bodies straight to the scripted server, and n-1 whoami calls. */
async function baselineRun(n, bodies) {
    llm.setScript(scriptOf(n));
    const t = performance.now();
    for (let i = 0; i < n; i++) {
        const r = await post(`${llm.baseUrl}/chat/completions`, { authorization: `Bearer ${KEY}` }, bodies[i]);
        if (r.status !== 200) throw new Error(`scripted server answered ${r.status}`);
        if (i < n - 1) {
            const w = await post(`${base}/mcp`, mcpHeaders, whoamiBody);
            if (w.status !== 200 || !w.text.includes('"result"')) throw new Error(`whoami answered ${w.status}: ${w.text.slice(0, 300)}`);
        }
    }
    return performance.now() - t;
}

const median = xs => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : 0;
};

console.log(`agent_loop_iterations=${ITERATIONS}`);
console.log(`agent_loop_rounds=${ROUNDS}`);
for (const n of STEPS) {
    // Warm-up: one loop run whose model bodies become the baseline's, then a few of each kind.
    llm.requests.length = 0;
    await agentRun(n);
    const bodies = llm.requests.map(r => JSON.stringify(r.body));
    if (bodies.length !== n) throw new Error(`expected ${n} model requests, saw ${bodies.length}`);
    for (let i = 0; i < 3; i++) {
        await agentRun(n);
        await baselineRun(n, bodies);
    }
    llm.requests.length = 0;
    const times = { agent: [], baseline: [] };
    for (let r = 0; r < ROUNDS; r++) {
        const order = r % 2 === 0 ? ['agent', 'baseline'] : ['baseline', 'agent'];
        for (const kind of order) {
            for (let i = 0; i < ITERATIONS; i++) {
                times[kind].push(kind === 'agent' ? await agentRun(n) : await baselineRun(n, bodies));
            }
            llm.requests.length = 0;
        }
    }
    const a = median(times.agent);
    const b = median(times.baseline);
    console.log(`agent_loop_agent_n${n}_ms_p50=${a.toFixed(2)}`);
    console.log(`agent_loop_baseline_n${n}_ms_p50=${b.toFixed(2)}`);
    console.log(`agent_loop_overhead_n${n}_ms_per_step=${((a - b) / n).toFixed(2)}`);
    console.log(`agent_loop_agent_vs_baseline_n${n}_ratio=${(a / b).toFixed(3)}`);
}
agent.destroy();
await llm.close();
process.exit(0);
