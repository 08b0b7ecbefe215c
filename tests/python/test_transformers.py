"""packlm fed transformers' own packed batch, against transformers run on each sequence alone.

For every fixture: the sequences of inputs.txt go through transformers' DataCollatorWithFlattening
(one row [1, T], position_ids restarting at 0, and cu_seq_lens_q where the collator provides it);
the checkpoint runs in transformers (AutoModelForCausalLM.from_pretrained, float32, on CUDA when
available, else the CPU) on each sequence alone; packlm gets the collator's tensors exactly as they
come out, and its logits must lie within 1e-4 * max|ref| of transformers' (the F32 bound).

Skipped, with the reason, where torch or transformers cannot be imported. Standalone:
    PACKLM_LIB=build/libpacklm.so python3 -m pytest -s tests/python/test_transformers.py
PACKLM_TEST_DEVICE=cuda runs packlm on the GPU (a library built with make CUDA=1)."""
import os

import numpy as np
import pytest

from conftest import FIXTURES, fixture_dir, read_inputs, ref_logits

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the transformers comparison needs it")
transformers = pytest.importorskip("transformers",
                                   reason="transformers is not installed: the transformers comparison needs it")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PACKLM_DEVICE = os.environ.get("PACKLM_TEST_DEVICE", "cpu")


def load_hf(path):
    kw = dict(dtype=torch.float32)
    try:
        m = transformers.AutoModelForCausalLM.from_pretrained(path, **kw)
    except (ValueError, KeyError):  # a vision-language checkpoint (Qwen3_5ForConditionalGeneration)
        m = transformers.AutoModelForImageTextToText.from_pretrained(path, **kw)
    return m.to(DEVICE).eval()


def collate(seqs):
    from transformers import DataCollatorWithFlattening
    feats = [{"input_ids": s} for s in seqs]
    try:
        return DataCollatorWithFlattening(return_flash_attn_kwargs=True)(feats), True
    except TypeError:  # a collator without flash-attention kwargs
        return DataCollatorWithFlattening()(feats), False


@pytest.mark.parametrize("name", FIXTURES)
def test_collator_batch_equals_transformers_per_sequence(packlm, name):
    seqs = read_inputs(name)
    hf = load_hf(fixture_dir(name))
    with torch.no_grad():
        ref = torch.cat([hf(input_ids=torch.tensor([s], device=DEVICE)).logits[0].float().cpu() for s in seqs])
    ref = ref.numpy()
    bound = 1e-4 * float(np.abs(ref).max())
    fixture = ref_logits(name)
    batch, has_cu = collate(seqs)
    ids, pos = batch["input_ids"], batch["position_ids"]
    assert tuple(ids.shape) == (1, sum(map(len, seqs))) and tuple(pos.shape) == tuple(ids.shape)
    m = packlm.Model(fixture_dir(name), device=PACKLM_DEVICE)
    # the collator's tensors as they are, on packlm's device (a CUDA model reads them in device memory
    # and returns a torch CUDA tensor; a CPU model refuses device tensors)
    on = "cuda" if m.device.startswith("cuda") else "cpu"
    got = m.forward(ids.to(on), position_ids=pos.to(on))
    if isinstance(got, torch.Tensor):
        assert got.device.type == on
        got = got.cpu().numpy()
    d_pos = float(np.abs(got - ref).max())
    assert got.shape == ref.shape and d_pos <= bound, (d_pos, bound)
    line = "%s: transformers %s (%s, per sequence) vs packlm (%s, collator's position_ids) max|diff| %.3g, " \
           "bound %.3g; transformers vs fixture %.3g" % (name, transformers.__version__, DEVICE, m.device, d_pos,
                                                         bound, float(np.abs(ref - fixture).max()))
    if has_cu:
        got_cu = m.forward(ids, cu_seqlens=batch["cu_seq_lens_q"], position_ids=pos)
        d_cu = float(np.abs(got_cu - ref).max())
        assert d_cu <= bound, (d_cu, bound)
        line += "; with cu_seq_lens_q %.3g" % d_cu
    # score from the same row: transformers' log-softmax per token
    lsm = torch.log_softmax(torch.from_numpy(ref).double(), -1).numpy()
    r = m.score(ids, position_ids=pos, per_token=True)
    off = 0
    for s, tl in zip(seqs, r.token_logprobs):
        want = lsm[np.arange(off, off + len(s) - 1), s[1:]]
        assert tl.size == 0 or np.abs(tl - want).max() <= 2 * bound
        off += len(s)
    print("\n" + line)
