"""Model, State and Snapshot: the C library's plm_model + plm_ctx, plm_state and plm_snapshot."""
from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import threading
import weakref
from ctypes import POINTER, byref, c_float, c_int32, c_int64, c_void_p
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from . import _arrays as A
from ._lib import (lib, check, plm_error, plm_ctx_params, plm_step, plm_outputs, plm_piece, plm_sampling,
                   plm_request, plm_generator_params, LOGITS_CB, plm_gen_step_info, raise_status, ERR_INPUT,
                   MEM_HOST, MEM_DEVICE)

I32P = POINTER(c_int32)
F32P = POINTER(c_float)
MAX_BUDGET = 1 << 30
FORWARD_BUDGET = 512   # the CLI's defaults: `packlm forward` and `packlm score`
SCORE_BUDGET = 2048


def _addr(a) -> int:
    """Address of the data of a NumPy array, or of a torch tensor (device memory for a CUDA one)."""
    return a.data_ptr() if A.is_torch(a) else a.ctypes.data


def _i32(a, offset: int = 0):
    return ctypes.cast(c_void_p(_addr(a) + 4 * offset), I32P)


def _f32(a, offset: int = 0):
    return ctypes.cast(c_void_p(_addr(a) + 4 * offset), F32P)


def _int_param(v, name, lo, hi, default=None):
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
        raise ValueError("%s expects an integer in [%d, %d], got %r" % (name, lo, hi, v))
    return int(v)


def _float_param(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        raise ValueError("%s must be a finite number, got %r" % (name, v))
    return float(v)


@contextlib.contextmanager
def _sigint_between_steps():
    """Ctrl-C lands between steps, never inside the logits callback (an exception raised in a ctypes
    callback cannot cross C and would be lost): while a packed run is in progress on the main thread,
    SIGINT is recorded by a handler that raises nothing; the check yielded here, called between
    steps, hands it to the previous handler (KeyboardInterrupt by default). The previous handler is
    back in place when the run ends, and a SIGINT recorded by then is delivered to it."""
    pending = []
    prev = None
    if threading.current_thread() is threading.main_thread():
        try:
            prev = signal.getsignal(signal.SIGINT)
            if prev is not None and prev not in (signal.SIG_IGN, signal.SIG_DFL):
                signal.signal(signal.SIGINT, lambda signum, frame: pending.append(frame))
            else:
                prev = None
        except (ValueError, OSError):
            prev = None

    def deliver():
        if pending:
            frame = pending.pop()
            pending.clear()
            if prev is not None:
                signal.signal(signal.SIGINT, prev)
            try:
                prev(signal.SIGINT, frame)
            finally:
                signal.signal(signal.SIGINT, lambda signum, frame: pending.append(frame))

    try:
        yield deliver
    finally:
        if prev is not None:
            signal.signal(signal.SIGINT, prev)
            if pending:
                prev(signal.SIGINT, pending[-1])


@dataclass
class ScoreResult:
    """What Model.score returns, one entry per sequence, in input order.

    logprob: float64 [n]  sum over tokens 1..len-1 of log p(token | prefix) (natural log)
    tokens:  int64 [n]    predicted tokens, len - 1
    ppl:     float64 [n]  exp(-logprob / tokens); NaN for a one-token sequence
    token_logprobs: per sequence a float32 array [len - 1] (only with per_token=True)
    """
    logprob: np.ndarray
    tokens: np.ndarray
    ppl: np.ndarray
    token_logprobs: Optional[List[np.ndarray]] = None

    def __len__(self):
        return len(self.logprob)


def _check_starts(first, cu):
    """Every segment that position ids found starts at position 0: one that continues a sequence comes
    only from a State (Model.step), never inside one row. first: the position at each start cu[:-1]."""
    for s in range(len(cu) - 1):
        p0 = int(first[s])
        if p0 != 0:
            prev = int(cu[s] - cu[s - 1]) if s else 0
            raise ValueError("position ids jump to %d at index %d, but the sequence before it holds %d tokens "
                             "(a segment starting at p > 0 must continue a sequence of exactly p tokens)"
                             % (p0, cu[s], prev))


def _check_cu_seqlens(cu_seqlens, T, pos=None):
    """cu_seqlens as transformers' flash-attention kwargs hold them: int offsets from 0 to T, each
    sequence non-empty; with position ids (a NumPy array, or a torch tensor on its device) also that
    every sequence's positions run from 0. Returns the offsets and the lengths"""
    cu = A.int_array(cu_seqlens, "cu_seqlens", lo=-2**31, hi=2**31, what="offset")
    if cu.size < 2:
        raise ValueError("cu_seqlens must hold at least 2 entries (0 and the token count), got %d" % cu.size)
    if cu[0] != 0:
        raise ValueError("cu_seqlens[0] is %d, must be 0" % cu[0])
    if cu[-1] != T:
        raise ValueError("cu_seqlens ends at %d but input_ids has %d tokens" % (cu[-1], T))
    d = np.diff(cu.astype(np.int64))
    if (d <= 0).any():
        i = int(np.flatnonzero(d <= 0)[0])
        raise ValueError("cu_seqlens: sequence %d is an empty sequence or reversed (%d -> %d)"
                         % (i, cu[i], cu[i + 1]))
    if pos is not None:
        want = np.arange(T, dtype=np.int64) - np.repeat(cu[:-1].astype(np.int64), d)
        if isinstance(pos, np.ndarray):
            bad = np.flatnonzero(pos != want)
            t = int(bad[0]) if bad.size else -1
        else:  # a torch tensor: compared where it is, one index comes back
            torch = A.torch_module("position_ids in device memory")
            bad = (pos.to(torch.int64) != torch.as_tensor(want, device=pos.device)).nonzero()
            t = int(bad[0, 0]) if bad.numel() else -1
        if t >= 0:
            raise ValueError("position_ids[%d] = %d disagrees with cu_seqlens (expected %d: every sequence "
                             "starts at position 0)" % (t, int(pos[t]), want[t]))
    return cu, d


class Model:
    """A Qwen3.5 checkpoint opened by packlm, with a running context on one device.

    Model(path, device="cpu", threads=None): path is a Hugging Face checkpoint directory
    (config.json + safetensors); device "cpu", "cuda" or "cuda:N" (a library built with
    `make CUDA=1`); threads: CPU threads (None: all cores).

    .config is config.json as a dict, .info the library's plm_model_info as a dict (vocab_size,
    hidden_size, layer counts, eos_ids, n_params, ...), .device the context's device.

    Example: pack three sequences the way transformers' DataCollatorWithFlattening does (one row,
    position_ids restarting at 0 at every sequence) and check that each sequence's logits equal
    those of its own unpacked call:

        >>> import numpy as np, packlm
        >>> m = packlm.Model("tests/data/tiny-dense", threads=2)
        >>> seqs = [[11, 12, 13], [21, 22], [31, 32, 33, 34]]
        >>> input_ids = np.array([sum(seqs, [])])                             # [1, 9]
        >>> position_ids = np.array([[p for s in seqs for p in range(len(s))]]) # [[0 1 2 0 1 0 1 2 3]]
        >>> logits = m.forward(input_ids, position_ids=position_ids)          # [9, vocab] float32
        >>> starts = np.cumsum([0] + [len(s) for s in seqs])
        >>> all(np.allclose(logits[a:b], m.forward(s), rtol=0, atol=1e-5)
        ...     for s, a, b in zip(seqs, starts[:-1], starts[1:]))
        True

    weights="int8" (CPU) computes with int8 weights, "int8,linear" with the linear-attention
    projections in int8 too, "int8,act16" with two-level activations (README, "int8 weights").

    batch_invariant=True (CPU): a sequence's results are bitwise the same whatever else shares its
    steps (plm_ctx_params.batch_invariant; forward / score then cut sequences only at multiples of 64
    tokens); slower, see docs/performance.md.

    bf16_single_pass=True (BF16 weights, CPU and CUDA): each GEMM's input is rounded once to BF16, as
    transformers runs a BF16 model (plm_ctx_params.bf16_single_pass; on a CPU with AVX-512 BF16 the
    products run on vdpbf16ps, which speeds up batched decoding).

    A Model is safe to share between threads (calls on one model run one at a time; the library
    runs them with the GIL released). Errors raise exceptions carrying the library's message:
    ValueError (bad input, state or file format), OSError (files), MemoryError,
    NotImplementedError (unsupported, e.g. CUDA in a CPU-only build), RuntimeError.
    """

    def __init__(self, path, device: str = "cpu", threads: Optional[int] = None, *, use_reference: bool = False,
                 device_mem_limit: int = 0, bf16_single_pass: bool = False, batch_invariant: bool = False,
                 weights: str = "stored"):
        self._m = self._c = None
        self._lock = threading.RLock()
        self._children = weakref.WeakSet()
        path = os.fspath(path)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        if "\0" in path:
            raise ValueError("path contains a NUL character")
        if not isinstance(device, str) or "\0" in device:
            raise ValueError("device must be 'cpu', 'cuda' or 'cuda:N', got %r" % (device,))
        n_threads = _int_param(threads, "threads", 1, 1024, 0)
        limit = _int_param(device_mem_limit, "device_mem_limit", 0, 2**63 - 1, 0)
        if not isinstance(weights, str) or "\0" in weights:
            raise ValueError("weights must be 'stored' or 'int8[,options]', got %r" % (weights,))
        err = plm_error()
        m = c_void_p()
        check(lib.plm_model_open(byref(m), os.fsencode(path), byref(err)), err)
        self._m = m
        p = lib.plm_ctx_default_params()
        p.n_threads = n_threads
        p.use_reference = 1 if use_reference else 0
        p.device = device.encode()
        p.device_mem_limit = limit
        p.bf16_single_pass = 1 if bf16_single_pass else 0
        p.batch_invariant = 1 if batch_invariant else 0
        self._align = 64 if batch_invariant else 1  # PLM_SPLIT_ALIGN: plm_plan_next_aligned
        st = lib.plm_ctx_params_weights(byref(p), weights.encode(), byref(err))
        c = c_void_p()
        if not st:
            st = lib.plm_ctx_new(byref(c), m, byref(p), byref(err))
        if st:
            lib.plm_model_free(m)
            self._m = None
            check(st, err)
        self._c = c
        self.path = path
        inf = lib.plm_model_get_info(m).contents
        self.info = {f: getattr(inf, f) for f, _ in inf._fields_ if f != "eos_ids"}
        self.info["eos_ids"] = [inf.eos_ids[i] for i in range(inf.n_eos)]
        self.info.pop("n_eos")
        self.vocab_size = inf.vocab_size
        self.device = lib.plm_ctx_device(c).decode()
        try:
            with open(os.path.join(path, "config.json"), "rb") as f:
                self.config = json.load(f)
        except (OSError, ValueError):  # the library has read and validated it; this is a convenience copy
            self.config = {}
        self._tokenizer = None

    # ------------------------------------------------------------ lifetime
    def close(self):
        """Frees the model, its context and every State / Snapshot still open on it (they raise
        ValueError when used afterwards). Called when the Model is garbage-collected."""
        with self._lock:
            for ch in list(self._children):
                ch._free()
            if self._c:
                lib.plm_ctx_free(self._c)
            if self._m:
                lib.plm_model_free(self._m)
            self._c = self._m = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __repr__(self):
        return "packlm.Model(%r, device=%r, vocab_size=%d)" % (self.path, self.device, self.vocab_size)

    def _live(self):
        if not self._c:
            raise ValueError("the model is closed")

    @property
    def device_bytes(self) -> int:
        """Device memory the context holds (0 on the CPU)."""
        self._live()
        return lib.plm_ctx_device_bytes(self._c)

    def state_bytes_at(self, n_tokens: int) -> int:
        """Memory of a state after n_tokens tokens (plm_state_bytes_at)."""
        self._live()
        return lib.plm_state_bytes_at(self._m, _int_param(n_tokens, "n_tokens", 0, 2**62))

    @property
    def tokenizer(self):
        """The Tokenizer of the checkpoint (path/tokenizer.json), opened on first use."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            self._tokenizer = Tokenizer(os.path.join(self.path, "tokenizer.json"))
        return self._tokenizer

    # ------------------------------------------------------------ inputs
    def _on_device(self, input_ids, position_ids=None, cu_seqlens=None):
        """input_ids as a torch CUDA tensor (or a list of them) when it is in device memory, else None.
        Position ids or offsets in device memory go with input_ids in device memory only."""
        dev = A.cuda_tensor(input_ids)
        if dev is None and A.is_list_of_sequences(input_ids):
            parts = [A.cuda_tensor(e) for e in input_ids]
            if any(p is not None for p in parts):
                for i, p in enumerate(parts):
                    if p is None:
                        raise ValueError("input_ids[%d] is a host array but input_ids[%d] is in device memory: pass "
                                         "every sequence on one device" % (i, next(j for j, q in enumerate(parts)
                                                                                  if q is not None)))
                dev = parts
        if dev is None:
            for name, x in (("position_ids", position_ids), ("cu_seqlens", cu_seqlens)):
                if x is not None and A.cuda_tensor(x) is not None:
                    raise ValueError("%s is in device memory but input_ids is a host array: pass both on the host "
                                     "or both on the device" % name)
        return dev

    def _dev_sequences(self, dev, position_ids, cu_seqlens):
        """_sequences for input_ids in device memory (dev: a torch CUDA tensor, or a list of them):
        (tokens: int32 CUDA tensor [T], used in place when the caller's is int32 and contiguous, else
        converted on the device; lens: int64 NumPy [n]). The checks and messages of _sequences, made on
        the device; what comes to the host is the segment boundaries (4 bytes a sequence) and, for
        position ids, the first position of each sequence, never the [T] rows."""
        torch = A.torch_module("input_ids in device memory")
        V = self.vocab_size
        if isinstance(dev, list):
            if position_ids is not None or cu_seqlens is not None:
                if len(dev) == 1:
                    dev = dev[0]
                else:
                    raise ValueError("position_ids and cu_seqlens go with a packed row, not with a list of sequences")
        if isinstance(dev, list):
            parts = []
            for i, t in enumerate(dev):
                if t.device != dev[0].device:
                    raise ValueError("input_ids[%d] is on %s but input_ids[0] on %s: pass every sequence on one "
                                     "device" % (i, A.device_name(t), A.device_name(dev[0])))
                a = A.dev_int_array(t, "input_ids[%d]" % i, 0, V)
                if a.numel() == 0:
                    raise ValueError("input_ids[%d]: empty sequence" % i)
                parts.append(a)
            lens = np.array([a.numel() for a in parts], dtype=np.int64)
            return (torch.cat(parts) if len(parts) > 1 else parts[0]), lens
        tok = A.dev_row(dev, "input_ids", lo=0, hi=V)
        T = tok.numel()
        if T == 0:
            raise ValueError("empty sequence")
        if T > 2**31 - 2:
            raise ValueError("input_ids: a packed row holds at most 2^31 - 2 tokens")
        pos = dpos = None
        if position_ids is not None:
            pd = A.cuda_tensor(position_ids)
            if pd is not None:
                if pd.device != tok.device:
                    raise ValueError("position_ids is on %s but input_ids on %s" % (A.device_name(pd),
                                                                                     A.device_name(tok)))
                dpos = A.dev_row(pd, "position_ids", lo=0, what="position id")
                n_pos = dpos.numel()
            else:
                pos = A.row(position_ids, "position_ids", lo=0, what="position id")
                n_pos = pos.size
            if n_pos != T:
                raise ValueError("position_ids has %d entries but input_ids has %d" % (n_pos, T))
        if cu_seqlens is not None:  # offsets: boundary information, read on the host
            cu, d = _check_cu_seqlens(cu_seqlens, T, dpos if dpos is not None else pos)
            return tok, d
        if pos is None and dpos is None:
            return tok, np.array([T], dtype=np.int64)
        cu = np.empty(T + 1, dtype=np.int32)
        n_seg = c_int32()
        err = plm_error()
        if dpos is not None:  # boundaries found on the device: only they come back
            A.sync_stream(dpos)
            with self._lock:
                self._live()
                check(lib.plm_segments_from_positions_on(self._c, _i32(cu), byref(n_seg), _i32(dpos), T, byref(err)),
                      err)
            cu = cu[:n_seg.value + 1]
            first = dpos[torch.as_tensor(cu[:-1].astype(np.int64), device=dpos.device)].cpu().numpy()
        else:
            check(lib.plm_segments_from_positions(_i32(cu), byref(n_seg), _i32(pos), T, byref(err)), err)
            cu = cu[:n_seg.value + 1]
            first = pos[cu[:-1]]
        _check_starts(first, cu)
        return tok, np.diff(cu.astype(np.int64))

    def _sequences(self, input_ids, position_ids, cu_seqlens):
        """(tokens int32 [T], lens int64 [n]): the sequences of an input, laid end to end."""
        V = self.vocab_size
        if A.is_list_of_sequences(input_ids) and len(input_ids) == 1 and (position_ids is not None or
                                                                         cu_seqlens is not None):
            input_ids = input_ids[0]  # [[...]]: a batch of one packed row, as a nested list
        if A.is_list_of_sequences(input_ids):
            if position_ids is not None or cu_seqlens is not None:
                raise ValueError("position_ids and cu_seqlens go with a packed row, not with a list of sequences")
            parts = []
            for i, s in enumerate(input_ids):
                a = A.int_array(s, "input_ids[%d]" % i, 0, V)
                if a.size == 0:
                    raise ValueError("input_ids[%d]: empty sequence" % i)
                parts.append(a)
            lens = np.array([len(a) for a in parts], dtype=np.int64)
            return (np.concatenate(parts) if len(parts) > 1 else parts[0]), lens
        if isinstance(input_ids, (list, tuple)) and len(input_ids) == 0:
            raise ValueError("no sequences")
        tok = A.row(input_ids, "input_ids", lo=0, hi=V)
        T = tok.size
        if T == 0:
            raise ValueError("empty sequence")
        if T > 2**31 - 2:
            raise ValueError("input_ids: a packed row holds at most 2^31 - 2 tokens")
        pos = None
        if position_ids is not None:
            pos = A.row(position_ids, "position_ids", lo=0, what="position id")
            if pos.size != T:
                raise ValueError("position_ids has %d entries but input_ids has %d" % (pos.size, T))
        if cu_seqlens is not None:
            cu, d = _check_cu_seqlens(cu_seqlens, T, pos)
            return tok, d
        if pos is None:
            return tok, np.array([T], dtype=np.int64)
        cu = np.empty(T + 1, dtype=np.int32)
        n_seg = c_int32()
        err = plm_error()
        check(lib.plm_segments_from_positions(_i32(cu), byref(n_seg), _i32(pos), T, byref(err)), err)
        cu = cu[:n_seg.value + 1]
        _check_starts(pos[cu[:-1]], cu)
        return tok, np.diff(cu.astype(np.int64))

    def _budget(self, max_batch_tokens, default):
        return _int_param(max_batch_tokens, "max_batch_tokens", 1, MAX_BUDGET, default)

    # ------------------------------------------------------------ the packed run
    def _run(self, tok, lens, budget, logits=None, logprob=None):
        """Every sequence through packed steps of at most budget tokens, in input order (the CLI's
        loop): logits [T, V] and/or logprob [T] (log p of the next token; not written at each
        sequence's last token) are written in place. Signals (Ctrl-C) are handled between steps.
        tok a torch CUDA tensor: tok, logits and logprob are device memory (PLM_MEM_DEVICE), the
        targets are built on the device, and nothing of size T goes through the host."""
        n = len(lens)
        total = int(lens.sum())
        lens = np.ascontiguousarray(lens, dtype=np.int64)
        base = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        on_dev = A.is_torch(tok)
        mem = MEM_DEVICE if on_dev else MEM_HOST
        tgt = None
        if logprob is not None:
            if on_dev:
                import torch
                tgt = torch.empty(total, dtype=torch.int32, device=tok.device)
                tgt[:-1] = tok[1:]
                tgt[torch.as_tensor(base + lens - 1, device=tok.device)] = -1
            else:
                tgt = np.empty(total, dtype=np.int32)
                tgt[:-1] = tok[1:]
                tgt[base + lens - 1] = -1
        step_cap = min(budget, total)
        max_pieces = min(step_cap, n) + 1
        pieces = (plm_piece * max_pieces)()
        cu = np.zeros(max_pieces + 1, dtype=np.int32)
        sptr = (c_void_p * max_pieces)()
        pool, owner = [], {}  # owner: sequence -> state handle
        cb = None
        if logits is not None and not on_dev:
            # the logits come block by block through the callback, as the CLI receives them (the
            # lm_head then runs the same GEMMs, so the bits are the CLI's); each block is copied in place
            row_bytes = 4 * self.vocab_size
            where = [0]

            def on_block(user, first_row, nrows, block):
                ctypes.memmove(logits.ctypes.data + (where[0] + first_row) * row_bytes, block, nrows * row_bytes)
                return 0
            cb = LOGITS_CB(on_block)
        free = []
        cs, co = c_int32(0), c_int64(0)
        lens_p = lens.ctypes.data_as(POINTER(c_int64))
        err = plm_error()
        if on_dev:  # the inputs are written, and the outputs torch.empty gave are free, on torch's stream
            A.sync_stream(tok)
        with self._lock, _sigint_between_steps() as interrupted:
            self._live()
            try:
                while True:
                    interrupted()
                    np_ = lib.plm_plan_next_aligned(pieces, max_pieces, lens_p, n, byref(cs), byref(co), budget,
                                                    self._align)
                    if np_ == 0:
                        break
                    T = 0
                    for p in range(np_):
                        q = pieces[p].seq
                        T += pieces[p].len
                        cu[p + 1] = T
                        if pieces[p].len == lens[q]:  # a whole sequence in this step: no state
                            sptr[p] = None
                            continue
                        h = owner.get(q)  # a split one: a pooled state from its first piece to its last
                        if h is None:
                            if free:
                                h = free.pop()
                                lib.plm_state_reset(h)
                            else:
                                h = c_void_p()
                                check(lib.plm_state_new_on(byref(h), self._c, byref(err)), err)
                                pool.append(h)
                            owner[q] = h
                        sptr[p] = h
                    first = int(base[pieces[0].seq] + pieces[0].offset)
                    step = plm_step(T, _i32(tok, first), None, np_, _i32(cu), sptr, mem)
                    out = plm_outputs()
                    out.mem = mem
                    if logits is not None and on_dev:  # the same lm_head blocks as the callback's
                        out.logits = _f32(logits, first * self.vocab_size)
                        out.n_rows = T
                    elif logits is not None:
                        where[0] = first
                        out.logits_cb = cb
                        out.n_rows = T
                    if logprob is not None:
                        out.target = _i32(tgt, first)
                        out.logprob = _f32(logprob, first)
                    check(lib.plm_step_run(self._c, byref(step), byref(out), byref(err)), err)
                    for p in range(np_):
                        q = pieces[p].seq
                        if pieces[p].offset + pieces[p].len == lens[q] and q in owner:
                            free.append(owner.pop(q))
            finally:
                for h in pool:
                    lib.plm_state_free(h)

    def forward(self, input_ids, position_ids=None, cu_seqlens=None, max_batch_tokens=None, *, output=None,
                out=None):
        """Logits of every token, float32 [T, vocab], in input order.

        input_ids: a packed row as transformers takes it, [T] or [1, T] (NumPy, list, torch tensor),
          with sequence boundaries from position_ids ([T] or [1, T], a sequence starts wherever the
          position does not continue the previous one: DataCollatorWithFlattening's restart at 0) or
          from cu_seqlens ([n + 1] offsets 0 = c0 < c1 < ... = T, as the collator's cu_seq_lens_q;
          position_ids, when also given, must then restart at 0 at each offset); with neither, the
          row is one sequence. Or a list of sequences (each a list / 1-D array of ids).
        max_batch_tokens: tokens per packed step (default 512, as `packlm forward`: the result is
          then bit for bit the CLI's); a sequence longer than the room left continues from its
          state in the next step.
        output: "numpy" or "torch" (a CPU tensor sharing the array's memory); the default is NumPy
          for host inputs and torch for inputs in device memory.
        out: optional, the array to write the logits into and return: a C-contiguous float32 NumPy
          array [T, vocab] for host inputs, a contiguous float32 torch CUDA tensor on the inputs'
          device for device inputs.

        On a CUDA model, input_ids in device memory (a torch CUDA tensor, or any array with
        __cuda_array_interface__ or a CUDA __dlpack_device__) stay there: the ids are checked on the
        device, used in place when int32 and contiguous (converted on the device otherwise), and the
        logits are written by the library into a tensor that torch allocated on that device
        (torch.empty, or out): the result is a torch CUDA tensor, bitwise equal to the NumPy path's.
        position_ids may be in device memory too (the segment boundaries are found on the device);
        cu_seqlens is read on the host. Stream: torch's current stream is synchronised before the
        library starts, and the library's own stream is synchronised before the call returns.
        A CPU model refuses device inputs (ValueError with the library's message).
        """
        dev = self._on_device(input_ids, position_ids, cu_seqlens)
        if dev is not None:
            torch = A.torch_module("input_ids in device memory")
            tok, lens = self._dev_sequences(dev, position_ids, cu_seqlens)
            shape = (tok.numel(), self.vocab_size)
            if out is None:
                logits = torch.empty(shape, dtype=torch.float32, device=tok.device)
            else:
                logits = self._out_tensor(out, shape, tok)
        else:
            tok, lens = self._sequences(input_ids, position_ids, cu_seqlens)
            shape = (tok.size, self.vocab_size)
            logits = np.empty(shape, dtype=np.float32) if out is None else self._out_array(out, shape)
        budget = self._budget(max_batch_tokens, FORWARD_BUDGET)
        self._run(tok, lens, budget, logits=logits)
        return A.dev_output(logits, output) if dev is not None else A.output(logits, output)

    @staticmethod
    def _out_array(out, shape):
        if A.cuda_tensor(out) is not None:
            raise ValueError("out is in device memory but input_ids is a host array: pass both on the host or both "
                             "on the device")
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape or \
                not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writable C-contiguous float32 NumPy array of shape %s, got %s" % (
                shape, "%s %s" % (out.dtype, out.shape) if isinstance(out, np.ndarray) else type(out).__name__))
        return out

    @staticmethod
    def _out_tensor(out, shape, tok):
        import torch
        t = A.cuda_tensor(out)
        if t is None:
            raise ValueError("out must be a float32 torch CUDA tensor when input_ids is in device memory, got %s"
                             % type(out).__name__)
        if t.device != tok.device:
            raise ValueError("out is on %s but input_ids on %s" % (A.device_name(t), A.device_name(tok)))
        if t.dtype != torch.float32:
            raise ValueError("out has dtype %s; float32 expected" % t.dtype)
        if tuple(t.shape) != shape or not t.is_contiguous():
            raise ValueError("out must be a contiguous tensor of shape %s, got %s%s" % (
                shape, tuple(t.shape), "" if t.is_contiguous() else " (not contiguous)"))
        return t

    __call__ = forward

    def score(self, input_ids, position_ids=None, cu_seqlens=None, max_batch_tokens=None, *, per_token=False,
              output=None) -> ScoreResult:
        """Log-probability of every sequence: for each sequence the sum over tokens 1..len-1 of
        log p(token | prefix), the number of such tokens (len - 1) and the perplexity, as
        `packlm score` prints them; with per_token=True also each token's log-probability.
        The input forms are forward's. The logits of a whole step are never held: the lm_head runs
        block by block keeping only what the log-probabilities need. Ctrl-C stops it between steps
        (KeyboardInterrupt; every state is freed).
        Inputs in device memory (see forward) are scored on the device: the per-token
        log-probabilities are written into a torch CUDA tensor (bitwise the NumPy path's), the sums
        per sequence are made there in float64, and every field comes back as a torch CUDA tensor
        (output="numpy": NumPy copies)."""
        dev = self._on_device(input_ids, position_ids, cu_seqlens)
        if dev is not None:
            return self._dev_score(dev, position_ids, cu_seqlens, max_batch_tokens, per_token, output)
        tok, lens = self._sequences(input_ids, position_ids, cu_seqlens)
        budget = self._budget(max_batch_tokens, SCORE_BUDGET)
        lp = np.zeros(tok.size, dtype=np.float32)
        self._run(tok, lens, budget, logprob=lp)
        ends = np.cumsum(lens)
        starts = ends - lens
        sums = np.array([float(np.sum(lp[a:b - 1], dtype=np.float64)) for a, b in zip(starts, ends)])
        n = lens - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            ppl = np.where(n > 0, np.exp(-sums / np.maximum(n, 1)), np.nan)
        per = [A.output(lp[a:b - 1].copy(), output) for a, b in zip(starts, ends)] if per_token else None
        return ScoreResult(A.output(sums, output), A.output(n.astype(np.int64), output), A.output(ppl, output), per)

    def _dev_score(self, dev, position_ids, cu_seqlens, max_batch_tokens, per_token, output):
        torch = A.torch_module("input_ids in device memory")
        tok, lens = self._dev_sequences(dev, position_ids, cu_seqlens)
        budget = self._budget(max_batch_tokens, SCORE_BUDGET)
        lp = torch.zeros(tok.numel(), dtype=torch.float32, device=tok.device)
        self._run(tok, lens, budget, logprob=lp)
        ends = np.cumsum(lens)
        starts = ends - lens
        # per sequence, the sum of lp[a:b-1] (lp[b-1] is 0: no target): differences of a float64 running sum
        cs = torch.cumsum(lp.to(torch.float64), 0)
        hi = cs[torch.as_tensor(ends - 1, device=tok.device)]
        before = torch.as_tensor(np.maximum(starts - 1, 0), device=tok.device)
        lo = torch.where(torch.as_tensor(starts > 0, device=tok.device), cs[before], torch.zeros_like(hi))
        sums = hi - lo
        n = torch.as_tensor(lens - 1, dtype=torch.int64, device=tok.device)
        ppl = torch.where(n > 0, torch.exp(-sums / torch.clamp(n, min=1)), torch.full_like(sums, float("nan")))
        per = [A.dev_output(lp[a:b - 1], output) for a, b in zip(starts, ends)] if per_token else None
        return ScoreResult(A.dev_output(sums, output), A.dev_output(n, output), A.dev_output(ppl, output), per)

    # ------------------------------------------------------------ states
    def new_state(self) -> "State":
        """A fresh sequence state on the model's device (plm_state_new_on)."""
        with self._lock:
            self._live()
            h = c_void_p()
            err = plm_error()
            check(lib.plm_state_new_on(byref(h), self._c, byref(err)), err)
            return State(self, h)

    def step(self, tokens, states: Sequence["State"], *, logits="last", output=None):
        """One packed step: tokens[i] (a sequence of ids, or one id) continues states[i]; every state
        advances by its tokens. With several states, tokens may also be one 1-D array of one id per
        state (a decoding step). logits: "last" (default) -> float32 [n, vocab], each segment's last
        token; "all" -> [sum of lengths, vocab]; "argmax" -> int32 [n], the greedy next token of each
        segment (computed where the step runs); None -> nothing is returned. The step is validated
        before anything runs: on error no state has changed.
        Tokens in device memory (torch CUDA tensors, all of them on the model's GPU) stay there, and
        the result is a torch CUDA tensor written by the library (output="numpy": a NumPy copy): e.g.
        feed "argmax" of one step as the tokens of the next without the host."""
        if isinstance(states, State):
            states = [states]
        if not isinstance(states, (list, tuple)):
            raise TypeError("states must be a State or a list of States")
        n = len(states)
        one_each = False
        if n == 1 and not A.is_list_of_sequences(tokens):
            tokens = [tokens]  # one state: tokens is its sequence (or its one id)
        elif n > 1 and not isinstance(tokens, (list, tuple)) and getattr(tokens, "ndim", None) == 1:
            one_each = True  # one id per state
        if not one_each and not isinstance(tokens, (list, tuple)):
            raise TypeError("tokens must be a list with one sequence (or one id) per state")
        if not one_each and len(tokens) != n:
            raise ValueError("%d token sequences for %d states" % (len(tokens), n))
        if n == 0:
            raise ValueError("step has no segments")
        if logits not in ("last", "all", "argmax", None):
            raise ValueError("logits must be 'last', 'all', 'argmax' or None, got %r" % (logits,))
        V = self.vocab_size
        seen = {}
        for i, s in enumerate(states):
            if not isinstance(s, State):
                raise TypeError("states[%d] is not a packlm.State" % i)
            if s._model is not self:
                raise ValueError("states[%d] belongs to another model" % i)
            if not s._h:
                raise ValueError("states[%d] is closed" % i)
            if id(s) in seen:
                raise ValueError("states %d and %d are the same State: a step holds each sequence once"
                                 % (seen[id(s)], i))
            seen[id(s)] = i
        dev = A.cuda_tensor(tokens) if one_each else None
        parts_dev = None if one_each else [A.cuda_tensor(t) for t in tokens]
        if parts_dev is not None and any(p is not None for p in parts_dev):
            j = next(i for i, p in enumerate(parts_dev) if p is not None)
            for i, p in enumerate(parts_dev):
                if p is None:
                    raise ValueError("tokens[%d] is a host array but tokens[%d] is in device memory: a step's tokens "
                                     "are all on the host or all on one device" % (i, j))
                if p.device != parts_dev[j].device:
                    raise ValueError("tokens[%d] is on %s but tokens[%d] on %s" % (i, A.device_name(p), j,
                                                                                 A.device_name(parts_dev[j])))
            dev = parts_dev
        if dev is not None:
            tok, cu = self._dev_step_tokens(dev, one_each, n)
        elif one_each:
            tok = A.int_array(tokens, "tokens", 0, V)
            if tok.size != n:
                raise ValueError("%d token ids for %d states" % (tok.size, n))
            cu = np.arange(n + 1, dtype=np.int32)
        else:
            parts = []
            for i, t in enumerate(tokens):
                if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                    t = [t]
                a = A.int_array(t, "tokens[%d]" % i, 0, V)
                if a.size == 0:
                    raise ValueError("tokens[%d]: empty sequence" % i)
                parts.append(a)
            tok = np.ascontiguousarray(np.concatenate(parts), dtype=np.int32)
            cu = np.zeros(n + 1, dtype=np.int32)
            cu[1:] = np.cumsum([a.size for a in parts])
        T = int(cu[-1])
        if T > MAX_BUDGET:
            raise ValueError("a step holds at most %d tokens, got %d" % (MAX_BUDGET, T))
        sptr = (c_void_p * n)(*[s._h for s in states])
        out = plm_outputs()
        mem = MEM_DEVICE if dev is not None else MEM_HOST
        out.mem = mem
        if dev is not None:
            import torch

            def empty(shape, dtype):
                return torch.empty(shape, dtype=getattr(torch, dtype), device=tok.device)
        else:
            def empty(shape, dtype):
                return np.empty(shape, dtype=dtype)
        res = None
        rows = np.ascontiguousarray(cu[1:] - 1)  # host: the layout stays on the host
        if logits == "all":
            res = empty((T, V), "float32")
            out.logits, out.n_rows = _f32(res), T
        elif logits == "last":
            res = empty((n, V), "float32")
            out.logits, out.rows, out.n_rows = _f32(res), _i32(rows), n
        elif logits == "argmax":
            res = empty(n, "int32")
            out.amax_rows, out.n_amax, out.argmax = _i32(rows), n, _i32(res)
        step = plm_step(T, _i32(tok), None, n, _i32(cu), sptr, mem)
        err = plm_error()
        if dev is not None:
            A.sync_stream(tok)
        with self._lock:
            self._live()
            check(lib.plm_step_run(self._c, byref(step), byref(out), byref(err)), err)
        if res is None:
            return None
        return A.dev_output(res, output) if dev is not None else A.output(res, output)

    def _dev_step_tokens(self, dev, one_each, n):
        """The tokens of a step in device memory: (int32 CUDA tensor [T], host cu [n + 1]). Checked on
        the device with the host path's messages (tokens[i][j] for the j-th id of state i)."""
        torch = A.torch_module("tokens in device memory")
        V = self.vocab_size
        if one_each:
            tok = A.dev_int_array(dev, "tokens", 0, V)
            if tok.numel() != n:
                raise ValueError("%d token ids for %d states" % (tok.numel(), n))
            return tok, np.arange(n + 1, dtype=np.int32)
        parts = []
        for i, t in enumerate(dev):
            if t.ndim == 0:
                t = t.reshape(1)
            a = A.dev_int_array(t, "tokens[%d]" % i, 0, V)
            if a.numel() == 0:
                raise ValueError("tokens[%d]: empty sequence" % i)
            parts.append(a)
        cu = np.zeros(n + 1, dtype=np.int32)
        cu[1:] = np.cumsum([a.numel() for a in parts])
        return (torch.cat(parts) if n > 1 else parts[0]), cu

    # ------------------------------------------------------------ generation
    def generate(self, prompts, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, *, ignore_eos: bool = False, max_batch_tokens=None,
                 max_seqs=None, output="numpy"):
        """Continuations of prompts by continuous batching (plm_generator): prompts is a list of
        sequences of ids (or of strings, tokenized with the checkpoint's tokenizer.json), or one
        sequence. Returns, per prompt, the generated ids (int32 arrays, an end-of-sequence id
        included when one stopped it), or the decoded text for string prompts; one result for one
        prompt. temperature <= 0 is greedy; otherwise top_k (<= 0: no cut) and top_p (>= 1: no cut)
        apply, and sequence i draws from the random stream (seed, i): batching never changes what
        a sequence gets. max_batch_tokens / max_seqs cap the tokens per step and live sequences."""
        single = False
        many = isinstance(prompts, (list, tuple)) and len(prompts) > 0 and (
            A.is_list_of_sequences(prompts) or all(isinstance(p, str) for p in prompts))
        if not many and not (isinstance(prompts, (list, tuple)) and len(prompts) == 0):
            prompts, single = [prompts], True
        if len(prompts) == 0:
            raise ValueError("prompts: no sequences")
        texts = [isinstance(p, str) for p in prompts]
        V = self.vocab_size
        ids = []
        for i, p in enumerate(prompts):
            a = np.asarray(self.tokenizer.encode(p), dtype=np.int32) if texts[i] else p
            a = A.int_array(a, "prompts[%d]" % i, 0, V)
            if a.size == 0:
                raise ValueError("prompts[%d]: empty sequence" % i)
            ids.append(np.ascontiguousarray(a, dtype=np.int32))
        mnt = _int_param(max_new_tokens, "max_new_tokens", 0, 2**31 - 1)
        sp = plm_sampling(_float_param(temperature, "temperature"), _int_param(top_k, "top_k", -2**31, 2**31 - 1),
                          _float_param(top_p, "top_p"), _int_param(seed, "seed", 0, 2**64 - 1))
        gp = plm_generator_params(self._budget(max_batch_tokens, 0) if max_batch_tokens is not None else 0,
                                  _int_param(max_seqs, "max_seqs", 1, 2**31 - 1, 0))
        err = plm_error()
        g = c_void_p()
        results = []
        with self._lock:
            self._live()
            check(lib.plm_generator_new(byref(g), self._m, self._c, byref(gp), byref(err)), err)
            try:
                rid = c_int64()
                for i, a in enumerate(ids):
                    r = plm_request(_i32(a), a.size, mnt, sp, -1, 1 if ignore_eos else 0)
                    check(lib.plm_generator_add(g, byref(rid), byref(r), byref(err)), err)
                while lib.plm_generator_pending(g) > 0:
                    check(lib.plm_generator_step(g, None, byref(err)), err)
                for i in range(len(ids)):
                    p, n = I32P(), c_int64()
                    lib.plm_generator_result(g, i, byref(p), byref(n))
                    out = np.ctypeslib.as_array(p, shape=(n.value,)).copy() if n.value else np.zeros(0, np.int32)
                    results.append(self.tokenizer.decode(out) if texts[i] else A.output(out, output))
            finally:
                lib.plm_generator_free(g)
        return results[0] if single else results


class _Owned:
    """A C handle (self._h) freed once: by close(), or when the object is collected."""

    _h = None

    @staticmethod
    def _release(h):
        raise NotImplementedError

    def _free(self):
        if self._h:
            self._release(self._h)
            self._h = None

    def close(self):
        self._free()

    def __del__(self):
        try:
            self._free()
        except Exception:
            pass


class Snapshot(_Owned):
    """A state's conv tails, delta-rule states and length at one moment (State.snapshot()); restores
    into the state it was taken from while that state still holds those tokens, any number of
    times."""

    @staticmethod
    def _release(h):
        lib.plm_snapshot_free(h)

    def __init__(self, state: "State", h):
        self._model, self._h = state._model, h
        state._model._children.add(self)

    @property
    def length(self) -> int:
        if not self._h:
            raise ValueError("the snapshot is closed")
        return lib.plm_snapshot_length(self._h)


class State(_Owned):
    """One sequence's state (plm_state): conv tails and delta-rule states of the linear layers, keys
    and values of the attention layers, and its length. Made by Model.new_state(); advanced by
    Model.step. fork() copies it, snapshot()/restore() roll it back."""

    @staticmethod
    def _release(h):
        lib.plm_state_free(h)

    def __init__(self, model: Model, h):
        self._model, self._h = model, h
        model._children.add(self)

    def _handle(self):
        if not self._h:
            raise ValueError("the state is closed")
        return self._h

    @property
    def model(self) -> Model:
        return self._model

    @property
    def length(self) -> int:
        """Tokens the state holds."""
        return lib.plm_state_length(self._handle())

    def __len__(self):
        return self.length

    @property
    def nbytes(self) -> int:
        return lib.plm_state_bytes(self._handle())

    def reset(self):
        """Back to an empty sequence."""
        lib.plm_state_reset(self._handle())

    def fork(self) -> "State":
        """An exact copy (plm_state_copy) that continues independently."""
        h = self._handle()
        s = self._model.new_state()
        err = plm_error()
        with self._model._lock:
            check(lib.plm_state_copy(s._h, h, byref(err)), err)
        return s

    def copy_from(self, other: "State"):
        """This state becomes an exact copy of other (same model)."""
        if not isinstance(other, State):
            raise TypeError("copy_from expects a packlm.State")
        if other._model is not self._model:
            raise ValueError("the state belongs to another model")
        err = plm_error()
        with self._model._lock:
            check(lib.plm_state_copy(self._handle(), other._handle(), byref(err)), err)

    def snapshot(self) -> Snapshot:
        h = c_void_p()
        err = plm_error()
        with self._model._lock:
            check(lib.plm_state_snapshot(byref(h), self._handle(), byref(err)), err)
        return Snapshot(self, h)

    def restore(self, snap: Snapshot):
        """Rolls the state back to snap (ValueError, state untouched, when snap does not apply)."""
        if not isinstance(snap, Snapshot):
            raise TypeError("restore expects a packlm.Snapshot")
        if snap._model is not self._model:
            raise ValueError("the snapshot belongs to another model")
        if not snap._h:
            raise ValueError("the snapshot is closed")
        err = plm_error()
        with self._model._lock:
            check(lib.plm_state_restore(self._handle(), snap._h, byref(err)), err)


    def __repr__(self):
        return "packlm.State(length=%s)" % (self.length if self._h else "closed")
