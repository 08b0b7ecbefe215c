"""bench/side_by_side.py, the table of packlm beside its GPU peers, on small hand-made inputs: each
ratio is the peer's time over packlm's, the kernels' figures come from the fresh-process run
(mixers.json) where there is one, with the full bench's own row beside it, and a missing peer or
file gives a dash, not a crash."""
import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "side_by_side.py")


def write_case(d, mixers=True, hf=True):
    fla = {"chunk_fwd_15seq": {"ms": 1.5}, "chunk_fwd_1seq": {"ms": 2.0}, "chunk_fwd_512x64": {"ms": 1.8},
           "recurrent_decode_N1": {"ms_per_call": 0.2}, "recurrent_decode_N16": {"ms_per_call": 0.2},
           "recurrent_decode_N256": {"ms_per_call": 0.4}, "conv1d_varlen_D6144_W4_silu": {"ms": 0.5},
           "env": {"gpu": "test"}}
    pk = {"cuda_gdn_15seq_ms": 1.2, "cuda_gdn_1seq_ms": 1.0, "cuda_gdn_512x64_ms": 0.9,
          "cuda_gdn_decode1_ms": 0.02, "cuda_gdn_decode16_ms": 0.04, "cuda_gdn_decode256_ms": 0.2,
          "cuda_conv_15seq_ms": 0.5, "cuda_prefill_tokens_per_s": 100000.0, "cuda_score_tokens_per_s": 50000.0,
          "cuda_score_single_pass_tokens_per_s": 200000.0, "cuda_logits_single_pass_tokens_per_s": 250000.0,
          "cuda_gemm_tflops": 700.0, "cuda_copy_tbps": 4.0}
    with open(os.path.join(d, "fla.json"), "w") as f:
        json.dump(fla, f)
    with open(os.path.join(d, "packlm.json"), "w") as f:
        json.dump({k: {"value": v, "unit": "x"} for k, v in pk.items()}, f)
    if mixers:  # the kernels alone in a fresh process: the 15-sequence case faster than after the model
        with open(os.path.join(d, "mixers.json"), "w") as f:
            json.dump({"cuda_gdn_15seq_ms": {"value": 0.75, "unit": "ms"},
                       "cuda_gdn_1seq_ms": {"value": 1.0, "unit": "ms"}}, f)
    if hf:  # a log that ends with the JSON object transformers' timing prints
        with open(os.path.join(d, "hf.txt"), "w") as f:
            f.write("warming up\n" + json.dumps({"tokens": 12000, "packed_fla_kwargs_ms": 120.0,
                                                 "padded_ms": 300.0}, indent=1) + "\n")


def run(d):
    r = subprocess.run([sys.executable, SCRIPT, d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {line[:52].strip(): line for line in r.stdout.splitlines()}


def cells(line):
    """peer ms, packlm ms, ratio: the last three fields"""
    return line.split()[-3:]


def test_ratios_and_fresh_process_kernels(tmp_path):
    write_case(str(tmp_path))
    rows = run(str(tmp_path))
    # 15 sequences: mixers.json's 0.75 ms, not the full bench's 1.2; ratio 1.5 / 0.75
    assert cells(rows["delta rule, 15 seqs / 32,768 tokens"]) == ["1.500", "0.750", "2.00x"]
    # the full bench's figure for the same case is its own row
    after = [v for k, v in rows.items() if k.startswith("delta rule, 15 seqs, after the model")]
    assert len(after) == 1 and cells(after[0]) == ["1.500", "1.200", "1.25x"]
    # a kernel mixers.json lacks keeps the full bench's figure
    assert cells(rows["delta rule, 512 x 64"]) == ["1.800", "0.900", "2.00x"]
    # the model rows: 12,000 tokens at 100,000 tokens/s is 120 ms, against 120 ms packed and 300 padded
    assert cells(rows["model, 12,680 tokens / 32 seqs, last-token logits"]) == ["120.000", "120.000", "1.00x"]
    assert cells(rows["model, same"]) == ["300.000", "120.000", "2.50x"]
    single = [v for k, v in rows.items() if k.startswith("model, same, score, single-pass BF16 (as")]
    assert len(single) == 1 and cells(single[0]) == ["120.000", "60.000", "2.00x"]


def test_missing_inputs_give_dashes(tmp_path):
    write_case(str(tmp_path), mixers=False, hf=False)
    rows = run(str(tmp_path))
    # without mixers.json the kernels come from the full bench, and no after-the-model row is printed
    assert cells(rows["delta rule, 15 seqs / 32,768 tokens"]) == ["1.500", "1.200", "1.25x"]
    assert not any(k.startswith("delta rule, 15 seqs, after the model") for k in rows)
    # without transformers' timing the model rows have no peer and no ratio
    assert cells(rows["model, same"])[0] == "-" and cells(rows["model, same"])[2] == "-"
