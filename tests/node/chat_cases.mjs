// Chat rendering checks shared by serve_test.mjs: conversations (plain, thinking, tools, tool calls,
// tool responses) rendered by packlm serve's POST /tokenize and by @huggingface/jinja on the same
// template, compared byte for byte. The reference gets the request the way vLLM hands it to the
// template: a null content as "", text parts joined with "\n", tool-call arguments parsed from their
// JSON text, tools as given, chat_template_kwargs merged into the variables.
import { Template } from '@huggingface/jinja';

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city'],
    },
  },
};
const search = {
  type: 'function',
  function: {
    name: 'search',
    description: 'Search the web: "quoted", ünïcødé, back\\slash',
    parameters: { type: 'object', properties: { q: { type: 'string' }, n: { type: 'integer', minimum: 1 }, opts: { type: 'object', properties: { safe: { type: 'boolean' } } } } },
  },
};
const noparams = { type: 'function', function: { name: 'now' } };
const call = (id, name, args) => ({ id, type: 'function', function: { name, arguments: JSON.stringify(args) } });

export const conversations = [
  { messages: [{ role: 'user', content: 'Hi!' }] },
  { messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'What is 2+2?' }] },
  { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }] },
  { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: '<think>\nlet me see\n</think>\n\nanswer' }] },
  { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: '<think>\nold\n</think>\n\nold answer' }, { role: 'user', content: 'again' }] },
  { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'plain reply' }] },
  { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'x', reasoning_content: '\nthought\n' }, { role: 'user', content: 'r' },
    { role: 'assistant', content: 'y', reasoning_content: 'more' }] },
  { messages: [{ role: 'user', content: 'call' }, { role: 'assistant', content: 'ok' }, { role: 'tool', content: '{"t": 1}' }, { role: 'tool', content: 'two' }, { role: 'user', content: 'ok' }] },
  { messages: [{ role: 'user', content: 'tool?' }, { role: 'assistant', content: 'calling' }, { role: 'user', content: '<tool_response>\nr\n</tool_response>' }] },
  { messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'ünïcødé 🎉\n\nnew lines' }] },
  { messages: [{ role: 'user', content: '  spaces  ' }, { role: 'assistant', content: '\n\n<think>a</think>b</think>\n\nc' }] },
  { messages: [{ role: 'user', content: [{ type: 'text', text: 'part one' }, { type: 'text', text: 'part two' }] }] },
  // tools in the system prompt, with and without a system message
  { messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weather] },
  { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'find cats' }], tools: [weather, search, noparams] },
  // a tool round trip: the assistant's calls (content null, arguments as JSON text), the results, the answer
  { messages: [{ role: 'user', content: 'Weather in Paris and Oslo?' },
    { role: 'assistant', content: null, tool_calls: [call('c1', 'get_weather', { city: 'Paris' }), call('c2', 'get_weather', { city: 'Oslo', unit: 'c' })] },
    { role: 'tool', tool_call_id: 'c1', content: '{"temp": 21}' }, { role: 'tool', tool_call_id: 'c2', content: '{"temp": 9}' }],
  tools: [weather] },
  { messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'search' },
    { role: 'assistant', content: 'Let me look.', tool_calls: [call('c3', 'search', { q: 'a "b"', n: 3, opts: { safe: true }, list: [1, 2.5, null] })] },
    { role: 'tool', content: 'results' }, { role: 'assistant', content: 'Found it.' }, { role: 'user', content: 'thanks' }],
  tools: [search] },
];

export function reference(tpl, conv, thinking) {
  const fix = (m) => {
    const o = { ...m };
    if (o.content === null || o.content === undefined) o.content = '';
    if (Array.isArray(o.content)) o.content = o.content.map((p) => p.text).join('\n');
    if (o.tool_calls) o.tool_calls = o.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } }));
    return o;
  };
  const ctx = { messages: conv.messages.map(fix), add_generation_prompt: true };
  if (conv.tools) ctx.tools = conv.tools;
  if (thinking !== undefined) ctx.enable_thinking = thinking;
  return tpl.render(ctx);
}

// every conversation x thinking switch (absent, false, true): [ok, count, first difference]
export async function compareAll(url, key, templateText, convs = conversations) {
  const tpl = new Template(templateText);
  let n = 0, bad = null;
  for (const conv of convs) {
    for (const thinking of [undefined, false, true]) {
      const body = { ...conv };
      if (thinking !== undefined) body.chat_template_kwargs = { enable_thinking: thinking };
      let ref;
      try { ref = reference(tpl, conv, thinking); } catch (e) { ref = `<reference failed: ${e.message}>`; }
      const r = await fetch(`${url}/tokenize`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) },
        body: JSON.stringify(body),
      });
      const j = await r.json();
      n++;
      if (r.status !== 200 || j.prompt !== ref) {
        bad ??= { conv, thinking, packlm: j.prompt ?? j, jinja: ref };
      }
    }
  }
  return [bad === null, n, bad];
}
