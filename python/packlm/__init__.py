"""packlm: packed-batch inference for Qwen3.5 hybrid linear-attention models, from Python.

A thin ctypes layer over the C library (build/libpacklm.so, built by `make`). Packed rows go in as
transformers takes them: input_ids [1, T] with position_ids restarting at 0 at every sequence (what
DataCollatorWithFlattening produces), or with cu_seqlens; lists of sequences work too.

    import numpy as np, packlm
    model = packlm.Model("tests/data/tiny-dense")
    seqs = [[11, 12, 13], [21, 22], [31, 32, 33, 34]]
    input_ids = np.array([sum(seqs, [])])                              # one packed row [1, 9]
    position_ids = np.array([[p for s in seqs for p in range(len(s))]])  # 0 1 2 0 1 0 1 2 3
    logits = model.forward(input_ids, position_ids=position_ids)       # float32 [9, vocab]
    # each sequence's rows equal its own call: logits[3:5] ~ model.forward(seqs[1])

See Model, State, Tokenizer; the library is found through PACKLM_LIB, a copy inside the package, or
the repository's build/ folder (packlm._lib).
"""
from ._lib import PLMError, lib_path
from .model import Model, ScoreResult, Snapshot, State
from .tokenizer import Tokenizer

__all__ = ["Model", "State", "Snapshot", "ScoreResult", "Tokenizer", "PLMError", "lib_path"]
__version__ = "0.1.0"
