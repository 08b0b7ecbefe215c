"""Turning caller arrays (NumPy, lists, torch tensors, anything with the array protocol or DLPack)
into validated int32 NumPy arrays, and results back into torch tensors on request.

Every check the C library would make on a caller's numbers is made here first, with messages that
name the argument and the index, so that nothing malformed reaches C."""
from __future__ import annotations

import numbers

import numpy as np

INT32_MAX = 2**31 - 1


def is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _is_sequence_like(x) -> bool:
    return isinstance(x, (list, tuple)) or isinstance(x, np.ndarray) or is_torch(x) or \
        hasattr(x, "__array_interface__") or hasattr(x, "__array__") or hasattr(x, "__dlpack__")


def to_numpy(x, name: str) -> np.ndarray:
    """A NumPy view of x without a copy where possible: NumPy arrays as they are, torch tensors on
    the CPU through the array protocol (CUDA tensors are copied to the host: token ids are small),
    other objects through __array__ / __array_interface__ or DLPack, lists through np.asarray."""
    if isinstance(x, np.ndarray):
        return x
    if is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.is_conj() if hasattr(t, "is_conj") else False:
            t = t.resolve_conj()
        return t.numpy()
    if isinstance(x, (str, bytes)):
        raise TypeError("%s must be integer token ids, not %s" % (name, type(x).__name__))
    if isinstance(x, (list, tuple)):
        for i, e in enumerate(x):  # what np.asarray would turn into strings or objects
            if isinstance(e, bool) or not isinstance(e, (numbers.Integral, float, np.floating)):
                if isinstance(e, (list, tuple, np.ndarray)) or is_torch(e):
                    break  # nested: the shape check names it
                raise ValueError("%s[%d] is not an integer" % (name, i))
    if not isinstance(x, (list, tuple)) and hasattr(x, "__dlpack__") and \
            not hasattr(x, "__array__") and not hasattr(x, "__array_interface__"):
        try:
            return np.from_dlpack(x)
        except Exception as e:  # a device DLPack tensor NumPy cannot see
            raise TypeError("%s: cannot read this array through DLPack (%s)" % (name, e)) from None
    try:
        a = np.asarray(x)
    except (OverflowError, ValueError, TypeError) as e:
        raise ValueError("%s is not an array of integers (%s)" % (name, e)) from None
    return a


def int_array(x, name: str, lo: int = 0, hi: int | None = None, what: str = "token id",
              ndim_ok=(1,)) -> np.ndarray:
    """x as a C-contiguous int32 array whose values lie in [lo, hi) (hi None: [lo, 2^31)). The
    array is used in place when it already is int32 and contiguous."""
    a = to_numpy(x, name)
    if a.ndim not in ndim_ok:
        raise ValueError("%s must have %s dimension(s), got shape %s" % (name, " or ".join(map(str, ndim_ok)),
                                                                       tuple(a.shape)))
    if a.dtype == np.int32:
        v = a
    elif a.dtype.kind in "iu":
        v = a
    elif a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.floor(a))
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError("%s[%d] = %r is not a %s (a non-negative integer)" % (name, i, a.ravel()[i].item(), what))
        v = a
    elif a.dtype.kind == "O" or a.dtype.kind in "USV":
        flat = a.ravel()
        for i, e in enumerate(flat):
            if isinstance(e, (bool, np.bool_)) or not isinstance(e, numbers.Integral):
                raise ValueError("%s[%d] is not an integer" % (name, i))
        try:
            v = np.array([int(e) for e in flat], dtype=object).reshape(a.shape)
        except Exception:
            raise ValueError("%s is not an array of integers" % name) from None
    else:
        raise ValueError("%s has dtype %s; integers expected" % (name, a.dtype))
    flat = v.ravel()
    if flat.size:
        if v.dtype == object:
            lo_bad = [i for i, e in enumerate(flat) if e < lo]
            hi_bad = [i for i, e in enumerate(flat) if hi is not None and e >= hi or e > INT32_MAX]
            neg = lo_bad[0] if lo_bad else None
            big = hi_bad[0] if hi_bad else None
        else:
            m = flat < lo
            neg = int(np.flatnonzero(m)[0]) if m.any() else None
            top = INT32_MAX + 1 if hi is None else hi
            m = flat >= top
            big = int(np.flatnonzero(m)[0]) if m.any() else None
        first = min(i for i in (neg, big) if i is not None) if (neg is not None or big is not None) else None
        if first is not None:
            val = flat[first]
            val = int(val) if not isinstance(val, float) else val
            if neg == first and lo == 0 and hi is None:
                raise ValueError("%s[%d] = %d is negative" % (name, first, val))
            if hi is not None:
                raise ValueError("%s[%d] = %d is outside the vocabulary [0, %d)" % (name, first, val, hi)
                                 if what == "token id" else
                                 "%s[%d] = %d is outside [%d, %d)" % (name, first, val, lo, hi))
            raise ValueError("%s[%d] = %d is outside [%d, %d]" % (name, first, val, lo, INT32_MAX))
    if v.dtype == np.int32 and v.flags.c_contiguous:
        return v
    return np.ascontiguousarray(v.astype(np.int64) if v.dtype == object else v, dtype=np.int32)


def row(x, name: str, **kw) -> np.ndarray:
    """A packed row: [T] or [1, T] (transformers' batch of one), as a 1-D int32 array."""
    a = to_numpy(x, name)
    if a.ndim == 2:
        if a.shape[0] != 1:
            raise ValueError("%s has shape %s: a packed row is [T] or [1, T]; pass several rows as a list of "
                             "sequences" % (name, tuple(a.shape)))
        a = a[0]
    return int_array(a, name, **kw)


def is_list_of_sequences(x) -> bool:
    """True for a list/tuple whose elements are themselves sequences (not scalars)."""
    if not isinstance(x, (list, tuple)) or len(x) == 0:
        return False
    e = x[0]
    if isinstance(e, (str, bytes)):
        return False
    if isinstance(e, (np.ndarray,)) or is_torch(e):
        return getattr(e, "ndim", 0) >= 1
    return _is_sequence_like(e)


def output(a: np.ndarray, kind: str):
    """NumPy (default) or torch (output="torch", sharing the NumPy array's memory)."""
    if kind in (None, "numpy", "np"):
        return a
    if kind in ("torch", "pt"):
        try:
            import torch
        except ImportError:
            raise ImportError("output='torch' needs PyTorch, which is not installed") from None
        return torch.from_numpy(a)
    raise ValueError("output must be 'numpy' or 'torch', got %r" % (kind,))
