// packlm serve benchmark: the server driven by 1, 4 and 16 concurrent streaming clients over
// loopback, against packlm generate on the same 16 prompts in the same run. Reports aggregate
// generated tokens/s (all tokens / wall time from the first request to the last answer) and time
// to first token; the greedy tokens of both are checked equal. Not a test: figures only.
//
// usage: node bench/serve_bench.mjs [--quick] [--model DIR] [--threads N] [--prompt-len 64]
//                                   [--max-tokens 32] [--repeat 3] [--packlm build/packlm] [--clients 1,4,16]
// Each figure is the best of the repeats; the spread (worst .. best) follows it.
// Without --model: build/bench-model-0.8b (random weights, Qwen3.5-0.8B shape; built once by
// `packlm bench`), or build/bench-model-quick with --quick.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const quick = process.argv.includes('--quick');
const P = arg('--packlm', 'build/packlm');
const CLIENTS = arg('--clients', '1,4,16').split(',').map(Number);
const model = arg('--model', quick ? 'build/bench-model-quick' : 'build/bench-model-0.8b');
const threads = arg('--threads', '0');
const PL = Number(arg('--prompt-len', 64)), MT = Number(arg('--max-tokens', 32)), R = Number(arg('--repeat', 3));
const B = 512, NP = 16;
if (!fs.existsSync(`${model}/model.safetensors`)) {
  console.log(`building ${model} (once) ...`);
  execFileSync(P, ['bench', '--only', 'tokenizer', ...(quick ? ['--quick'] : [])], { stdio: 'ignore' });
}
const vocab = JSON.parse(fs.readFileSync(`${model}/config.json`, 'utf8')).vocab_size;
let seed = 12345;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const prompts = Array.from({ length: NP }, (_, i) => Array.from({ length: PL - 8 + (i % 16) }, () => 1 + Math.floor(rnd() * (vocab - 300))));
fs.mkdirSync('build/tmp', { recursive: true });
const inFile = 'build/tmp/serve_bench_prompts.txt';
fs.writeFileSync(inFile, prompts.map((p) => p.join(' ')).join('\n') + '\n');
const thr = threads === '0' ? [] : ['--threads', threads];

// ---- packlm generate on the 16 prompts (its summary line on stderr gives the generation time)
function runGenerate() {
  const out = spawnSyncCapture(P, ['generate', '--model', model, '--input', inFile, '--max-new-tokens', String(MT), '--ignore-eos',
    '--max-batch-tokens', String(B), '--max-seqs', String(NP), ...thr]);
  const m = out.stderr.match(/(\d+) prompt \+ (\d+) new tokens in ([\d.]+) s; prefill ([\d.]+) tokens\/s .* decode ([\d.]+) tokens\/s/);
  return { newTok: Number(m[2]), secs: Number(m[3]), prefill: Number(m[4]), decode: Number(m[5]), ids: out.stdout.trim().split('\n').map((l) => l.split(' ').map(Number)) };
}
function spawnSyncCapture(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r;
}
// ---- the server

const srv = spawn(P, ['serve', '--model', model, '--port', '0', '--max-batch-tokens', String(B), '--max-seqs', String(NP), ...thr],
  { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
const url = await new Promise((resolve, reject) => {
  const to = setTimeout(() => reject(new Error('server did not start: ' + log)), 120000);
  srv.stderr.on('data', (d) => {
    log += d;
    const m = log.match(/listening on (http:\/\/[0-9.]+:\d+)/);
    if (m) { clearTimeout(to); resolve(m[1]); }
  });
});
async function one(i) { // a streaming request; returns tokens, time to first token
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: prompts[i], max_tokens: MT, temperature: 0, ignore_eos: true, stream: true }),
  });
  let ids = [], ttft = null, buf = '';
  const dec = new TextDecoder();
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: {')) continue;
      const t = JSON.parse(ev.slice(6)).choices[0].token_ids || [];
      if (t.length && ttft === null) ttft = performance.now() - t0;
      ids = ids.concat(t);
    }
  }
  return { ids, ttft };
}
await one(0); // warm-up
// generate and the server take turns, repeat after repeat, so that a busy moment of the machine
// falls on both alike
const rows = CLIENTS.map((C) => ({ clients: C, best: null, all: [] }));
let same = true, bestGen = null;
const genAll = [];
for (let r = 0; r < R; r++) {
  const g = runGenerate();
  genAll.push(g.newTok / g.secs);
  if (!bestGen || g.newTok / g.secs > bestGen.newTok / bestGen.secs) bestGen = g;
  for (const row of rows) {
    const C = row.clients;
    const t0 = performance.now();
    const res = new Array(NP);
    await Promise.all(Array.from({ length: C }, async (_, c) => {
      for (let i = c; i < NP; i += C) res[i] = await one(i);
    }));
    const secs = (performance.now() - t0) / 1000;
    const tok = res.reduce((a, x) => a + x.ids.length, 0);
    res.forEach((x, i) => { same &&= JSON.stringify(x.ids) === JSON.stringify(g.ids[i]); });
    const ttfts = res.map((x) => x.ttft).sort((a, b) => a - b);
    const m = { tokens: tok, secs, tps: tok / secs, ttft_med: ttfts[NP >> 1], ttft_max: ttfts[NP - 1] };
    row.all.push(m.tps);
    if (!row.best || m.tps > row.best.tps) row.best = m;
  }
}
for (const row of rows) Object.assign(row, row.best, { worst: Math.min(...row.all) });
srv.kill('SIGTERM');
const genTps = bestGen.newTok / bestGen.secs;
console.log(`model ${model}, ${NP} prompts of ${PL - 8}..${PL + 7} tokens, ${MT} new tokens each (greedy, ignore_eos), ` +
  `--max-batch-tokens ${B}, best of ${R}`);
console.log(`packlm generate: ${genTps.toFixed(1)} generated tokens/s aggregate (${bestGen.newTok} tokens in ${bestGen.secs.toFixed(2)} s; ` +
  `prefill ${bestGen.prefill.toFixed(1)} tokens/s, decode ${bestGen.decode.toFixed(1)} tokens/s); spread ${Math.min(...genAll).toFixed(1)} .. ${genTps.toFixed(1)}`);
console.log('clients  tokens/s  (spread)          vs generate  TTFT median  TTFT max');
for (const r of rows)
  console.log(`${String(r.clients).padStart(7)}  ${r.tps.toFixed(1).padStart(8)}  (${r.worst.toFixed(1)} .. ${r.tps.toFixed(1)})`.padEnd(35) +
    `${(100 * r.tps / genTps).toFixed(1).padStart(10)}%  ${r.ttft_med.toFixed(0).padStart(9)} ms  ${r.ttft_max.toFixed(0).padStart(6)} ms`);
console.log(`greedy tokens over HTTP equal packlm generate: ${same ? 'yes' : 'NO'}`);
process.exit(same ? 0 : 1);
