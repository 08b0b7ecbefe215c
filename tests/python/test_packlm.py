"""The Python package against the CLI and the fixtures: forward in every input form bit for bit
equal to `packlm forward`, within 1e-4 * max|ref| of transformers' logits; score against
`packlm score`; every bad input the CLI refuses refused with the same message; states; generation;
the tokenizer; interrupts and threads."""
import json
import os
import shutil
import signal
import threading

import numpy as np
import pytest

from conftest import (CLI, DATA, FIXTURES, ROOT, cli_error, fixture_dir, load_json, read_inputs, ref_logits,
                      run_cli)


def packed(seqs):
    """DataCollatorWithFlattening's form: one row [1, T], position ids restarting at 0."""
    ids = np.array([[t for s in seqs for t in s]], dtype=np.int64)
    pos = np.array([[p for s in seqs for p in range(len(s))]], dtype=np.int64)
    cu = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int32)
    return ids, pos, cu


@pytest.fixture(scope="module")
def cli_logits(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("cli")
    for n in FIXTURES:
        path = str(d / (n + ".npy"))
        rc, _, err = run_cli("forward", "--model", fixture_dir(n), "--input", os.path.join(DATA, n, "inputs.txt"),
                             "--out", path, "--threads", "2")
        assert rc == 0, err
        out[n] = np.load(path)
    return out


def test_library_found(packlm):
    assert os.path.exists(packlm.lib_path)


def test_model_info_and_config(models):
    m = models["tiny-dense"]
    assert m.info["vocab_size"] == 512 and m.vocab_size == 512
    assert m.info["n_layers"] == 4 and m.info["n_linear_layers"] == 3 and m.info["n_attention_layers"] == 1
    assert m.config["model_type"] == "qwen3_5_text"
    assert m.device == "cpu"
    assert models["tiny-moe"].info["is_moe"] == 1
    assert models["tiny-vl"].config["model_type"] == "qwen3_5"


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_every_form_equals_cli_and_reference(models, cli_logits, name):
    m = models[name]
    seqs = read_inputs(name)
    ref = ref_logits(name)
    cli = cli_logits[name]
    bound = 1e-4 * float(np.abs(ref).max())
    ids, pos, cu = packed(seqs)
    forms = {
        "list of lists": m.forward(seqs),
        "list of arrays": m.forward([np.array(s, dtype=np.int32) for s in seqs]),
        "packed [1,T] + position_ids": m.forward(ids, position_ids=pos),
        "packed [T] + position_ids int32": m.forward(ids[0].astype(np.int32), position_ids=pos[0].astype(np.int32)),
        "packed [1,T] + cu_seqlens": m.forward(ids, cu_seqlens=cu),
        "packed + cu_seqlens + position_ids": m.forward(ids, position_ids=pos, cu_seqlens=cu),
        "packed list row + position list": m.forward(ids[0].tolist(), position_ids=pos[0].tolist()),
        "nested list [[row]] + [[positions]]": m.forward(ids.tolist(), position_ids=pos.tolist()),
    }
    for what, got in forms.items():
        assert got.dtype == np.float32 and got.shape == ref.shape, what
        assert np.array_equal(got, cli), "%s: not bit for bit the CLI's logits" % what
        assert np.abs(got - ref).max() <= bound, what
    for budget in (1, 7, 100000):
        got = m.forward(ids, position_ids=pos, max_batch_tokens=budget)
        assert np.abs(got - ref).max() <= bound, "budget %d" % budget


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_each_sequence_alone(models, name):
    m = models[name]
    seqs = read_inputs(name)
    ref = ref_logits(name)
    bound = 1e-4 * float(np.abs(ref).max())
    ids, pos, _ = packed(seqs)
    allp = m.forward(ids, position_ids=pos)
    off = 0
    for s in seqs:
        alone = m.forward(np.array(s))
        assert np.abs(alone - allp[off:off + len(s)]).max() <= bound
        off += len(s)


def test_forward_jsonl_packed_rows_equal_cli(models, tmp_path):
    """The CLI's own packed JSONL form (one row with position ids) gives the same bits as Python's row."""
    seqs = read_inputs("tiny-dense")
    ids, pos, _ = packed(seqs)
    f = tmp_path / "row.jsonl"
    f.write_text(json.dumps({"input_ids": ids[0].tolist(), "position_ids": pos[0].tolist()}) + "\n")
    out = str(tmp_path / "x.npy")
    rc, _, err = run_cli("forward", "--model", fixture_dir("tiny-dense"), "--input", str(f), "--out", out,
                         "--threads", "2")
    assert rc == 0, err
    assert np.array_equal(np.load(out), models["tiny-dense"].forward(ids, position_ids=pos))


def test_readme_example(packlm, models):
    m = models["tiny-dense"]
    seqs = [[11, 12, 13], [21, 22], [31, 32, 33, 34]]
    input_ids = np.array([sum(seqs, [])])
    position_ids = np.array([[p for s in seqs for p in range(len(s))]])
    logits = m.forward(input_ids, position_ids=position_ids)
    starts = np.cumsum([0] + [len(s) for s in seqs])
    for s, a, b in zip(seqs, starts[:-1], starts[1:]):
        assert np.allclose(logits[a:b], m.forward(s), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FIXTURES)
def test_score_equals_cli_and_reference(models, name, tmp_path):
    m = models[name]
    seqs = read_inputs(name) + [[7]]
    f = tmp_path / "in.txt"
    f.write_text("".join(" ".join(map(str, s)) + "\n" for s in seqs))
    rc, out, err = run_cli("score", "--model", fixture_dir(name), "--input", str(f), "--threads", "2")
    assert rc == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    ids, pos, cu = packed(seqs)
    for r in (m.score(seqs, per_token=True), m.score(ids, position_ids=pos, per_token=True),
              m.score(ids, cu_seqlens=cu, max_batch_tokens=5, per_token=True)):
        assert len(r) == len(seqs)
        for i, l in enumerate(lines):
            assert r.tokens[i] == l["tokens"]
            assert abs(r.logprob[i] - l["logprob"]) <= 2e-6 + 1e-6 * abs(l["logprob"]), (i, r.logprob[i], l)
            if l["ppl"] is None:
                assert np.isnan(r.ppl[i]) and r.logprob[i] == 0.0
            else:
                assert abs(r.ppl[i] - l["ppl"]) <= 1e-4 * l["ppl"]
    # per-token log-probabilities against log-softmax of transformers' logits
    ref = ref_logits(name).astype(np.float64)
    lsm = ref - ref.max(1, keepdims=True)
    lsm -= np.log(np.exp(lsm).sum(1, keepdims=True))
    r = m.score(seqs[:-1], per_token=True)
    off = 0
    for s, tl in zip(seqs[:-1], r.token_logprobs):
        want = lsm[np.arange(off, off + len(s) - 1), s[1:]]
        assert tl.shape == (len(s) - 1,)
        assert tl.size == 0 or np.abs(tl - want).max() <= 2e-4 * np.abs(ref).max()
        off += len(s)


# ------------------------------------------------------------------ bad input
BAD_ROWS = [  # (what, input_ids, position_ids, needle): the CLI's input cases (tests/test_cli.c)
    ("a token id outside the vocabulary", [1, 2, 512], None, "outside the vocabulary"),
    ("a negative token id", [1, -2, 3], None, "outside the vocabulary"),
    ("a fractional token id", [1, 2.5], None, "not a token id"),
    ("a token id that is a string", [1, "7"], None, "not an integer"),
    ("a token id past int64", [1, 2**70], None, "outside the vocabulary"),
    ("a NaN token id", np.array([1.0, np.nan]), None, "not a token id"),
    ("negative position ids", [1, 2], [-1, 0], "negative"),
    ("position ids that jump without a state", [1, 2, 3], [0, 1, 5], "jump"),
    ("a first position > 0 with nothing to continue", [1, 2], [3, 4], "jump"),
    ("position_ids of another length", [1, 2, 3], [0, 1], "position_ids has 2"),
    ("an empty sequence", np.zeros(0, np.int64), None, "empty sequence"),
    ("no sequences", [], None, "no sequences"),
]


def _cli_refusal(tmp_path, ids, pos):
    """The CLI's message for the same input as a JSONL line (None where JSON cannot say it)."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "f" or any(isinstance(x, float) and x != int(x)
                                                                    for x in list(ids)):
        return None
    if any(isinstance(x, int) and abs(x) > 2**53 for x in list(ids)):
        return None
    line = {"input_ids": [x if isinstance(x, str) else int(x) for x in list(ids)]}
    if pos is not None:
        line["position_ids"] = list(pos)
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(line) + "\n" if not isinstance(ids, list) or len(ids) else "")
    rc, _, err = run_cli("forward", "--model", fixture_dir("tiny-dense"), "--input", str(f), "--out",
                         str(tmp_path / "x.npy"))
    assert rc == 1 and not (tmp_path / "x.npy").exists()
    return cli_error(err)


@pytest.mark.parametrize("what,ids,pos,needle", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_input_refused_as_cli(packlm, models, tmp_path, what, ids, pos, needle):
    m = models["tiny-dense"]
    cli = _cli_refusal(tmp_path, ids, pos)
    for call in (m.forward, m.score):
        with pytest.raises(ValueError) as e:
            call(ids, position_ids=pos)
        msg = str(e.value)
        assert needle in msg, msg
        if cli is not None:
            # the CLI says "FILE: line 1: MSG" (index into the JSON line's input_ids)
            assert cli.endswith(": " + msg), (cli, msg)
        if cli is not None:
            assert needle in cli
        assert isinstance(e.value, packlm.PLMError) or e.type is ValueError


def test_bad_input_more(models):
    m = models["tiny-dense"]
    bad = [
        (dict(input_ids=[[1, 2], []]), "input_ids[1]: empty sequence"),
        (dict(input_ids=[[1, 2], [3, 999]]), "input_ids[1][1] = 999 is outside the vocabulary [0, 512)"),
        (dict(input_ids=np.ones((2, 3), np.int64)), "a packed row is [T] or [1, T]"),
        (dict(input_ids=np.ones((1, 1, 3), np.int64)), "dimension"),
        (dict(input_ids=np.array([True, False])), "dtype bool"),
        (dict(input_ids=np.array([1, 2], dtype=np.uint64) * (2**63)), "outside the vocabulary"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0, 3, 3]), "empty sequence"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[1, 3]), "cu_seqlens[0] is 1, must be 0"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0, 2]), "cu_seqlens ends at 2 but input_ids has 3 tokens"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0, 2, 1, 3]), "reversed"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0]), "at least 2 entries"),
        (dict(input_ids=[1, 2, 3], cu_seqlens=[0, 2, 3], position_ids=[0, 1, 2]), "disagrees with cu_seqlens"),
        (dict(input_ids=[[1, 2], [3]], position_ids=[0, 1, 0]), "packed row"),
        (dict(input_ids=[1, 2], max_batch_tokens=0), "max_batch_tokens expects an integer in [1, 1073741824]"),
        (dict(input_ids=[1, 2], max_batch_tokens=2.5), "max_batch_tokens"),
        (dict(input_ids=[1, 2], position_ids=[0, 2**40]), "position_ids[1]"),
    ]
    for kw, needle in bad:
        for call in (m.forward, m.score):
            with pytest.raises(ValueError) as e:
                call(**kw)
            assert needle in str(e.value), (kw, str(e.value))
    for x in ("1 2 3", b"12", None, 3, object()):
        with pytest.raises((TypeError, ValueError)):
            m.forward(x)


def _model_copy(tmp_path, edit):
    d = tmp_path / "m"
    shutil.copytree(fixture_dir("tiny-dense"), d)
    edit(str(d))
    return str(d)


def _sed(path, old, new):
    with open(path) as f:
        s = f.read()
    with open(path, "w") as f:
        f.write(s.replace(old, new))


def _truncate(path, n):
    with open(path, "r+b") as f:
        f.truncate(n)


def _header_past_end(path):
    with open(path, "r+b") as f:
        f.write(b"\xff\xff\xff\xff\x00\x00\x00\x00")


def _lying_offset(path):
    with open(path, "rb") as f:
        b = f.read()
    old = b'"lm_head.weight":{"dtype":"F32","shape":[512,64],"data_offsets":[0,'
    assert old in b
    with open(path, "wb") as f:
        f.write(b.replace(old, old[:-2] + b"9,"))


MODEL_CASES = [  # (what, edit of a tiny-dense copy, needle, exception class)
    ("a missing model directory", None, "config.json", OSError),
    ("a config missing hidden_size", lambda d: _sed(d + "/config.json", '"hidden_size": 64,', ""),
     "missing field 'hidden_size'", ValueError),
    ("a config missing layer_types", lambda d: _sed(d + "/config.json", '"layer_types"', '"layer_typos"'),
     "layer_types", ValueError),
    ("malformed config JSON",
     lambda d: open(d + "/config.json", "w").write('{"model_type": "qwen3_5_text", '), "malformed JSON", ValueError),
    ("a tensor shape that does not match the config",
     lambda d: _sed(d + "/config.json", '"intermediate_size": 128', '"intermediate_size": 100'),
     "mlp.gate_proj.weight", ValueError),
    ("another model type", lambda d: _sed(d + "/config.json", "qwen3_5_text", "llama"), "llama", None),
    ("a truncated safetensors file", lambda d: _truncate(d + "/model.safetensors", 500000), "model.safetensors", None),
    ("a header length past the end of the file", lambda d: _header_past_end(d + "/model.safetensors"), "header",
     None),
    ("a 4-byte safetensors file", lambda d: _truncate(d + "/model.safetensors", 4), "model.safetensors", None),
    ("a tensor whose byte range does not match its shape", lambda d: _lying_offset(d + "/model.safetensors"),
     "lm_head.weight", None),
    ("a model directory without weights", lambda d: os.remove(d + "/model.safetensors"), "model.safetensors", None),
    ("bytes after the last tensor", lambda d: open(d + "/model.safetensors", "ab").write(b"xyz"),
     "3 bytes after the last tensor", None),
    ("st-count-params-overflow", "tests/data/repro/st-count-params-overflow.model",
     "tensor 'zz': shape product overflows", None),
    ("cfg-eos-float-cast-overflow", "tests/data/repro/cfg-eos-float-cast-overflow.model",
     "config.json: field 'eos_token_id' = 1e+20 is not a token id", None),
]


@pytest.mark.parametrize("what,edit,needle,exc", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_refused_as_cli(packlm, tmp_path, what, edit, needle, exc):
    if edit is None:
        d = "/nonexistent/model"
    elif isinstance(edit, str):
        d = os.path.join(ROOT, edit)
    else:
        d = _model_copy(tmp_path, edit)
    rc, _, err = run_cli("forward", "--model", d, "--input", os.path.join(DATA, "tiny-dense", "inputs.txt"),
                         "--out", str(tmp_path / "x.npy"))
    assert rc == 1
    cli = cli_error(err)
    with pytest.raises((ValueError, OSError, NotImplementedError, MemoryError)) as e:
        packlm.Model(d)
    assert str(e.value) == cli, (str(e.value), cli)
    assert needle in str(e.value)
    assert isinstance(e.value, packlm.PLMError) and e.value.status.startswith("PLM_ERR_")
    if exc is not None:
        assert isinstance(e.value, exc)


def test_error_classes(packlm):
    with pytest.raises(OSError):
        packlm.Model("/nonexistent/model")
    with pytest.raises(NotImplementedError):  # a CPU-only build refuses CUDA
        if "cuda" in open(os.path.join(ROOT, "build", "flavor")).read():
            pytest.skip("CUDA build")
        packlm.Model(fixture_dir("tiny-dense"), device="cuda")
    with pytest.raises(ValueError):
        packlm.Model(fixture_dir("tiny-dense"), threads=0)
    with pytest.raises(ValueError):
        packlm.Model(fixture_dir("tiny-dense"), device="cpu\0x")


# ------------------------------------------------------------------ states
def test_step_matches_forward(models):
    m = models["tiny-dense"]
    seqs = read_inputs("tiny-dense")
    ref = ref_logits("tiny-dense")
    bound = 1e-4 * float(np.abs(ref).max())
    s = m.new_state()
    a, b = m.new_state(), m.new_state()
    seq = seqs[2]
    full = m.forward(seq)
    # prefill 40, then 1 token at a time, together with another sequence in the same step
    last = m.step(seq[:40], s)
    assert last.shape == (1, 512) and s.length == 40
    assert np.abs(last[0] - full[39]).max() <= bound
    m.step([seqs[1]], [a])
    for t in range(40, len(seq)):
        lg = m.step([[seq[t]], [7]], [s, a])
        assert lg.shape == (2, 512)
        assert np.abs(lg[0] - full[t]).max() <= bound
    assert s.length == len(seq) and a.length == len(seqs[1]) + len(seq) - 40
    allrows = m.step([[1, 2, 3], [4]], [b, s], logits="all")
    assert allrows.shape == (4, 512)
    am = m.step([[5], [6]], [b, s], logits="argmax")
    assert am.dtype == np.int32 and am.shape == (2,)
    assert m.step([7], [b], logits=None) is None


def test_fork_and_restore_round_trips(models):
    m = models["tiny-moe"]
    seq = read_inputs("tiny-moe")[4]
    s = m.new_state()
    m.step(seq[:30], s)
    f = s.fork()
    assert f.length == 30 and f is not s
    x = m.step(seq[30:50], s, logits="all")
    y = m.step(seq[30:50], f, logits="all")
    assert np.array_equal(x, y), "a fork continues exactly as its origin"
    snap = s.snapshot()
    assert snap.length == 50
    z1 = m.step(seq[50:], s, logits="all")
    assert s.length == len(seq)
    for _ in range(2):  # one snapshot restores many times
        s.restore(snap)
        assert s.length == 50
        z2 = m.step(seq[50:], s, logits="all")
        assert np.array_equal(z1, z2)
    with pytest.raises(ValueError):
        f.restore(snap)  # a snapshot only restores into the state it was taken from
    f.copy_from(s)
    assert f.length == s.length
    s.reset()
    assert s.length == 0


def test_state_misuse_raises(packlm, models):
    a, b = models["tiny-dense"], models["tiny-moe"]
    sa, sb = a.new_state(), b.new_state()
    with pytest.raises(ValueError, match="another model"):
        a.step([1, 2], sb)
    with pytest.raises(ValueError, match="another model"):
        sa.copy_from(sb)
    snap = sb.snapshot()
    with pytest.raises(ValueError, match="another model"):
        sa.restore(snap)
    with pytest.raises(ValueError, match="same State"):
        a.step([[1], [2]], [sa, sa])
    with pytest.raises(ValueError, match="2 token sequences for 1 states"):
        a.step([[1], [2]], [sa])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        a.step([[1], [600]], [sa, a.new_state()])
    with pytest.raises(ValueError, match="empty sequence"):
        a.step([[]], [sa])
    with pytest.raises(TypeError):
        a.step([1], ["not a state"])
    with pytest.raises(TypeError):
        sa.restore("x")
    assert sa.length == 0, "a refused step changes no state"
    m = packlm.Model(fixture_dir("tiny-dense"), threads=1)
    s = m.new_state()
    m.step([1, 2, 3], s)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        s.length
    with pytest.raises(ValueError, match="closed"):
        m.forward([1, 2])


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("name", FIXTURES)
def test_generate_greedy_equals_fixture(models, name):
    m = models[name]
    seqs = read_inputs(name)
    ref = load_json(os.path.join(DATA, name, "generate.json"))
    for e in ref:
        want = e["new_tokens"]
        got = m.generate(seqs[e["prompt_index"]], max_new_tokens=len(want), ignore_eos=True)
        assert got.tolist() == want
    prompts = [seqs[e["prompt_index"]] for e in ref]
    n = max(len(e["new_tokens"]) for e in ref)
    for budget, cap in ((None, None), (3, 1), (64, 2)):
        got = m.generate(prompts, max_new_tokens=n, ignore_eos=True, max_batch_tokens=budget, max_seqs=cap)
        for e, g in zip(ref, got):
            assert g.tolist()[:len(e["new_tokens"])] == e["new_tokens"]


def test_generate_sampling(models):
    m = models["tiny-dense"]
    p = [[1, 2, 3], [4, 5, 6, 7], [8]]
    a = m.generate(p, 6, temperature=0.8, top_k=50, top_p=0.9, seed=5)
    b = m.generate(p, 6, temperature=0.8, top_k=50, top_p=0.9, seed=5, max_seqs=1)
    assert [x.tolist() for x in a] == [x.tolist() for x in b], "batching does not change a sequence's tokens"
    assert all(len(x) == 6 for x in a)
    assert m.generate([1, 2], 0).size == 0
    for kw in (dict(max_new_tokens=-1), dict(temperature=float("nan")), dict(seed=-1), dict(max_seqs=0)):
        with pytest.raises(ValueError):
            m.generate([[1, 2]], **{"max_new_tokens": 2, **kw})
    with pytest.raises(ValueError, match="empty sequence"):
        m.generate([[1], []], 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.generate([[1], [512]], 2)


# ------------------------------------------------------------------ tokenizer
def test_tokenizer_round_trip(packlm):
    d = os.path.join(DATA, "tokenizer-qwen3")
    tok = packlm.Tokenizer(d)
    texts = [json.loads(l)["text"] for l in open(os.path.join(d, "corpus.jsonl"))]
    want = [[int(x) for x in l.split()] for l in open(os.path.join(d, "expected_ids.txt"))]
    got = tok.encode_batch(texts)
    assert got == want
    assert tok.decode_batch(got) == texts
    assert tok.decode(np.array(got[0])) == texts[0]
    assert tok.encode(texts[0], output="numpy").dtype == np.int32
    assert tok.encode(texts[2].encode("utf-8")) == want[2]
    assert tok.token_to_id("<|im_end|>") == tok.encode("<|im_end|>")[0]
    assert tok.id_to_token(tok.token_to_id("<|im_end|>")) == "<|im_end|>"
    assert tok.token_to_id("no such token, surely") is None and tok.id_to_token(-1) is None
    assert tok.vocab_size > 151000
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([1, tok.vocab_size])
    with pytest.raises(ValueError):
        tok.encode(b"\xff\xfe")  # invalid UTF-8: the library's message with the byte offset
    with pytest.raises(ValueError):
        tok.encode("\ud800")
    with pytest.raises(OSError):
        packlm.Tokenizer("/nonexistent/tokenizer.json")
    with pytest.raises(TypeError):
        tok.encode(5)


# ------------------------------------------------------------------ arrays, interrupts, threads
class DLPackOnly:
    """An array seen only through DLPack (no __array__)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_array_inputs(models):
    m = models["tiny-dense"]
    seqs = read_inputs("tiny-dense")[:3]
    ids, pos, cu = packed(seqs)
    want = m.forward(ids, position_ids=pos)
    assert np.array_equal(m.forward(DLPackOnly(ids[0]), position_ids=DLPackOnly(pos[0])), want)
    assert np.array_equal(m.forward(ids[0].astype(np.uint16), cu_seqlens=tuple(cu.tolist())), want)
    assert np.array_equal(m.forward(ids[0].astype(np.float64), position_ids=pos[0].astype(np.float32)), want)
    strided = np.zeros(2 * ids.shape[1], np.int32)
    strided[::2] = ids[0]
    assert np.array_equal(m.forward(strided[::2], position_ids=pos), want)


def test_torch_tensors(models):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    m = models["tiny-dense"]
    seqs = read_inputs("tiny-dense")[:3]
    ids, pos, cu = packed(seqs)
    want = m.forward(ids, position_ids=pos)
    got = m.forward(torch.tensor(ids), position_ids=torch.tensor(pos), output="torch")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert np.array_equal(got.numpy(), want)
    got = m.forward(torch.tensor(ids, dtype=torch.int32), cu_seqlens=torch.tensor(cu))
    assert np.array_equal(got, want)
    r = m.score(torch.tensor(ids), position_ids=torch.tensor(pos), output="torch")
    assert isinstance(r.logprob, torch.Tensor)


def test_keyboard_interrupt_stops_a_long_forward(models):
    """Ctrl-C during forward, whether it lands between steps or in the logits callback: raised, never lost."""
    m = models["tiny-dense"]
    seqs = read_inputs("tiny-dense") * 120  # ~1 s at budget 3: still running at the last delay
    for delay in (0.05, 0.2, 0.37):
        timer = threading.Timer(delay, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                m.forward(seqs, max_batch_tokens=3)
        finally:
            timer.cancel()
    assert np.array_equal(m.forward(seqs[:7]), m.forward(seqs[:7]))


def test_keyboard_interrupt_stops_a_long_score(models):
    m = models["tiny-dense"]
    seqs = read_inputs("tiny-dense") * 40
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            m.score(seqs, max_batch_tokens=1)  # ~14k steps: far longer than 0.3 s
    finally:
        timer.cancel()
    r = m.score(read_inputs("tiny-dense"))  # the model is usable afterwards
    assert len(r) == 7


def test_threads_share_a_model(models):
    m = models["tiny-moe"]
    seqs = read_inputs("tiny-moe")
    want = m.forward(seqs)
    got = [None] * 4

    def work(i):
        got[i] = m.forward(seqs)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(g, want) for g in got)


def test_readme_and_docstring_examples(packlm, monkeypatch):
    """The README's Python example and the docstrings' examples run as written (from the repository root)."""
    import doctest
    monkeypatch.chdir(ROOT)
    text = open(os.path.join(ROOT, "README.md")).read()
    code = text.split("\n## Python\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    for mod in (packlm.model, packlm.tokenizer, packlm):
        r = doctest.testmod(mod, verbose=False)
        assert r.failed == 0, mod.__name__


def test_int8_weights(packlm):
    # int8 weights through the Python API: the same logits as `packlm forward --weights int8`
    # (test_int8 holds the accuracy bounds), and an unknown mode refused
    name = "tiny-dense"
    seqs = read_inputs(name)
    ref = ref_logits(name)
    with packlm.Model(fixture_dir(name), weights="int8") as m:
        got = m.forward(seqs)
    assert got.shape == ref.shape and np.isfinite(got).all()
    assert 0 < np.abs(got - ref).max() <= 0.75 * np.abs(ref).max()
    with pytest.raises(ValueError, match="weights"):
        packlm.Model(fixture_dir(name), weights="int4")
