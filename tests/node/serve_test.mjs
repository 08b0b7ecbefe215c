// Integration checks of packlm serve with the official openai client (and plain fetch / sockets for
// what a client library would not send). Started by tests/serve.sh with two servers running:
//   URL_IDS  : tests/data/tiny-dense (token-id prompts, no tokenizer), no API key
//   URL_TEXT : the tiny-dense weights paired with the Qwen3 tokenizer (text, chat), API key KEY
// Expectations come from the packlm CLI itself (generate, score) and from @huggingface/jinja.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';
import { Template } from '@huggingface/jinja';
import { compareAll, conversations } from './chat_cases.mjs';

const { URL_IDS, URL_TEXT, URL_TOOL, URL_XML, XML_TEMPLATE, KEY, PACKLM, MODEL_IDS, MODEL_TEXT, TMP } = process.env;
let fails = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) fails++;
};
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const ids = new OpenAI({ baseURL: `${URL_IDS}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60000 });
const txt = new OpenAI({ baseURL: `${URL_TEXT}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000 });

function cli(args) {
  return execFileSync(PACKLM, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 120000 });
}
function generateIds(prompts, n) { // packlm generate, greedy: token ids per prompt
  const f = `${TMP}/gen_in.txt`;
  fs.writeFileSync(f, prompts.map((p) => p.join(' ')).join('\n') + '\n');
  return cli(['generate', '--model', MODEL_IDS, '--input', f, '--max-new-tokens', String(n), '--threads', '1'])
    .trim().split('\n').map((l) => l.split(' ').map(Number));
}
function generateText(texts, n, model = MODEL_TEXT) {
  const f = `${TMP}/gen_text.jsonl`;
  fs.writeFileSync(f, texts.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  return cli(['generate', '--model', model, '--input', f, '--max-new-tokens', String(n), '--threads', '1'])
    .trim().split('\n').map((l) => JSON.parse(l));
}
function score(prompts) {
  const f = `${TMP}/score_in.txt`;
  fs.writeFileSync(f, prompts.map((p) => p.join(' ')).join('\n') + '\n');
  return cli(['score', '--model', MODEL_IDS, '--input', f, '--threads', '1']).trim().split('\n').map((l) => JSON.parse(l));
}
async function metrics(url, key) {
  const r = await fetch(`${url}/metrics`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  const m = {};
  for (const l of (await r.text()).split('\n')) if (l && !l.startsWith('#')) m[l.split(' ')[0]] = Number(l.split(' ')[1]);
  return m;
}
async function idle(url, key) { // no sequence queued or running (slots all free), within a few seconds
  for (let i = 0; i < 100; i++) {
    const m = await metrics(url, key);
    if (m.packlm_sequences_running === 0 && m.packlm_sequences_waiting === 0) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  return metrics(url, key);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const prompts = fs.readFileSync(`${MODEL_IDS}/inputs.txt`, 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
const N = 12;
const want = generateIds(prompts, N);

// ---- greedy completions over HTTP equal packlm generate, alone
{
  let ok = true;
  for (let i = 0; i < prompts.length; i++) {
    const r = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[i], max_tokens: N, temperature: 0 });
    ok &&= eq(r.choices[0].token_ids, want[i]) && r.choices[0].finish_reason === 'length' &&
      r.usage.prompt_tokens === prompts[i].length && r.usage.completion_tokens === N;
  }
  check(ok, `greedy completions of ${prompts.length} prompts, one at a time, equal packlm generate (ids, usage, finish_reason)`);
}
// ---- ... and 16 clients at once, half of them streaming
{
  const jobs = [];
  for (let c = 0; c < 16; c++) {
    const i = c % prompts.length;
    if (c % 2) {
      jobs.push((async () => {
        const s = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[i], max_tokens: N, temperature: 0, stream: true });
        let got = [], last = null, n = 0;
        for await (const ch of s) { got = got.concat(ch.choices[0].token_ids); last = ch; n++; }
        return eq(got, want[i]) && last.choices[0].finish_reason === 'length' && n >= 1;
      })());
    } else {
      jobs.push(ids.completions.create({ model: 'tiny-dense', prompt: prompts[i], max_tokens: N, temperature: 0 })
        .then((r) => eq(r.choices[0].token_ids, want[i])));
    }
  }
  const res = await Promise.all(jobs);
  check(res.every(Boolean), `16 concurrent clients (8 streaming) get packlm generate's tokens: ${res.filter(Boolean).length}/16`);
}
// ---- a list of prompts: one choice each
{
  const r = await ids.completions.create({ model: 'tiny-dense', prompt: [prompts[0], prompts[1]], max_tokens: N, temperature: 0 });
  check(r.choices.length === 2 && eq(r.choices[0].token_ids, want[0]) && eq(r.choices[1].token_ids, want[1]) &&
    r.choices[1].index === 1, 'a list of two id prompts: two choices, each equal to packlm generate');
}
// ---- echo + logprobs with max_tokens 0: the prompt's log-probabilities equal packlm score
{
  const sc = score(prompts);
  const r = await ids.completions.create({ model: 'tiny-dense', prompt: prompts, max_tokens: 0, echo: true, logprobs: 3 });
  let ok = r.choices.length === prompts.length, worst = 0;
  for (let i = 0; ok && i < prompts.length; i++) {
    const lp = r.choices[i].logprobs;
    ok &&= lp.token_logprobs.length === prompts[i].length && lp.token_logprobs[0] === null && lp.top_logprobs[0] === null;
    const s = lp.token_logprobs.slice(1).reduce((a, b) => a + b, 0);
    const d = Math.abs(s - sc[i].logprob) / Math.max(1, Math.abs(sc[i].logprob));
    worst = Math.max(worst, d);
    for (let t = 1; ok && t < prompts[i].length; t++) {
      const top = Object.values(lp.top_logprobs[t]);
      ok &&= top.length >= 1 && top.length <= 3 && Math.max(...top) >= lp.token_logprobs[t] - 1e-6;
    }
  }
  check(ok && worst < 1e-5, `echo + logprobs (max_tokens 0) of ${prompts.length} prompts equal packlm score (relative diff ${worst.toExponential(1)}); top 3 alternatives`);
}
// ---- logprobs of generated tokens: greedy picks the top alternative; echo + generation
{
  const r = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[1], max_tokens: 6, temperature: 0, logprobs: 2, echo: true });
  const lp = r.choices[0].logprobs, P = prompts[1].length;
  let ok = eq(r.choices[0].token_ids, want[1].slice(0, 6)) && lp.tokens.length === P + 6;
  for (let t = P; ok && t < P + 6; t++) {
    const best = Object.entries(lp.top_logprobs[t]).sort((a, b) => b[1] - a[1])[0];
    ok &&= best[0] === `token_id:${want[1][t - P]}` && Math.abs(best[1] - lp.token_logprobs[t]) < 1e-6 && lp.token_logprobs[t] <= 0;
  }
  check(ok, 'logprobs of generated tokens: the greedy token is the top alternative, with its log-probability; echo prepends the prompt');
}
// ---- sampling with a seed: the same tokens alone and under load
const sampled = { model: 'tiny-dense', prompt: prompts[2], max_tokens: 16, temperature: 0.9, top_p: 0.95, top_k: 50, seed: 11 };
const sampledWant = (await ids.completions.create(sampled)).choices[0].token_ids;
check(eq((await ids.completions.create(sampled)).choices[0].token_ids, sampledWant) && sampledWant.length === 16,
  'seeded sampling repeats its tokens');

// ---- cancellation: a streaming client that goes away frees its slot before its 4000 tokens
{
  const before = await metrics(URL_IDS);
  const ac = new AbortController();
  let got = 0;
  try {
    const s = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[0], max_tokens: 4000, ignore_eos: true, stream: true },
      { signal: ac.signal });
    for await (const ch of s) { got += ch.choices[0].token_ids.length; ac.abort(); }
  } catch (e) { /* aborted */ }
  const m = await idle(URL_IDS);
  const made = m.packlm_generation_tokens_total - before.packlm_generation_tokens_total;
  check(got >= 1 && m.packlm_sequences_running === 0 && made < 4000,
    `a streaming client that disconnects is cancelled: its slot is free, ${made} of 4000 tokens made`);
}

// ---- bad requests: OpenAI error objects with the right status
async function post(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
  let j = null;
  try { j = await r.json(); } catch (e) { /* not JSON */ }
  return { status: r.status, j };
}
const isErr = (r, status, code) => r.status === status && r.j && r.j.error && typeof r.j.error.message === 'string' &&
  typeof r.j.error.type === 'string' && (!code || r.j.error.code === code);
{
  const C = `${URL_IDS}/v1/completions`;
  check(isErr(await post(C, '{"prompt": [1, 2'), 400, 'invalid_json'), 'malformed JSON: 400');
  check(isErr(await post(C, '[1]'), 400), 'a body that is not an object: 400');
  check(isErr(await post(C, '{"prompt": [1], "max_tokens": "5"}'), 400), 'max_tokens as a string: 400');
  check(isErr(await post(C, '{"prompt": [1], "temperature": -1}'), 400), 'negative temperature: 400');
  check(isErr(await post(C, '{"prompt": [1, 512]}'), 400), 'token id outside the vocabulary: 400');
  check(isErr(await post(C, '{"prompt": [1.5]}'), 400), 'a non-integer token id: 400');
  check(isErr(await post(C, '{"prompt": []}'), 400), 'empty prompt: 400');
  check(isErr(await post(C, '{"prompt": [1], "n": 2}'), 400), 'n = 2: 400');
  check(isErr(await post(C, '{"prompt": [1], "model": "gpt-4"}'), 400, 'model_not_found'), 'unknown model: 400 model_not_found');
  check(isErr(await post(C, `{"prompt": [${Array(4000).fill(1).join(',')}], "max_tokens": 200}`), 400, 'context_length_exceeded'),
    'prompt + max_tokens over the context: 400 context_length_exceeded');
  check(isErr(await post(C, '{"prompt": "text"}'), 400), 'text prompt without a tokenizer: 400');
  check(isErr(await post(`${URL_IDS}/v1/nothing`, '{}'), 404), 'unknown path: 404');
  let e = null;
  try { await ids.completions.create({ model: 'tiny-dense', prompt: [1, 99999] }); } catch (x) { e = x; }
  check(e && e.status === 400 && /vocabulary/.test(e.message), 'the openai client sees the 400 and its message');
}

// ---- load: 64 concurrent clients, some streaming, some disconnecting, some sending garbage
{
  const M = 20;
  const wantM = generateIds(prompts, M);
  const jobs = [];
  const kinds = { good: 0, gone: 0, garbage: 0 };
  for (let c = 0; c < 64; c++) {
    const i = c % prompts.length, kind = c % 8;
    if (kind <= 3) { // good: plain or streaming, greedy; one in four sampled with its seed
      kinds.good++;
      const stream = kind % 2 === 1;
      const req = kind === 3 ? { ...sampled, stream } : { model: 'tiny-dense', prompt: prompts[i], max_tokens: M, temperature: 0, stream };
      const exp = kind === 3 ? sampledWant : wantM[i];
      jobs.push((async () => {
        if (!stream) return eq((await ids.completions.create(req)).choices[0].token_ids, exp);
        const s = await ids.completions.create(req);
        let got = [];
        for await (const ch of s) got = got.concat(ch.choices[0].token_ids);
        return eq(got, exp);
      })().catch((x) => { console.log('  good request failed:', x.message); return false; }));
    } else if (kind <= 5) { // goes away: a stream after a few tokens, or a plain request after 30 ms
      kinds.gone++;
      jobs.push((async () => {
        const ac = new AbortController();
        try {
          if (kind === 4) {
            const s = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[i], max_tokens: 500, ignore_eos: true, stream: true }, { signal: ac.signal });
            let n = 0;
            for await (const ch of s) if (++n === 2) ac.abort();
          } else {
            setTimeout(() => ac.abort(), 30);
            await ids.completions.create({ model: 'tiny-dense', prompt: prompts[i], max_tokens: 500, ignore_eos: true }, { signal: ac.signal });
          }
        } catch (x) { /* gone */ }
        return true;
      })());
    } else { // garbage: bad JSON, bad ids, raw bytes that are not HTTP
      kinds.garbage++;
      jobs.push((async () => {
        if (kind === 6) {
          const r = await post(`${URL_IDS}/v1/completions`, c % 16 === 6 ? '{"prompt": [1, 2], "max_tokens": ' : '{"prompt": [[1], [99999]]}');
          return isErr(r, 400);
        }
        return new Promise((resolve) => {
          const u = new URL(URL_IDS);
          const sock = net.connect(Number(u.port), u.hostname, () => sock.write('\x00\xffGARBAGE / HTTP/9\r\n\r\n{{{{'));
          sock.on('data', () => {});
          sock.on('error', () => resolve(true));
          sock.on('close', () => resolve(true));
          setTimeout(() => { sock.destroy(); resolve(true); }, 2000);
        });
      })());
    }
  }
  const res = await Promise.all(jobs);
  check(res.every(Boolean), `load: 64 clients (${kinds.good} good, ${kinds.gone} disconnecting, ${kinds.garbage} garbage): every good request got its full, correct answer (${res.filter(Boolean).length}/64 as expected)`);
  const m = await idle(URL_IDS);
  check(m.packlm_sequences_running === 0 && m.packlm_sequences_waiting === 0, `after the load /metrics shows no sequence holding a slot (running ${m.packlm_sequences_running}, waiting ${m.packlm_sequences_waiting}, slots ${m.packlm_state_slots})`);
  check(m.packlm_state_slots <= 16, `no more slots than --max-seqs (${m.packlm_state_slots})`);
  const r = await ids.completions.create({ model: 'tiny-dense', prompt: prompts[0], max_tokens: N, temperature: 0 });
  check(eq(r.choices[0].token_ids, want[0]), 'after the load the server still answers correctly');
  check(m.packlm_requests_total > 0 && m.packlm_generation_tokens_total > 0 && m.packlm_steps_total > 0 && 'packlm_step_seconds_sum' in m &&
    'packlm_generation_tokens_per_second' in m && 'packlm_prompt_tokens_total' in m, '/metrics has requests, tokens, tokens/s, step time');
}

// ---- text model: API key, text prompts, stop strings, chat
{
  let e = null;
  const nokey = new OpenAI({ baseURL: `${URL_TEXT}/v1`, apiKey: 'wrong', maxRetries: 0 });
  try { await nokey.models.list(); } catch (x) { e = x; }
  check(e && e.status === 401, 'wrong API key: 401');
  const r0 = await fetch(`${URL_TEXT}/v1/models`);
  check(r0.status === 401 && (await r0.json()).error.code === 'invalid_api_key', 'missing API key: 401 with an error object');
  check((await fetch(`${URL_TEXT}/health`)).status === 200, '/health needs no key');
  const models = await txt.models.list();
  check(models.data.length === 1 && models.data[0].id === 'text-model', 'GET /v1/models through the client');

  const texts = ['Hello, my name is', 'The capital of France', 'def fib(n):\n    ', '日本語のテキスト'];
  const g = generateText(texts, 10);
  let ok = true;
  for (let i = 0; i < texts.length; i++) {
    const r = await txt.completions.create({ model: 'text-model', prompt: texts[i], max_tokens: 10, temperature: 0 });
    ok &&= r.choices[0].text === g[i].text && eq(r.choices[0].token_ids, g[i].ids);
  }
  check(ok, 'text prompts: greedy text and ids equal packlm generate on the same text');
  // stop strings: cut before the stop string, finish_reason stop, streaming too
  const full = g[0].text, stop = full.slice(4, 7);
  const cut = full.slice(0, full.indexOf(stop));
  const r1 = await txt.completions.create({ model: 'text-model', prompt: texts[0], max_tokens: 10, temperature: 0, stop: [stop, 'zzzz'] });
  let st = '', fin = null;
  for await (const ch of await txt.completions.create({ model: 'text-model', prompt: texts[0], max_tokens: 10, temperature: 0, stop, stream: true })) {
    st += ch.choices[0]?.text ?? '';
    fin = ch.choices[0]?.finish_reason ?? fin;
  }
  check(r1.choices[0].text === cut && r1.choices[0].finish_reason === 'stop' && st === cut && fin === 'stop',
    `stop string ${JSON.stringify(stop)}: text cut before it (${JSON.stringify(cut)}), finish_reason stop, streaming and not`);
  let sv = '';
  for await (const ch of await txt.completions.create({ model: 'text-model', prompt: texts[3], max_tokens: 10, temperature: 0, stream: true })) sv += ch.choices[0]?.text ?? '';
  check(sv === g[3].text, 'streamed text pieces concatenate to the whole text');
  const e1 = await txt.completions.create({ model: 'text-model', prompt: texts[1], max_tokens: 3, temperature: 0, echo: true });
  check(e1.choices[0].text.startsWith(texts[1]) && e1.choices[0].text === texts[1] + generateText([texts[1]], 3)[0].text, 'echo prepends the prompt text');
}
{
  // chat rendering equals @huggingface/jinja on the template, byte for byte: the checkpoint's own
  // template (Qwen3's, from the real tokenizer) and a Qwen3.5-style one (XML tool calls, macros)
  const tpl = new Template(JSON.parse(fs.readFileSync(`${MODEL_TEXT}/tokenizer_config.json`, 'utf8')).chat_template);
  const convs = conversations.map((c) => c.messages);
  {
    const [ok, n, bad] = await compareAll(URL_TEXT, KEY, JSON.parse(fs.readFileSync(`${MODEL_TEXT}/tokenizer_config.json`, 'utf8')).chat_template);
    if (bad) console.log('  differs:', JSON.stringify(bad, null, 1));
    check(ok, `Qwen3's chat template: packlm's rendering equals @huggingface/jinja byte for byte on ${n} conversations x thinking switches (tools, tool calls and results among them)`);
  }
  {
    const [ok, n, bad] = await compareAll(URL_XML, null, fs.readFileSync(XML_TEMPLATE, 'utf8'));
    if (bad) console.log('  differs:', JSON.stringify(bad, null, 1));
    check(ok, `a Qwen3.5-style template (macros, namespaces, XML tool calls): packlm equals @huggingface/jinja on ${n} conversations x thinking switches`);
    const r2 = await post(`${URL_XML}/tokenize`, JSON.stringify({ messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 'late' }] }));
    check(isErr(r2, 400) && r2.j.error.message.includes('A system message must come first.'), "the template's raise_exception message comes back in a 400");
  }
  // chat completions: the rendered prompt's greedy continuation, streaming and not, with logprobs
  const msgs = convs[1];
  const rendered = tpl.render({ messages: msgs, add_generation_prompt: true });
  const g = generateText([rendered], 8)[0];
  const c = await txt.chat.completions.create({ model: 'text-model', messages: msgs, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 });
  let sc = '', role = null;
  for await (const ch of await txt.chat.completions.create({ model: 'text-model', messages: msgs, max_tokens: 8, temperature: 0, stream: true })) {
    role = ch.choices[0]?.delta?.role ?? role;
    sc += ch.choices[0]?.delta?.content ?? '';
  }
  const lp = c.choices[0].logprobs.content;
  check(c.choices[0].message.content === g.text && c.choices[0].message.role === 'assistant' && sc === g.text && role === 'assistant' &&
    lp.length === 8 && lp.every((x) => x.top_logprobs.length === 2 && x.logprob <= 0 && Math.abs(x.top_logprobs[0].logprob - x.logprob) < 1e-6),
    'chat completion (streaming and not) equals packlm generate on the rendered prompt; logprobs with top 2');
  const bad = await post(`${URL_TEXT}/v1/chat/completions`, '{"messages": [{"role": "wizard", "content": "x"}]}', { Authorization: `Bearer ${KEY}` });
  check(isErr(bad, 400), 'an unknown role: 400');
  const bad2 = await post(`${URL_TEXT}/v1/chat/completions`, '{"messages": "hi"}', { Authorization: `Bearer ${KEY}` });
  check(isErr(bad2, 400), 'messages not an array: 400');
}

// ---- tools: a model whose greedy answers are known tool calls (tests/node/make_tool_model.mjs)
{
  const tool = new OpenAI({ baseURL: `${URL_TOOL}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60000 });
  const tools = [
    { type: 'function', function: { name: 'get_time', description: 'The time now', parameters: { type: 'object', properties: {} } } },
    { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  ];
  const messages = [{ role: 'user', content: 'What time is it?' }];
  const base = { model: 'tool-model', messages, tools, max_tokens: 64, temperature: 0 };
  const collect = async (req) => { // a stream's content, tool calls (merged by index) and finish_reason
    let content = '', fin = null, chunks = 0;
    const calls = [];
    for await (const ch of await tool.chat.completions.create({ ...req, stream: true })) {
      const c = ch.choices[0];
      if (!c) continue;
      chunks++;
      content += c.delta?.content ?? '';
      for (const t of c.delta?.tool_calls ?? []) {
        calls[t.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        if (t.id) calls[t.index].id = t.id;
        if (t.function?.name) calls[t.index].function.name += t.function.name;
        if (t.function?.arguments) calls[t.index].function.arguments += t.function.arguments;
      }
      fin = c.finish_reason ?? fin;
    }
    return { content, calls, fin, chunks };
  };
  const r = await tool.chat.completions.create(base);
  const m = r.choices[0].message;
  check(m.content === 'Checking.\n' && m.tool_calls?.length === 1 && m.tool_calls[0].type === 'function' && /^call_/.test(m.tool_calls[0].id) &&
    m.tool_calls[0].function.name === 'get_time' && m.tool_calls[0].function.arguments === '{}' && r.choices[0].finish_reason === 'tool_calls',
    `tools, tool_choice auto: the answer's <tool_call> comes back as tool_calls (get_time, "{}"), the text before it as content, finish_reason tool_calls: ${JSON.stringify(m)}`);
  const st = await collect(base);
  check(st.content === 'Checking.\n' && st.calls.length === 1 && st.calls[0].function.name === 'get_time' && st.calls[0].function.arguments === '{}' &&
    /^call_/.test(st.calls[0].id) && st.fin === 'tool_calls', `... streaming: content deltas, then the call in a tool_calls delta, finish_reason tool_calls (${st.chunks} chunks)`);
  const named = { ...base, tool_choice: { type: 'function', function: { name: 'get_weather' } } };
  const rn = await tool.chat.completions.create(named);
  const mn = rn.choices[0].message;
  check(mn.content === null && mn.tool_calls?.length === 1 && mn.tool_calls[0].function.name === 'get_weather' &&
    JSON.parse(mn.tool_calls[0].function.arguments).city === 'Paris' && mn.tool_calls[0].function.arguments === '{"city": "Paris"}' && rn.choices[0].finish_reason === 'tool_calls',
    `tool_choice naming get_weather: the answer starts as that call; arguments as json.dumps writes them (${JSON.stringify(mn.tool_calls?.[0]?.function)})`);
  const sn = await collect(named);
  check(sn.content === '' && sn.calls.length === 1 && sn.calls[0].function.arguments === '{"city": "Paris"}' && sn.fin === 'tool_calls', '... streaming');
  const rnone = await tool.chat.completions.create({ ...base, tool_choice: 'none' });
  check(rnone.choices[0].message.content.startsWith('Checking.\n<tool_call>\n{"name":"get_time"') && !rnone.choices[0].message.tool_calls &&
    rnone.choices[0].finish_reason === 'stop', 'tool_choice none: the text as it came, no tool_calls, finish_reason stop');
  const plain = await tool.chat.completions.create({ model: 'tool-model', messages, max_tokens: 64, temperature: 0 });
  check(plain.choices[0].message.content === rnone.choices[0].message.content, 'without tools: the same text, no parsing');
  // the round trip: the assistant's call and the tool's result go back in the next request
  const back = [...messages, m, { role: 'tool', tool_call_id: m.tool_calls[0].id, content: '12:00' }];
  const r3 = await tool.chat.completions.create({ ...base, messages: back });
  const tk = await post(`${URL_TOOL}/tokenize`, JSON.stringify({ messages: back, tools }));
  check(r3.choices[0].message !== undefined && tk.status === 200 &&
    tk.j.prompt.includes('<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n12:00\n</tool_response>'),
    'a tool call and its result sent back render as the template writes them');
  const e = async (body) => post(`${URL_TOOL}/v1/chat/completions`, JSON.stringify({ model: 'tool-model', messages, ...body }));
  check(isErr(await e({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }), 400), 'tool_choice naming a function not in tools: 400');
  check(isErr(await e({ tool_choice: 'required' }), 400), 'tool_choice required without tools: 400');
  check(isErr(await e({ tools, tool_choice: 'sometimes' }), 400), 'an unknown tool_choice: 400');
  check(isErr(await e({ tools: [{ type: 'function' }] }), 400), 'a tool without a function name: 400');
  check(isErr(await e({ tools: { type: 'function' } }), 400), 'tools not a list: 400');
  check(isErr(await e({ messages: [{ role: 'assistant', content: null, tool_calls: [{ type: 'function' }] }] }), 400), 'a tool call without a function: 400');
}
const m = await idle(URL_TEXT, KEY);
check(m.packlm_sequences_running === 0, 'text server: no slot held at the end');
console.log(`serve_test: ${fails} failed`);
process.exit(fails ? 1 : 0);
