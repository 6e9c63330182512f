"""An embedder that remembers recent texts' vectors: a question is embedded once, though
retrieval and the answer's sentence selection both need its vector."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np


class MemoEmbedder:
    """Wraps any `Embedder` (same name, dim and vectors); thread-safe, at most `size` texts."""

    def __init__(self, embedder, size: int = 4096):
        self.embedder, self.size = embedder, size
        self.name, self.dim = embedder.name, embedder.dim
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            found = {t: self._rows[t] for t in texts if t in self._rows}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            computed = dict(zip(missing, self.embedder.embed(missing)))
            found.update(computed)
            with self._lock:
                self._rows.update(computed)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([found[t] for t in texts])
