// The official `openai` client against Bridgekeeper's OpenAI-compatible LLM access
// (`/api/v1/chat/completions`, `/api/v1/models`), billed in credits, with the scripted upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { startServer } from '../ts/lib/server.mjs';
import { Browser, extractForm } from '../ts/lib/browser.mjs';
import { startScriptedLlm } from '../lib/scripted-llm.mjs';

const KEY = 'sk-e2e-upstream-9d31f0';
let llm;
let server;
let client;
let pat;

/** Signs up and in through the pages, then makes a PAT with these scopes. */
async function personWithPat(issuer, email, scopes) {
    const browser = new Browser(issuer);
    const password = 'e2e password for llm access';
    for (const path of ['/signup', '/login']) {
        const page = await browser.get(`${issuer}${path}`);
        assert.equal(page.status, 200, `GET ${path}`);
        const form = extractForm(page.text, path);
        const res = await browser.post(`${issuer}${path}`, {
            csrf_token: form.hidden.get('csrf_token'),
            next: '/',
            email,
            password,
        });
        assert.equal(res.status, 303, `POST ${path}: ${res.text}`);
    }
    const res = await fetch(`${issuer}/api/v1/auth/pat`, {
        method: 'POST',
        headers: { cookie: browser.jar.header(), origin: issuer, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'openai client', scopes }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return (await res.json()).token;
}

before(async () => {
    llm = await startScriptedLlm({ replies: [{ content: 'ok' }] });
    process.env.E2E_LLM_KEY = KEY;
    process.env.BRIDGEKEEPER_LLM__MODELS = `[{id="e2e-model", base_url="${llm.baseUrl}", upstream_model="scripted-7b", ` +
        'api_key_env="E2E_LLM_KEY", prompt_credits_per_million=1000000, completion_credits_per_million=2000000}]';
    process.env.BRIDGEKEEPER_CREDITS__SIGNUP_GRANT = '10000';
    server = await startServer();
    pat = await personWithPat(server.issuer, 'openai-client@example.com', ['llm-all', 'account']);
    client = new OpenAI({ apiKey: pat, baseURL: `${server.issuer}/api/v1`, maxRetries: 0 });
});

after(async () => {
    await server?.stop();
    await llm?.close();
});

test('models lists the configured model', async () => {
    const page = await client.models.list();
    assert.deepEqual(page.data.map(m => m.id), ['e2e-model']);
});

test('a completion with tool calls round-trips through the official client and is billed', async () => {
    llm.setScript({ replies: [{ tool_calls: [{ id: 'call_w', name: 'weather', arguments: { city: 'Oslo' } }],
        usage: { prompt_tokens: 12, completion_tokens: 4 } }] });
    const before = llm.requests.length;
    const { data, response } = await client.chat.completions.create({
        model: 'e2e-model',
        max_tokens: 20,
        messages: [
            { role: 'user', content: 'Weather in Oslo?' },
            { role: 'assistant', content: null, tool_calls: [{ id: 'call_0', type: 'function', function: { name: 'weather', arguments: '{"city":"Bergen"}' } }] },
            { role: 'tool', tool_call_id: 'call_0', content: 'rain' },
        ],
        tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    }).withResponse();
    assert.equal(data.model, 'e2e-model');
    assert.equal(data.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(JSON.parse(data.choices[0].message.tool_calls[0].function.arguments), { city: 'Oslo' });
    // 12 × 1 + 4 × 2 = 20 credits.
    assert.equal(response.headers.get('x-credits-consumed'), '20');
    assert.equal(response.headers.get('x-credits-remaining'), '9980');
    const sent = llm.requests[before];
    assert.equal(sent.headers.authorization, `Bearer ${KEY}`);
    assert.equal(sent.body.model, 'scripted-7b');
    assert.equal(sent.body.messages[2].tool_call_id, 'call_0');
    assert.equal(sent.body.tools[0].function.name, 'weather');
    assert.ok(!JSON.stringify(data).includes(KEY));
});

test('a streamed completion arrives chunk by chunk and is billed from the usage', async () => {
    llm.setScript({ replies: [{ content: 'Hello there', chunks: ['Hel', 'lo ', 'there'], chunk_delay_ms: 10,
        usage: { prompt_tokens: 5, completion_tokens: 3 } }] });
    const stream = await client.chat.completions.create({
        model: 'e2e-model', max_tokens: 10, stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    let usage;
    for await (const chunk of stream) {
        assert.equal(chunk.model, 'e2e-model');
        text += chunk.choices[0]?.delta?.content ?? '';
        usage = chunk.usage ?? usage;
    }
    assert.equal(text, 'Hello there');
    assert.equal(usage.completion_tokens, 3);
    const ledger = await (await fetch(`${server.issuer}/api/v1/credit-transactions`, { headers: { authorization: `Bearer ${pat}` } })).json();
    // 5 × 1 + 3 × 2 = 11 credits.
    assert.equal(ledger.transactions[0].amount, -11);
    assert.equal(ledger.balance, 9969);
});

test('a spent balance is a 402 CreditsExhaustedError and the upstream is not called', async () => {
    const before = llm.requests.length;
    await assert.rejects(
        client.chat.completions.create({ model: 'e2e-model', max_tokens: 100000, messages: [{ role: 'user', content: 'x' }] }),
        err => err.status === 402 && err.error === 'CreditsExhaustedError',
    );
    await assert.rejects(
        client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
        err => err.status === 404,
    );
    assert.equal(llm.requests.length, before);
});
