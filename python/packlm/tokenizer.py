"""Tokenizer: a Hugging Face tokenizer.json (byte-level BPE, Qwen) read by packlm's C tokenizer."""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, byref, c_int32, c_size_t, c_void_p
from typing import List, Sequence, Union

import numpy as np

from . import _arrays as A
from ._lib import lib, check, libc_free, plm_error

I32P = POINTER(c_int32)


class Tokenizer:
    """Tokenizer(path): path is a tokenizer.json file or a folder holding one (tokenizer_config.json
    beside it is read too: special tokens, bos/eos/pad). Immutable; safe to use from several threads.

        >>> import packlm
        >>> tok = packlm.Tokenizer("tests/data/tokenizer-qwen3")
        >>> ids = tok.encode("Hello, world!")
        >>> tok.decode(ids)
        'Hello, world!'

    encode adds no BOS/EOS; special tokens written in the text (e.g. "<|im_end|>") become their ids.
    decode writes special tokens as their text; byte sequences that are not valid UTF-8 become
    U+FFFD."""

    def __init__(self, path):
        self._t = None
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if "\0" in path:
            raise ValueError("path contains a NUL character")
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        t = c_void_p()
        err = plm_error()
        check(lib.plm_tokenizer_open(byref(t), os.fsencode(path), byref(err)), err)
        self._t = t
        self.path = path
        self.vocab_size = lib.plm_tokenizer_vocab_size(t)
        self.bos_id = lib.plm_tokenizer_bos_id(t)
        self.eos_id = lib.plm_tokenizer_eos_id(t)
        self.pad_id = lib.plm_tokenizer_pad_id(t)

    def close(self):
        if self._t:
            lib.plm_tokenizer_free(self._t)
            self._t = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _live(self):
        if not self._t:
            raise ValueError("the tokenizer is closed")
        return self._t

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return "packlm.Tokenizer(%r, vocab_size=%d)" % (self.path, self.vocab_size)

    def encode(self, text: Union[str, bytes], *, output="list"):
        """Token ids of text (str, or UTF-8 bytes); a list of ints, or output="numpy"/"torch"."""
        t = self._live()
        if isinstance(text, str):
            try:
                b = text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError("text is not valid Unicode (%s)" % e) from None
        elif isinstance(text, (bytes, bytearray, memoryview)):
            b = bytes(text)
        else:
            raise TypeError("encode expects str or bytes, not %s" % type(text).__name__)
        ids, n = I32P(), c_size_t()
        err = plm_error()
        check(lib.plm_tokenizer_encode(t, b, len(b), byref(ids), byref(n), byref(err)), err)
        try:
            a = np.ctypeslib.as_array(ids, shape=(n.value,)).copy() if n.value else np.zeros(0, np.int32)
        finally:
            libc_free(ctypes.cast(ids, c_void_p))
        return a.tolist() if output == "list" else A.output(a, output)

    def decode(self, ids) -> str:
        """The text of ids (list, NumPy array or torch tensor of token ids)."""
        t = self._live()
        a = A.int_array(ids, "ids", 0, self.vocab_size)
        text, n = c_void_p(), c_size_t()
        err = plm_error()
        check(lib.plm_tokenizer_decode(t, ctypes.cast(c_void_p(a.ctypes.data), I32P), a.size, byref(text), byref(n),
                                       byref(err)), err)
        try:
            return ctypes.string_at(text, n.value).decode("utf-8", "replace")
        finally:
            libc_free(text)

    def encode_batch(self, texts: Sequence[Union[str, bytes]], *, output="list") -> List:
        return [self.encode(x, output=output) for x in texts]

    def decode_batch(self, seqs) -> List[str]:
        return [self.decode(s) for s in seqs]

    __call__ = encode

    def token_to_id(self, token: str):
        """Id of a token as written in tokenizer.json (e.g. "<|im_end|>"), or None."""
        if not isinstance(token, str) or "\0" in token:
            raise ValueError("token must be a str without NUL characters")
        i = lib.plm_tokenizer_token_id(self._live(), token.encode("utf-8", "surrogatepass"))
        return None if i < 0 else i

    def id_to_token(self, i: int):
        """The token string of an id as written in tokenizer.json, or None."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < 2**31:
            return None
        s = lib.plm_tokenizer_token_str(self._live(), int(i))
        return None if s is None else s.decode("utf-8", "replace")
