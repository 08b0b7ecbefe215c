// Builds a checkpoint (tiny-dense's shapes, the Qwen3 tokenizer) whose greedy answers are known tool
// calls: every layer's output projection is zero, so the logits depend on the last token only (a
// bigram model), and the embeddings and lm_head rows make each answer a fixed chain of tokens.
//   prompt ending in "\n" (Qwen3's template: "<|im_start|>assistant\n")    -> CHAINS[0].text
//   prompt ending in " " (tool_choice naming get_weather: '... "arguments": ') -> CHAINS[1].text
// then <|im_end|>. A chain may repeat a token only where the same token follows it, so the texts are
// cut into tokens by a search over the vocabulary (any cut decodes to the same text).
// usage: node make_tool_model.mjs OUT_DIR
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.join(here, '..', 'data');
const out = process.argv[2];
const V = 151936, H = 64, EOS = 151645;
export const CHAINS = [
  { start: '\n', text: 'Checking.\n<tool_call>\n{"name":"get_time","arguments":{}}\n</tool_call>' },
  { start: ' ', text: '{"city":"Paris"}}\n</tool_call>' },
];

// byte-level BPE: the vocabulary's strings as bytes
const bs = [];
for (let b = 33; b <= 126; b++) bs.push(b);
for (let b = 161; b <= 172; b++) bs.push(b);
for (let b = 174; b <= 255; b++) bs.push(b);
const cs = bs.slice();
for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
const u2b = new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]), b]));
const tok = JSON.parse(fs.readFileSync(path.join(data, 'tokenizer-qwen3', 'tokenizer.json'), 'utf8'));
const byFirst = new Map(); // first byte -> [[bytes, id]], longest first
const idOf = new Map();
const addTok = (bytes, id) => {
  if (!byFirst.has(bytes[0])) byFirst.set(bytes[0], []);
  byFirst.get(bytes[0]).push([bytes, id]);
  idOf.set(Buffer.from(bytes).toString('latin1'), id);
};
for (const [s, id] of Object.entries(tok.model.vocab)) {
  const bytes = [...s].map((ch) => u2b.get(ch));
  if (bytes.every((b) => b !== undefined)) addTok(bytes, id);
}
for (const a of tok.added_tokens) if (!a.special) addTok([...Buffer.from(a.content)], a.id);
for (const l of byFirst.values()) l.sort((a, b) => b[0].length - a[0].length);

// the chains: next[token] = the token after it. Random cuts (longer tokens likelier), retried until
// every token has one successor; seeded, so the same cut every time.
let rs = 7;
const rand = () => ((rs = (rs * 1103515245 + 12345) >>> 0) / 4294967296);
const next = new Map();
function tryCut(buf, prev) {
  const match = buf.map((_, p) => (byFirst.get(buf[p]) ?? []).filter(([bytes]) => bytes.length <= buf.length - p && bytes.every((b, k) => buf[p + k] === b)));
  for (let attempt = 0; attempt < 20000; attempt++) {
    const nx = new Map(next), acc = [];
    let pos = 0, p = prev, ok = true;
    while (ok && pos < buf.length) {
      const forced = nx.get(p);
      let cands = match[pos].filter(([bytes, id]) => forced === undefined || id === forced);
      // a token that already has a successor must be followed by it here
      cands = cands.filter(([bytes, id]) => {
        const f = nx.get(id), q = pos + bytes.length;
        if (f === undefined) return true;
        if (q === buf.length) return f === EOS;
        return match[q].some(([, i]) => i === f);
      });
      if (!cands.length) { ok = false; break; }
      const w = cands.map(([bytes]) => bytes.length ** 3), tot = w.reduce((x, y) => x + y, 0);
      let r = rand() * tot, k = 0;
      while (r > w[k]) r -= w[k++];
      const [bytes, id] = cands[Math.min(k, cands.length - 1)];
      if (forced === undefined) nx.set(p, id);
      acc.push(id);
      p = id;
      pos += bytes.length;
    }
    if (!ok) continue;
    if (nx.has(p) && nx.get(p) !== EOS) continue;
    nx.set(p, EOS);
    for (const [k, v] of nx) next.set(k, v);
    return acc;
  }
  return null;
}
const cuts = CHAINS.map((c) => {
  const start = idOf.get(Buffer.from(c.start).toString('latin1'));
  const r = tryCut([...Buffer.from(c.text)], start);
  if (!r) throw new Error(`no token chain for ${JSON.stringify(c.text)}`);
  return r;
});

if (out) {
  // weights: a random unit vector per predecessor token; lm_head row s = C * (sum of its predecessors' vectors)
  let seed = 12345;
  const rnd = () => { // xorshift + Box-Muller
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const vec = new Map();
  for (const p of next.keys()) {
    const v = Array.from({ length: H }, gauss), n = Math.hypot(...v);
    vec.set(p, v.map((x) => x / n));
  }
  const C = 40;
  const emb = new Float32Array(V * H), head = new Float32Array(V * H);
  for (const [p, v] of vec) for (let h = 0; h < H; h++) emb[p * H + h] = v[h];
  for (const [p, s] of next) for (let h = 0; h < H; h++) head[s * H + h] += C * vec.get(p)[h];
  for (const [p, s] of next) { // the chosen successor must win clearly
    const lg = (t) => { let a = 0; for (let h = 0; h < H; h++) a += head[t * H + h] * vec.get(p)[h]; return a; };
    const want = lg(s);
    for (const t of new Set(next.values())) if (t !== s && lg(t) > want - 5) throw new Error('margin too small; change the seed');
    if (want < 5) throw new Error('margin too small');
  }
  const buf = fs.readFileSync(path.join(data, 'tiny-dense', 'model.safetensors'));
  const hlen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  const names = Object.keys(header).filter((k) => k !== '__metadata__')
    .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const parts = [], nh = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const k of names) {
    const t = header[k];
    let bytes = Buffer.from(buf.subarray(8 + hlen + t.data_offsets[0], 8 + hlen + t.data_offsets[1]));
    let shape = t.shape;
    if (k === 'lm_head.weight' || k === 'model.embed_tokens.weight') {
      bytes = Buffer.from((k === 'lm_head.weight' ? head : emb).buffer);
      shape = [V, H];
    } else if (/(out_proj|o_proj|down_proj)\.weight$/.test(k)) {
      bytes = Buffer.alloc(bytes.length); // the layers add nothing to the residual stream
    } else if (k === 'model.norm.weight') {
      bytes = Buffer.from(new Float32Array(H).fill(1).buffer);
    }
    nh[k] = { dtype: t.dtype, shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  let hs = JSON.stringify(nh);
  while ((8 + hs.length) % 8) hs += ' ';
  const hb = Buffer.alloc(8);
  hb.writeBigUInt64LE(BigInt(hs.length));
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'model.safetensors'), Buffer.concat([hb, Buffer.from(hs), ...parts]));
  const cfg = JSON.parse(fs.readFileSync(path.join(data, 'tiny-dense', 'config.json'), 'utf8'));
  cfg.vocab_size = V;
  cfg.eos_token_id = [EOS, 151643];
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg, null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    fs.copyFileSync(path.join(data, 'tokenizer-qwen3', f), path.join(out, f));
  console.log(`tool model: chains of ${cuts.map((c) => c.length).join(' and ')} tokens, ${next.size} bigrams`);
}
