"""Turning caller arrays (NumPy, lists, torch tensors, anything with the array protocol or DLPack)
into validated int32 NumPy arrays, and results back into torch tensors on request; and arrays in
CUDA memory (torch CUDA tensors, or objects with __cuda_array_interface__ or a CUDA
__dlpack_device__, seen through torch without a copy) into validated int32 torch tensors that stay
on their device.

Every check the C library would make on a caller's numbers is made here first, with messages that
name the argument and the index, so that nothing malformed reaches C."""
from __future__ import annotations

import numbers

import numpy as np

INT32_MAX = 2**31 - 1


def _range_error(name, first, val, lo, hi, what, below):
    """the ValueError for the first out-of-range entry, worded as the C library words it"""
    if below and lo == 0 and hi is None:
        return ValueError("%s[%d] = %d is negative" % (name, first, val))
    if hi is not None:
        return ValueError("%s[%d] = %d is outside the vocabulary [0, %d)" % (name, first, val, hi)
                          if what == "token id" else
                          "%s[%d] = %d is outside [%d, %d)" % (name, first, val, lo, hi))
    return ValueError("%s[%d] = %d is outside [%d, %d]" % (name, first, val, lo, INT32_MAX))


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
            raise _range_error(name, first, val, lo, hi, what, neg == first)
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


# ---------------------------------------------------------------- arrays in device memory
_DL_CUDA = (2, 13)  # DLPack's kDLCUDA and kDLCUDAManaged


def torch_module(why: str):
    try:
        import torch
    except ImportError:
        raise ImportError("%s needs PyTorch, which is not installed" % why) from None
    return torch


def cuda_tensor(x):
    """x as a torch tensor when it lives in CUDA memory, else None: a torch CUDA tensor as it is, an
    object with a CUDA __dlpack_device__ through torch.from_dlpack, one with __cuda_array_interface__
    through torch.as_tensor (both share the memory: no copy)."""
    if is_torch(x):
        return x if getattr(x, "is_cuda", False) else None
    if isinstance(x, (np.ndarray, list, tuple, str, bytes, numbers.Number)) or x is None:
        return None
    dl = None
    if hasattr(x, "__dlpack_device__"):
        try:
            dl = x.__dlpack_device__()[0]
        except Exception:
            dl = None
    if dl in _DL_CUDA and hasattr(x, "__dlpack__"):
        return torch_module("an array in CUDA memory").from_dlpack(x)
    if hasattr(x, "__cuda_array_interface__"):
        return torch_module("an array in CUDA memory").as_tensor(x)
    return None


def device_name(t) -> str:
    return "cuda:%d" % t.device.index if t.device.index is not None else str(t.device)


def _int_dtypes(torch):
    return (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def dev_int_array(t, name: str, lo: int = 0, hi: int | None = None, what: str = "token id", ndim_ok=(1,)):
    """int_array for a torch CUDA tensor: the same checks and messages, computed on the device (a few
    scalars come back: whether anything is wrong, and then the first bad index and its value). Returns
    a contiguous 1-D int32 tensor on the same device: t itself (no copy) when it already is int32 and
    contiguous, else a converted copy made on the device."""
    import torch
    if t.ndim not in ndim_ok:
        raise ValueError("%s must have %s dimension(s), got shape %s" % (name, " or ".join(map(str, ndim_ok)),
                                                                       tuple(t.shape)))
    if t.dtype not in _int_dtypes(torch):
        raise ValueError("%s has dtype %s; integers expected (int64, int32, int16, int8 or uint8: an array in "
                         "device memory is not converted from other types)" % (name, t.dtype))
    flat = t.reshape(-1)
    if flat.numel():
        wide = flat if flat.dtype == torch.int64 else flat.to(torch.int64)
        top = INT32_MAX + 1 if hi is None else hi
        bad = (wide < lo) | (wide >= top)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0])
            val = int(wide[first])
            raise _range_error(name, first, val, lo, hi, what, val < lo)
    if flat.dtype != torch.int32:
        flat = flat.to(torch.int32)
    return flat.contiguous()


def dev_row(t, name: str, **kw):
    """row() for a torch CUDA tensor: [T] or [1, T] as a 1-D int32 tensor on its device."""
    if t.ndim == 2:
        if t.shape[0] != 1:
            raise ValueError("%s has shape %s: a packed row is [T] or [1, T]; pass several rows as a list of "
                             "sequences" % (name, tuple(t.shape)))
        t = t[0]
    return dev_int_array(t, name, **kw)


def dev_output(t, kind):
    """A result computed in device memory: the torch tensor itself (None, "torch", "pt"), or a NumPy
    copy on request ("numpy", "np": the one copy through the host, asked for)."""
    if kind in (None, "torch", "pt"):
        return t
    if kind in ("numpy", "np"):
        return t.cpu().numpy()
    raise ValueError("output must be 'numpy' or 'torch', got %r" % (kind,))


def sync_stream(t):
    """Waits for the work queued on torch's current stream of t's device: the library reads its device
    inputs on its own stream, and the outputs torch.empty gave may still be in use there."""
    import torch
    torch.cuda.current_stream(t.device).synchronize()
