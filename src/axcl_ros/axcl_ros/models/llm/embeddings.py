"""The token embedding table, kept on the host (fp32 ``.npy`` or AXERA's raw bf16 ``.bin``), memory-mapped."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .config import ModelFilesError


class EmbeddingTable:
    """Rows of the ``[vocab, hidden]`` embedding table as float32; the file is memory-mapped, not read whole."""

    def __init__(self, path: str, vocab_size: int, hidden_size: int) -> None:
        self.path = path
        if path.endswith(".npy"):
            try:
                table = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise ModelFilesError(f"cannot read the embedding table {path!r}: {exc}") from exc
        else:
            size = os.path.getsize(path)
            if size != vocab_size * hidden_size * 2:
                raise ModelFilesError(f"{path!r} holds {size} bytes; a bf16 table of {vocab_size} x {hidden_size} "
                                      f"needs {vocab_size * hidden_size * 2}")
            table = np.memmap(path, dtype=np.uint16, mode="r", shape=(vocab_size, hidden_size))
        if table.shape != (vocab_size, hidden_size):
            raise ModelFilesError(f"embedding table {path!r} is {table.shape}, config.json says "
                                  f"({vocab_size}, {hidden_size})")
        self._table = table

    def __call__(self, ids: Sequence[int]) -> np.ndarray:
        """float32 rows ``[len(ids), hidden]``."""
        rows = np.asarray(self._table[np.asarray(ids, dtype=np.int64)])
        if rows.dtype == np.uint16:  # bf16 -> f32 is exact: the bf16 bits are the high half of the f32
            return (rows.astype(np.uint32) << 16).view(np.float32)
        return rows.astype(np.float32, copy=False)
