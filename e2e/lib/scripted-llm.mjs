#!/usr/bin/env node
// A scripted OpenAI-compatible chat-completions server for tests and the bench (no model can be
// fetched here). Node.js >= 20, standard library only (node:http). The Rust integration tests use
// the same server and script format (crates/bridgekeeper/tests/it/scripted_llm.rs).
//
// It answers POST /v1/chat/completions from a script, deterministically, streamed (server-sent
// events) or not, and records every request it was sent (lower-case headers and JSON body), so a
// test can assert what reached the prompt. The script:
//
//   {"replies": [{
//       "content": "Hello",                                   the assistant's text (optional)
//       "tool_calls": [{"id": "call_1", "name": "search", "arguments": {"q": "x"}}],
//                                                             arguments: an object or JSON text
//       "usage": {"prompt_tokens": 10, "completion_tokens": 5},    default 10 and 5
//       "omit_usage": false,                                  true: report no usage at all
//       "finish_reason": "stop",                              default: tool_calls if any, else stop
//       "delay_ms": 0,                                        before the answer (or the first chunk)
//       "chunks": ["Hel", "lo"],                              how the content is streamed (default: one chunk)
//       "chunk_delay_ms": 0,                                  between streamed chunks
//       "status": 500, "error": {"message": "boom"}           answer this error instead
//   }]}
//
// Replies are used in order; once they run out, the last one repeats. A streamed answer is: a role
// chunk, the content chunks, one chunk per tool call, a finish chunk, then — when the request asked
// with stream_options.include_usage — a usage chunk with no choices, and `data: [DONE]`.
//
// As a module:   const llm = await startScriptedLlm(script); llm.baseUrl  // http://127.0.0.1:PORT/v1
//                llm.requests (array), llm.setScript(script), await llm.close()
// As a program:  node e2e/lib/scripted-llm.mjs [--port N] [--script FILE.json] [--no-record]
//                prints {"baseUrl": "…"} on one line, then serves until killed.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const sleep = ms => new Promise(r => setTimeout(r, ms));

function repliesOf(script) {
    const r = script && Array.isArray(script.replies) && script.replies.length ? script.replies : [{ content: 'ok' }];
    return r;
}

/** The answer to `body` per `reply`: {status, json} or {stream: [frames]}. */
function answerOf(reply, body) {
    if (Number.isInteger(reply.status) && reply.status >= 400) {
        return { status: reply.status, json: { error: reply.error ?? { message: 'scripted error' } } };
    }
    const model = typeof body?.model === 'string' ? body.model : 'scripted';
    const content = typeof reply.content === 'string' ? reply.content : null;
    const toolCalls = (reply.tool_calls ?? []).map((c, i) => ({
        id: c.id ?? `call_${i}`,
        type: 'function',
        function: {
            name: c.name,
            arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}),
        },
    }));
    const finish = reply.finish_reason ?? (toolCalls.length ? 'tool_calls' : 'stop');
    let usage = null;
    if (reply.omit_usage !== true) {
        const p = reply.usage?.prompt_tokens ?? 10;
        const c = reply.usage?.completion_tokens ?? 5;
        usage = { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
    }
    const id = 'chatcmpl-scripted';
    if (body?.stream !== true) {
        const message = { role: 'assistant', content };
        if (toolCalls.length) message.tool_calls = toolCalls;
        const json = { id, object: 'chat.completion', created: 1, model,
            choices: [{ index: 0, message, finish_reason: finish }] };
        if (usage) json.usage = usage;
        return { status: 200, json };
    }
    const chunk = (delta, finishReason) => ({ id, object: 'chat.completion.chunk', created: 1, model,
        choices: [{ index: 0, delta, finish_reason: finishReason }] });
    const frames = [chunk({ role: 'assistant', content: '' }, null)];
    const pieces = Array.isArray(reply.chunks) ? reply.chunks.filter(p => typeof p === 'string') : (content === null ? [] : [content]);
    for (const p of pieces) frames.push(chunk({ content: p }, null));
    toolCalls.forEach((c, i) => frames.push(chunk({ tool_calls: [{ ...c, index: i }] }, null)));
    frames.push(chunk({}, finish));
    if (body?.stream_options?.include_usage === true && usage) {
        frames.push({ id, object: 'chat.completion.chunk', created: 1, model, choices: [], usage });
    }
    return { stream: frames.map(f => `data: ${JSON.stringify(f)}\n\n`).concat(['data: [DONE]\n\n']) };
}

export async function startScriptedLlm(script, { port = 0, record = true } = {}) {
    let replies = repliesOf(script);
    let next = 0;
    const requests = [];
    const server = http.createServer((req, res) => {
        const parts = [];
        req.on('data', d => parts.push(d));
        req.on('end', async () => {
            if (req.method !== 'POST' || req.url.split('?')[0] !== '/v1/chat/completions') {
                res.writeHead(404, { 'content-type': 'application/json' });
                res.end(JSON.stringify({ error: { message: 'not found' } }));
                return;
            }
            let body = null;
            try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { body = null; }
            if (record) requests.push({ headers: { ...req.headers }, body });
            const reply = replies[Math.min(next++, replies.length - 1)];
            if (reply.delay_ms) await sleep(reply.delay_ms);
            const a = answerOf(reply, body);
            if (a.stream) {
                res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
                for (const [i, f] of a.stream.entries()) {
                    if (i > 0 && reply.chunk_delay_ms) await sleep(reply.chunk_delay_ms);
                    res.write(f);
                }
                res.end();
            } else {
                const text = JSON.stringify(a.json);
                res.writeHead(a.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
                res.end(text);
            }
        });
    });
    server.keepAliveTimeout = 30_000;
    await new Promise(r => server.listen(port, '127.0.0.1', r));
    const { port: bound } = server.address();
    return {
        baseUrl: `http://127.0.0.1:${bound}/v1`,
        requests,
        setScript(s) { replies = repliesOf(s); next = 0; },
        close() { server.closeAllConnections?.(); return new Promise(r => server.close(() => r())); },
    };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
    const args = process.argv.slice(2);
    const opt = name => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
    const script = opt('--script') ? JSON.parse(readFileSync(opt('--script'), 'utf8')) : { replies: [{ content: 'ok' }] };
    const llm = await startScriptedLlm(script, { port: Number(opt('--port') ?? 0), record: !args.includes('--no-record') });
    console.log(JSON.stringify({ baseUrl: llm.baseUrl }));
}
