#!/usr/bin/env python3
"""One packed step of the 0.8B-shaped model on the GPU, for a profiler: a short warm-up step, then
score (every log-probability) or forward (last-token logits through step) of the 32 long-tailed
sequences packlm bench and the transformers comparison use (12,680 tokens), printing its time.
  PACKLM_LIB=build/gpu/libpacklm.so PYTHONPATH=python python3 bench/profile_step.py MODEL_DIR
      [--single-pass] [--reps N]
Under Nsight Compute: ncu --metrics gpu__time_duration.sum --csv --page raw python3 ... then
bench/ncu_breakdown.py."""
import argparse
import time

import numpy as np
import packlm

BASE = [2048, 1500, 900, 600, 400, 300, 200, 150, 100, 64, 40, 20, 10, 5, 2, 1]

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--single-pass", action="store_true", help="single-pass BF16 GEMM and mixer inputs")
ap.add_argument("--reps", type=int, default=1)
a = ap.parse_args()
m = packlm.Model(a.model, device="cuda", bf16_single_pass=a.single_pass)
rng = np.random.default_rng(0)
seqs = [rng.integers(0, m.vocab_size, BASE[i % 16]).tolist() for i in range(32)]
m.score([rng.integers(0, m.vocab_size, 64).tolist()])
for _ in range(a.reps):
    t = time.perf_counter()
    m.score(seqs, max_batch_tokens=1 << 20)
    print(f"score 12,680 tokens: {(time.perf_counter() - t) * 1e3:.1f} ms (host wall, one step)")
