"""Prints packlm beside llama.cpp from bench/llamacpp/side_by_side_cpu.sh's rounds (peer.cpp's JSON
lines for llama.cpp, packlm bench --json for packlm).

python3 bench/llamacpp/side_by_side_cpu.py OUT_DIR ROUNDS
Per case and tool: the best round (tokens/s), the spread over the rounds (best / slowest - 1) and
every round; the ratio is packlm's best over llama.cpp's best (> 1: packlm faster).
"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def llama_peer(text):
    """the last JSON line peer.cpp printed: {"prompt": .., "decode1": .., "decode16": ..}"""
    for line in reversed((text or "").splitlines()):
        try:
            j = json.loads(line)
            if isinstance(j, dict):
                return {k: float(v) for k, v in j.items()}
        except ValueError:
            continue
    return {}


def packlm(text):
    out = {}
    try:
        j = json.loads(text)
        for key, name in (("peer_prompt512_tokens_per_s", "prompt"), ("peer_decode1_tokens_per_s", "decode1"),
                          ("peer_decode16_tokens_per_s", "decode16")):
            if key in j:
                out[name] = j[key]["value"] if isinstance(j[key], dict) else j[key]
    except (TypeError, ValueError):
        pass
    return out


def main():
    d, rounds = sys.argv[1], int(sys.argv[2])
    tools = {"llama.cpp Q8_0": [], "packlm int8": [], "packlm BF16": []}
    for r in range(1, rounds + 1):
        tools["llama.cpp Q8_0"].append(llama_peer(load(os.path.join(d, f"round-{r}-llama.json"))))
        tools["packlm int8"].append(packlm(load(os.path.join(d, f"round-{r}-packlm-int8.json"))))
        bf = load(os.path.join(d, f"round-{r}-packlm-bf16.json"))
        if bf:
            tools["packlm BF16"].append(packlm(bf))
    cases = (("prompt", "prompt 512 tokens, last-token logits"), ("decode1", "decode, 1 sequence"),
             ("decode16", "decode, 16 sequences aggregate"))
    print(f"CPU: {load(os.path.join(d, 'cpu.txt')) or '?'}".strip())
    print(f"flags: {load(os.path.join(d, 'cpuflags.txt')) or '?'}".strip())
    for r in range(1, rounds + 1):
        print((load(os.path.join(d, f"round-{r}-load.txt")) or "").strip())
    print((load(os.path.join(d, "end-load.txt")) or "").strip())
    print(f"{'case':40s} {'tool':16s} {'best tok/s':>10s} {'spread':>7s}  rounds")
    for key, label in cases:
        best = {}
        for tool, rs in tools.items():
            vals = [r[key] for r in rs if key in r]
            if not vals:
                continue
            b, w = max(vals), min(vals)
            best[tool] = b
            print(f"{label:40s} {tool:16s} {b:10.2f} {100 * (b / w - 1):6.1f}%  " +
                  " ".join(f"{v:.2f}" for v in vals))
        if "llama.cpp Q8_0" in best and "packlm int8" in best:
            print(f"{'':40s} {'ratio int8/Q8_0':16s} {best['packlm int8'] / best['llama.cpp Q8_0']:10.2f}x")


if __name__ == "__main__":
    main()
