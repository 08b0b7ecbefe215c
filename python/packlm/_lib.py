"""Loading libpacklm.so and declaring its C API for ctypes (include/packlm.h, mirrored here).

The library is looked for, in order:
  1. the path in the environment variable PACKLM_LIB (a file, or a folder holding libpacklm.so);
  2. a copy inside the package (packlm/libpacklm.so, placed there by `pip install ./python` when the
     repository's build/libpacklm.so exists at install time);
  3. the repository's build/ folder, when the package is imported from the source tree (python/);
  4. the dynamic loader's search path (LD_LIBRARY_PATH, ldconfig) under the name libpacklm.so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint64, c_void_p)

__all__ = ["lib", "lib_path", "check", "PLMError", "libc_free"]

# status codes (plm_status)
OK, ERR_IO, ERR_FORMAT, ERR_CONFIG, ERR_INPUT, ERR_STATE, ERR_NOMEM, ERR_UNSUPPORTED, ERR_INTERNAL = range(9)
# where a step's arrays are (plm_mem)
MEM_HOST, MEM_DEVICE = 0, 1


class plm_error(Structure):
    _fields_ = [("code", c_int), ("msg", c_char * 512)]


class plm_model_info(Structure):
    _fields_ = [("vocab_size", c_int32), ("hidden_size", c_int32), ("n_layers", c_int32),
                ("n_linear_layers", c_int32), ("n_attention_layers", c_int32), ("is_moe", c_int32),
                ("n_experts", c_int32), ("n_experts_per_tok", c_int32), ("eos_ids", c_int32 * 8),
                ("n_eos", c_int32), ("n_params", c_int64), ("n_active_params", c_int64),
                ("file_bytes", c_size_t), ("n_linear_proj_params", c_int64)]


class plm_ctx_params(Structure):
    _fields_ = [("n_threads", c_int32), ("use_reference", c_int32), ("device", c_char_p),
                ("device_mem_limit", c_size_t), ("bf16_single_pass", c_int32), ("batch_invariant", c_int32),
                ("weights", c_int32), ("int8_keep_head", c_int32), ("int8_linear", c_int32),
                ("int8_act_bits", c_int32)]


class plm_step(Structure):
    _fields_ = [("n_tokens", c_int32), ("tokens", POINTER(c_int32)), ("pos", POINTER(c_int32)),
                ("n_seg", c_int32), ("cu", POINTER(c_int32)), ("state", POINTER(c_void_p)), ("mem", c_int32)]


LOGITS_CB = ctypes.CFUNCTYPE(c_int, c_void_p, c_int32, c_int32, POINTER(c_float))


class plm_outputs(Structure):
    _fields_ = [("logits", POINTER(c_float)), ("rows", POINTER(c_int32)), ("n_rows", c_int32),
                ("logits_cb", LOGITS_CB), ("cb_user", c_void_p),
                ("target", POINTER(c_int32)), ("logprob", POINTER(c_float)),
                ("hidden", POINTER(c_float)),
                ("amax_rows", POINTER(c_int32)), ("n_amax", c_int32), ("argmax", POINTER(c_int32)),
                ("mem", c_int32)]


class plm_piece(Structure):
    _fields_ = [("seq", c_int32), ("offset", c_int64), ("len", c_int64)]


class plm_sampling(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("seed", c_uint64)]


class plm_request(Structure):
    _fields_ = [("prompt", POINTER(c_int32)), ("n_prompt", c_int64), ("max_new_tokens", c_int32),
                ("sampling", plm_sampling), ("stream", c_int64), ("ignore_eos", c_int32), ("logprobs", c_int32),
                ("top_logprobs", c_int32)]


class plm_generator_params(Structure):
    _fields_ = [("max_batch_tokens", c_int64), ("max_seqs", c_int32)]


class plm_gen_step_info(Structure):
    _fields_ = [("n_tokens", c_int32), ("prompt_tokens", c_int32), ("decode_tokens", c_int32),
                ("new_tokens", c_int32), ("finished", c_int32)]


class PLMError(Exception):
    """Mixin carried by every exception raised from a library status: .code is the plm_status
    value, .status its name (e.g. "PLM_ERR_INPUT")."""


_EXC = {ERR_IO: OSError, ERR_FORMAT: ValueError, ERR_CONFIG: ValueError, ERR_INPUT: ValueError,
        ERR_STATE: ValueError, ERR_NOMEM: MemoryError, ERR_UNSUPPORTED: NotImplementedError,
        ERR_INTERNAL: RuntimeError}
_NAMES = {OK: "PLM_OK", ERR_IO: "PLM_ERR_IO", ERR_FORMAT: "PLM_ERR_FORMAT", ERR_CONFIG: "PLM_ERR_CONFIG",
          ERR_INPUT: "PLM_ERR_INPUT", ERR_STATE: "PLM_ERR_STATE", ERR_NOMEM: "PLM_ERR_NOMEM",
          ERR_UNSUPPORTED: "PLM_ERR_UNSUPPORTED", ERR_INTERNAL: "PLM_ERR_INTERNAL"}
_classes: dict = {}


def error_class(code: int) -> type:
    """The exception class raised for a status: a subclass of both PLMError and the builtin
    (ValueError, OSError, MemoryError, NotImplementedError, RuntimeError)."""
    base = _EXC.get(code, RuntimeError)
    if code not in _classes:
        name = "PackLM" + _NAMES.get(code, "PLM_ERR").replace("PLM_ERR_", "").title() + "Error"
        _classes[code] = type(name, (PLMError, base), {"__module__": "packlm"})
    return _classes[code]


def raise_status(code: int, msg: str):
    exc = error_class(code)(msg)
    exc.code = code
    exc.status = _NAMES.get(code, str(code))
    raise exc


def check(status: int, err: plm_error) -> None:
    if status != OK:
        msg = err.msg.decode("utf-8", "replace") or _NAMES.get(status, "error %d" % status)
        raise_status(status, msg)


def _candidates():
    env = os.environ.get("PACKLM_LIB")
    if env:
        yield os.path.join(env, "libpacklm.so") if os.path.isdir(env) else env
        return  # an explicit choice is not second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libpacklm.so")
    yield os.path.normpath(os.path.join(here, "..", "..", "build", "libpacklm.so"))
    found = ctypes.util.find_library("packlm")
    yield found or "libpacklm.so"


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("packlm: cannot load libpacklm.so (build it with `make` in the repository, then set "
                      "PACKLM_LIB=/path/to/build/libpacklm.so); tried: " + "; ".join(tried))


lib, lib_path = _load()
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc_free = _libc.free
libc_free.argtypes = [c_void_p]
libc_free.restype = None

P = c_void_p
E = POINTER(plm_error)
I32P = POINTER(c_int32)


def _decl(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_decl("plm_status_name", c_char_p, c_int)
_decl("plm_model_open", c_int, POINTER(P), c_char_p, E)
_decl("plm_model_free", None, P)
_decl("plm_model_get_info", POINTER(plm_model_info), P)
_decl("plm_state_new", c_int, POINTER(P), P, E)
_decl("plm_state_new_on", c_int, POINTER(P), P, E)
_decl("plm_state_free", None, P)
_decl("plm_state_reset", None, P)
_decl("plm_state_length", c_int64, P)
_decl("plm_state_copy", c_int, P, P, E)
_decl("plm_state_bytes", c_size_t, P)
_decl("plm_state_bytes_at", c_size_t, P, c_int64)
_decl("plm_state_snapshot", c_int, POINTER(P), P, E)
_decl("plm_state_restore", c_int, P, P, E)
_decl("plm_snapshot_length", c_int64, P)
_decl("plm_snapshot_free", None, P)
_decl("plm_ctx_default_params", plm_ctx_params)
_decl("plm_ctx_params_weights", c_int, POINTER(plm_ctx_params), c_char_p, E)
_decl("plm_ctx_new", c_int, POINTER(P), P, POINTER(plm_ctx_params), E)
_decl("plm_ctx_free", None, P)
_decl("plm_ctx_device", c_char_p, P)
_decl("plm_ctx_device_bytes", c_size_t, P)
_decl("plm_step_run", c_int, P, POINTER(plm_step), POINTER(plm_outputs), E)
_decl("plm_segments_from_positions", c_int, I32P, I32P, I32P, c_int32, E)
_decl("plm_segments_from_positions_on", c_int, P, I32P, I32P, I32P, c_int32, E)
_decl("plm_plan_next", c_int32, POINTER(plm_piece), c_int32, POINTER(c_int64), c_int32, POINTER(c_int32),
      POINTER(c_int64), c_int64)
_decl("plm_plan_next_aligned", c_int32, POINTER(plm_piece), c_int32, POINTER(c_int64), c_int32, POINTER(c_int32),
      POINTER(c_int64), c_int64, c_int64)
_decl("plm_generator_new", c_int, POINTER(P), P, P, POINTER(plm_generator_params), E)
_decl("plm_generator_free", None, P)
_decl("plm_generator_add", c_int, P, POINTER(c_int64), POINTER(plm_request), E)
_decl("plm_generator_step", c_int, P, POINTER(plm_gen_step_info), E)
_decl("plm_generator_pending", c_int64, P)
_decl("plm_generator_result", c_int, P, c_int64, POINTER(I32P), POINTER(c_int64))
_decl("plm_tokenizer_open", c_int, POINTER(P), c_char_p, E)
_decl("plm_tokenizer_free", None, P)
_decl("plm_tokenizer_encode", c_int, P, c_char_p, c_size_t, POINTER(I32P), POINTER(c_size_t), E)
_decl("plm_tokenizer_decode", c_int, P, I32P, c_size_t, POINTER(c_void_p), POINTER(c_size_t), E)
_decl("plm_tokenizer_vocab_size", c_int32, P)
_decl("plm_tokenizer_token_id", c_int32, P, c_char_p)
_decl("plm_tokenizer_token_str", c_char_p, P, c_int32)
_decl("plm_tokenizer_bos_id", c_int32, P)
_decl("plm_tokenizer_eos_id", c_int32, P)
_decl("plm_tokenizer_pad_id", c_int32, P)
