// Builds a checkpoint that pairs tests/data/tiny-dense's weights with the Qwen3 tokenizer of
// tests/data/tokenizer-qwen3: the vocabulary grows from 512 to 151,936 rows (embedding row i is
// row i % 512; lm_head row i is row i % 512 scaled by a factor that depends on i / 512, so that
// greedy choices reach the whole vocabulary), <|im_end|> and <|endoftext|> are end-of-sequence ids.
// usage: node make_text_model.mjs OUT_DIR   (run from anywhere)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.join(here, '..', 'data');
const out = process.argv[2];
const V = 151936, V0 = 512;
fs.mkdirSync(out, { recursive: true });
const buf = fs.readFileSync(path.join(data, 'tiny-dense', 'model.safetensors'));
const hlen = Number(buf.readBigUInt64LE(0));
const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
const base = 8 + hlen;
const names = Object.keys(header).filter((k) => k !== '__metadata__')
  .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
const parts = [], nh = { __metadata__: { format: 'pt' } };
let off = 0;
for (const k of names) {
  const t = header[k];
  let bytes = buf.subarray(base + t.data_offsets[0], base + t.data_offsets[1]);
  let shape = t.shape;
  if (k === 'lm_head.weight' || k === 'model.embed_tokens.weight') {
    const H = shape[1], src = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const dst = new Float32Array(V * H);
    for (let i = 0; i < V; i++) {
      const s = k === 'lm_head.weight' ? 1 + 0.03 * (((i >> 9) % 11) - 5) : 1;
      for (let h = 0; h < H; h++) dst[i * H + h] = src[(i % V0) * H + h] * s;
    }
    bytes = Buffer.from(dst.buffer);
    shape = [V, H];
  }
  nh[k] = { dtype: t.dtype, shape, data_offsets: [off, off + bytes.length] };
  parts.push(bytes);
  off += bytes.length;
}
let hs = JSON.stringify(nh);
while ((8 + hs.length) % 8) hs += ' ';
const hb = Buffer.alloc(8);
hb.writeBigUInt64LE(BigInt(hs.length));
fs.writeFileSync(path.join(out, 'model.safetensors'), Buffer.concat([hb, Buffer.from(hs), ...parts]));
const cfg = JSON.parse(fs.readFileSync(path.join(data, 'tiny-dense', 'config.json'), 'utf8'));
cfg.vocab_size = V;
cfg.eos_token_id = [151645, 151643];
fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg, null, 2));
for (const f of ['tokenizer.json', 'tokenizer_config.json'])
  fs.copyFileSync(path.join(data, 'tokenizer-qwen3', f), path.join(out, f));
