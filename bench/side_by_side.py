"""Prints packlm beside FLA and transformers from one side-by-side run (bench/side_by_side.sh).

python3 bench/side_by_side.py OUT_DIR   (reads fla.json, hf.txt, packlm.json there)
Each row: the peer's figure, packlm's, and the speed ratio (peer time / packlm time: > 1 is packlm
faster). Missing figures print as '-'. The delta rule rows compare like shapes, not like
precision: FLA takes bf16 q/k/v (fp32 gates and states), packlm's kernels fp32 throughout.
"""
import json
import os
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def load_last_json(path):
    """the last top-level JSON object printed to a log"""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return {}
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "{":
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                return {}
    return {}


def main():
    d = sys.argv[1]
    fla = load_json(os.path.join(d, "fla.json"))
    hf = load_last_json(os.path.join(d, "hf.txt"))
    pk = {k: v.get("value") for k, v in load_json(os.path.join(d, "packlm.json")).items() if isinstance(v, dict)}
    # the kernels timed in a fresh process (bench --only mixers), as FLA's are; the full bench's figures
    # for them (after the model's cases in the same process) where that run is missing
    mx = {k: v.get("value") for k, v in load_json(os.path.join(d, "mixers.json")).items() if isinstance(v, dict)}
    after = dict(pk)
    pk.update({k: v for k, v in mx.items() if v is not None})

    def f(obj, *keys):
        for k in keys:
            if not isinstance(obj, dict) or k not in obj:
                return None
            obj = obj[k]
        return obj if isinstance(obj, (int, float)) else None

    rows = []  # (case, peer label, peer ms, packlm ms)
    for name, fk, pkk in (("delta rule, 15 seqs / 32,768 tokens", "chunk_fwd_15seq", "cuda_gdn_15seq_ms"),
                          ("delta rule, 1 seq of 32,768", "chunk_fwd_1seq", "cuda_gdn_1seq_ms"),
                          ("delta rule, 512 x 64", "chunk_fwd_512x64", "cuda_gdn_512x64_ms"),
                          ("delta rule, 1 seq, prep before the scan (the old order)", "chunk_fwd_1seq",
                           "cuda_gdn_prep_before_1seq_ms"),
                          ("delta rule, 15 seqs, value tiles of 16, prep beside", "chunk_fwd_15seq",
                           "cuda_gdn_vt16_15seq_ms")):
        rows.append((name, "FLA chunk", f(fla, fk, "ms"), f(pk, pkk)))
    if mx:
        rows.append(("delta rule, 15 seqs, after the model's cases (one process)", "FLA chunk",
                     f(fla, "chunk_fwd_15seq", "ms"), f(after, "cuda_gdn_15seq_ms")))
    for n in (1, 16, 256):
        rows.append((f"delta rule decode step, {n} seq", "FLA fused_recurrent", f(fla, f"recurrent_decode_N{n}", "ms_per_call"),
                     f(pk, f"cuda_gdn_decode{n}_ms")))
    rows.append(("conv1d + SiLU [32,768 x 6,144] varlen", "FLA causal_conv1d",
                 f(fla, "conv1d_varlen_D6144_W4_silu", "ms"), f(pk, "cuda_conv_15seq_ms")))
    tok = f(hf, "tokens")
    pre = f(pk, "cuda_prefill_tokens_per_s")
    pk_ms = tok / pre * 1e3 if tok and pre else None
    rows.append(("model, 12,680 tokens / 32 seqs, last-token logits", "transformers + FLA, packed",
                 f(hf, "packed_fla_kwargs_ms"), pk_ms))
    rows.append(("model, same", "transformers, padded", f(hf, "padded_ms"), pk_ms))
    sc = f(pk, "cuda_score_tokens_per_s")
    rows.append(("model, same, packlm score (all log-probs)", "transformers + FLA, packed",
                 f(hf, "packed_fla_kwargs_ms"), tok / sc * 1e3 if tok and sc else None))
    s1 = f(pk, "cuda_score_single_pass_tokens_per_s")
    rows.append(("model, same, score, single-pass BF16 (as transformers)", "transformers + FLA, packed",
                 f(hf, "packed_fla_kwargs_ms"), tok / s1 * 1e3 if tok and s1 else None))
    rows.append(("model, same, score, single-pass BF16", "transformers, padded",
                 f(hf, "padded_ms"), tok / s1 * 1e3 if tok and s1 else None))
    lg = f(pk, "cuda_logits_single_pass_tokens_per_s")
    rows.append(("model, same, every token's logits on the device, single pass", "transformers + FLA, packed",
                 f(hf, "packed_fla_kwargs_ms"), tok / lg * 1e3 if tok and lg else None))

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    print(f"{'case':52s} {'peer':28s} {'peer ms':>10s} {'packlm ms':>10s} {'ratio':>7s}")
    for case, peer, a, b in rows:
        r = f"{a / b:.2f}x" if a and b else "-"
        print(f"{case:52s} {peer:28s} {fmt(a):>10s} {fmt(b):>10s} {r:>7s}")
    g = f(pk, "cuda_gemm_tflops")
    c = f(pk, "cuda_copy_tbps")
    print(f"ceilings measured by packlm in the same run: BF16 GEMM {fmt(g)} TFLOP/s, copy {fmt(c)} TB/s")
    env = fla.get("env") if isinstance(fla, dict) else None
    if env:
        print("peers:", json.dumps(env))


if __name__ == "__main__":
    main()
