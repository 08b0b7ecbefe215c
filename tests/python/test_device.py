"""Arrays in device memory: torch CUDA tensors in and out of a CUDA model without a round trip
through the host (plm_step.mem / plm_outputs.mem = PLM_MEM_DEVICE), against the NumPy path on the
same model bit for bit; the result is a tensor torch allocated on the device (its data_ptr is the one
handed to the library); the refusals carry the library's messages.

The first tests need no GPU (a CPU model refusing arrays declared device memory, through the C API).
The rest need torch with CUDA and a library built with make CUDA=1: they are skipped with the reason
elsewhere, and fail instead when PLM_REQUIRE_CUDA=1 (the GPU run sets it)."""
import ctypes
import os
from ctypes import byref, c_int32, c_void_p

import numpy as np
import pytest

from conftest import FIXTURES, fixture_dir, read_inputs


def packed(seqs):
    ids = np.array([[t for s in seqs for t in s]], dtype=np.int64)
    pos = np.array([[p for s in seqs for p in range(len(s))]], dtype=np.int64)
    cu = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int32)
    return ids, pos, cu


def ptr(a, cls=ctypes.c_int32):
    return ctypes.cast(c_void_p(a.ctypes.data), ctypes.POINTER(cls))


def bits_equal(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ no GPU needed
def test_cpu_context_refuses_arrays_declared_device_memory(packlm, models):
    from packlm import _lib as L
    m = models["tiny-dense"]
    tok = np.array([1, 2, 3], np.int32)
    cu = np.array([0, 3], np.int32)
    st = (c_void_p * 1)(None)
    err = L.plm_error()
    step = L.plm_step(3, ptr(tok), None, 1, ptr(cu), st, L.MEM_DEVICE)
    with pytest.raises(ValueError, match="tokens are declared device memory .* runs on cpu") as e:
        L.check(L.lib.plm_step_run(m._c, byref(step), None, byref(err)), err)
    assert e.value.status == "PLM_ERR_INPUT"
    step.mem = L.MEM_HOST
    out = L.plm_outputs()
    lg = np.empty((3, m.vocab_size), np.float32)
    out.logits, out.n_rows, out.mem = ptr(lg, ctypes.c_float), 3, L.MEM_DEVICE
    with pytest.raises(ValueError, match="outputs are declared device memory .* runs on cpu"):
        L.check(L.lib.plm_step_run(m._c, byref(step), byref(out), byref(err)), err)
    out.mem = 5
    with pytest.raises(ValueError, match="plm_outputs.mem is 5"):
        L.check(L.lib.plm_step_run(m._c, byref(step), byref(out), byref(err)), err)
    n = c_int32()
    with pytest.raises(ValueError, match="runs on cpu"):
        L.check(L.lib.plm_segments_from_positions_on(m._c, ptr(cu), byref(n), ptr(tok), 3, byref(err)), err)
    out.mem = L.MEM_HOST  # the same step with host arrays runs
    L.check(L.lib.plm_step_run(m._c, byref(step), byref(out), byref(err)), err)
    assert bits_equal(lg, m.forward([1, 2, 3]))


def test_one_id_per_state_host(models):
    """step(tokens=[n ids], states=[n states]): one token each (the decoding form; host arrays)."""
    m = models["tiny-dense"]
    a, b = m.new_state(), m.new_state()
    m.step([[1, 2, 3], [4, 5]], [a, b], logits=None)
    a2, b2 = a.fork(), b.fork()
    got = m.step(np.array([7, 8]), [a, b])
    want = m.step([[7], [8]], [a2, b2])
    assert bits_equal(got, want) and a.length == 4 and b.length == 3
    with pytest.raises(ValueError, match="3 token ids for 2 states"):
        m.step(np.array([1, 2, 3]), [a, b])
    with pytest.raises(ValueError, match=r"tokens\[1\] = 999 is outside the vocabulary \[0, 512\)"):
        m.step(np.array([1, 999]), [a, b])


# ------------------------------------------------------------------ torch CUDA
def _unavailable(why):
    if os.environ.get("PLM_REQUIRE_CUDA") == "1":
        pytest.fail("CUDA required (PLM_REQUIRE_CUDA=1) but unusable: " + why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def torch():
    try:
        import torch as t
    except ImportError:
        _unavailable("PyTorch is not installed: the device-tensor tests need torch with CUDA")
    if not t.cuda.is_available():
        _unavailable("torch sees no CUDA device")
    return t


@pytest.fixture(scope="module")
def cuda_models(packlm, torch):
    try:
        return {n: packlm.Model(fixture_dir(n), device="cuda") for n in FIXTURES}
    except (NotImplementedError, ValueError) as e:
        _unavailable("no CUDA model: %s" % e)


def cuda(torch, a, dtype=None):
    return torch.as_tensor(a, dtype=dtype, device="cuda")


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_device_tensors_equal_numpy_path(torch, cuda_models, name):
    m = cuda_models[name]
    seqs = read_inputs(name)
    ids, pos, cu = packed(seqs)
    want = m.forward(ids, position_ids=pos)
    assert isinstance(want, np.ndarray)
    for kw in [dict(position_ids=cuda(torch, pos)),                       # the collator's int64, on the GPU
               dict(position_ids=cuda(torch, pos), max_batch_tokens=7),   # sequences split over steps, states
               dict(cu_seqlens=cu.tolist()),                               # offsets on the host
               dict(cu_seqlens=cuda(torch, cu), position_ids=cuda(torch, pos)),
               dict(position_ids=pos)]:                                    # positions on the host
        x = cuda(torch, ids, torch.int32 if "cu_seqlens" in kw else None)
        got = m.forward(x, **kw)
        assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == torch.float32, kw
        assert got.device == x.device
        w = m.forward(ids, position_ids=pos, max_batch_tokens=7) if "max_batch_tokens" in kw else want
        assert bits_equal(got.cpu().numpy(), w), (name, kw)
    lst = [cuda(torch, s) for s in seqs]
    assert bits_equal(m.forward(lst).cpu().numpy(), m.forward(seqs))
    assert bits_equal(m.forward(cuda(torch, ids), position_ids=cuda(torch, pos), output="numpy"), want)


def test_forward_writes_into_the_tensor_handed_over(torch, cuda_models, monkeypatch):
    m = cuda_models["tiny-dense"]
    seqs = read_inputs("tiny-dense")
    ids, pos, cu = packed(seqs)
    want = m.forward(ids, position_ids=pos)
    out = torch.full((ids.shape[1], m.vocab_size), float("nan"), device="cuda")
    x = cuda(torch, ids, torch.int32)
    # no array goes through the host: Tensor.cpu / .numpy / .tolist are not called (offsets on the host)
    for f in ("cpu", "numpy", "tolist"):
        monkeypatch.setattr(torch.Tensor, f, lambda *a, **k: (_ for _ in ()).throw(AssertionError("host copy")))
    got = m.forward(x, cu_seqlens=cu, out=out)
    monkeypatch.undo()
    assert got is out and got.data_ptr() == out.data_ptr() and got.is_cuda
    assert bits_equal(got.cpu().numpy(), want)
    from packlm import _arrays as A
    assert A.dev_row(x, "input_ids", lo=0, hi=m.vocab_size).data_ptr() == x.data_ptr()  # int32: in place
    y = A.dev_row(cuda(torch, ids), "input_ids", lo=0, hi=m.vocab_size)  # int64: converted on the device
    assert y.is_cuda and y.dtype == torch.int32
    with pytest.raises(ValueError, match="out has dtype torch.float64; float32 expected"):
        m.forward(x, cu_seqlens=cu, out=out.double())
    with pytest.raises(ValueError, match="out must be a contiguous tensor of shape"):
        m.forward(x, cu_seqlens=cu, out=out[:-1])
    with pytest.raises(ValueError, match="out must be a float32 torch CUDA tensor"):
        m.forward(x, cu_seqlens=cu, out=np.empty(out.shape, np.float32))


@pytest.mark.parametrize("name", FIXTURES)
def test_score_device_tensors(torch, cuda_models, name):
    m = cuda_models[name]
    seqs = read_inputs(name)
    ids, pos, _ = packed(seqs)
    want = m.score(ids, position_ids=pos, per_token=True)
    got = m.score(cuda(torch, ids), position_ids=cuda(torch, pos), per_token=True)
    for f in ("logprob", "tokens", "ppl"):
        assert getattr(got, f).is_cuda, f
    assert got.logprob.dtype == torch.float64 and got.tokens.dtype == torch.int64
    for g, w in zip(got.token_logprobs, want.token_logprobs):
        assert g.is_cuda and bits_equal(g.cpu().numpy(), w)  # per token: bitwise
    assert np.array_equal(got.tokens.cpu().numpy(), want.tokens)
    assert np.allclose(got.logprob.cpu().numpy(), want.logprob, rtol=1e-12, atol=1e-9)
    assert np.allclose(got.ppl.cpu().numpy(), want.ppl, rtol=1e-9, equal_nan=True)


def test_step_device_tokens_and_greedy_loop(torch, cuda_models):
    m = cuda_models["tiny-dense"]
    seqs = read_inputs("tiny-dense")[:3]
    sd = [m.new_state() for _ in seqs]
    sh = [m.new_state() for _ in seqs]
    got = m.step([cuda(torch, s) for s in seqs], sd)
    want = m.step(seqs, sh)
    assert got.is_cuda and bits_equal(got.cpu().numpy(), want)
    nxt = m.step([cuda(torch, [5]) for _ in seqs], sd, logits="argmax")
    nxt_h = m.step([[5] for _ in seqs], sh, logits="argmax")
    assert nxt.is_cuda and nxt.dtype == torch.int32 and bits_equal(nxt.cpu().numpy(), nxt_h)
    for _ in range(4):  # greedy decoding with the ids staying on the device
        nxt = m.step(nxt, sd, logits="argmax")
        nxt_h = m.step(nxt_h, sh, logits="argmax")
        assert bits_equal(nxt.cpu().numpy(), nxt_h)
    got = m.step(nxt, sd, logits="all")
    want = m.step(nxt_h, sh, logits="all")
    assert got.is_cuda and bits_equal(got.cpu().numpy(), want)
    assert [s.length for s in sd] == [s.length for s in sh]


def test_side_stream(torch, cuda_models):
    """Inputs written on a side stream, the call made under it: torch's current stream is synchronised."""
    m = cuda_models["tiny-dense"]
    ids, pos, _ = packed(read_inputs("tiny-dense"))
    want = m.forward(ids, position_ids=pos)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        big = torch.randn(4096, 4096, device="cuda") @ torch.randn(4096, 4096, device="cuda")  # keeps s busy
        x = cuda(torch, ids) + (big[0, 0] * 0).long()
        got = m.forward(x, position_ids=cuda(torch, pos))
    assert bits_equal(got.cpu().numpy(), want)


def test_array_protocols(torch, cuda_models):
    """Objects that only speak __cuda_array_interface__ or DLPack are read in place through torch."""
    m = cuda_models["tiny-dense"]
    ids, pos, _ = packed(read_inputs("tiny-dense"))
    want = m.forward(ids, position_ids=pos)
    t = cuda(torch, ids[0], torch.int32)

    class CAI:
        __cuda_array_interface__ = t.__cuda_array_interface__

    class DL:
        def __dlpack__(self, **kw):
            return t.__dlpack__(**kw)

        def __dlpack_device__(self):
            return t.__dlpack_device__()

    for obj in (CAI(), DL()):
        got = m.forward(obj, position_ids=pos)
        assert got.is_cuda and bits_equal(got.cpu().numpy(), want)


def test_device_refusals(packlm, torch, cuda_models, models):
    from packlm import _lib as L
    m = cuda_models["tiny-dense"]
    ids, pos, _ = packed(read_inputs("tiny-dense")[:2])
    # a host pointer declared device memory: refused by the library (cudaPointerGetAttributes)
    tok, cu = np.array([1, 2, 3], np.int32), np.array([0, 3], np.int32)
    err = L.plm_error()
    step = L.plm_step(3, ptr(tok), None, 1, ptr(cu), (c_void_p * 1)(None), L.MEM_DEVICE)
    with pytest.raises(ValueError, match="plm_step.tokens is host memory"):
        L.check(L.lib.plm_step_run(m._c, byref(step), None, byref(err)), err)
    # a CPU model given device tensors: the library's message
    cpu = models["tiny-dense"]
    for call in (lambda: cpu.forward(cuda(torch, ids)), lambda: cpu.score(cuda(torch, ids)),
                 lambda: cpu.step(cuda(torch, [1, 2]), cpu.new_state())):
        with pytest.raises(ValueError, match="declared device memory .* runs on cpu") as e:
            call()
        assert isinstance(e.value, packlm.PLMError) and e.value.status == "PLM_ERR_INPUT"
    with pytest.raises(ValueError, match="position ids declared device memory .* runs on cpu"):
        cpu.forward(cuda(torch, ids), position_ids=cuda(torch, pos))
    # dtypes
    for bad in (cuda(torch, ids, torch.float32), cuda(torch, ids) > 0):
        with pytest.raises(ValueError, match="input_ids has dtype torch.(float32|bool); integers expected"):
            m.forward(bad)
    # bad ids and positions: the NumPy path's messages
    for kw_np, kw_dev in [
        (dict(input_ids=np.array([[1, 2, 999, 3]])), dict(input_ids=cuda(torch, [[1, 2, 999, 3]]))),
        (dict(input_ids=np.array([1, -2])), dict(input_ids=cuda(torch, [1, -2]))),
        (dict(input_ids=[1, 2, 3], position_ids=[0, -1, 0]),
         dict(input_ids=cuda(torch, [1, 2, 3]), position_ids=cuda(torch, [0, -1, 0]))),
        (dict(input_ids=[1, 2, 3], position_ids=[0, 1, 5]),
         dict(input_ids=cuda(torch, [1, 2, 3]), position_ids=cuda(torch, [0, 1, 5]))),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0, 2, 3], position_ids=[0, 1, 2]),
         dict(input_ids=cuda(torch, [1, 2, 3]), cu_seqlens=cuda(torch, [0, 2, 3]), position_ids=cuda(torch, [0, 1, 2]))),
        (dict(input_ids=[[1, 2], [3, 999]]), dict(input_ids=[cuda(torch, [1, 2]), cuda(torch, [3, 999])])),
    ]:
        for call in ("forward", "score"):
            with pytest.raises(ValueError) as host:
                getattr(m, call)(**kw_np)
            with pytest.raises(ValueError) as dev:
                getattr(m, call)(**kw_dev)
            assert str(dev.value) == str(host.value), (kw_np, str(dev.value), str(host.value))
    s = m.new_state()
    with pytest.raises(ValueError, match=r"tokens\[0\]\[1\] = 600 is outside the vocabulary"):
        m.step(cuda(torch, [1, 600]), s)
    assert s.length == 0
    # host and device arrays mixed
    with pytest.raises(ValueError, match="position_ids is in device memory but input_ids is a host array"):
        m.forward(ids, position_ids=cuda(torch, pos))
    with pytest.raises(ValueError, match=r"input_ids\[1\] is a host array but input_ids\[0\] is in device memory"):
        m.forward([cuda(torch, [1, 2]), [3, 4]])
