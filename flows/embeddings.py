"""Text embeddings behind one interface: `Embedder.embed(texts) -> float32[n, EMBEDDING_DIM]`,
rows L2-normalised so pgvector cosine distance ranks them.

- `HashingEmbedder` (default): feature hashing of words (optionally word bigrams) plus character
  3-5-grams inside words, signed, log-scaled and normalised. Needs no download and no model;
  character n-grams make it tolerant of the typos customers make ("reimbvurse", "adress").
- `OpenAIEmbedder` when OPENAI_API_KEY is set: the embeddings endpoint with `dimensions`
  so rows fit the `vector(384)` column.

The two spaces are not comparable: reload the knowledge base (`fte kb load`) after switching.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from itertools import pairwise
from typing import Protocol, Sequence

import numpy as np

EMBEDDING_DIM = 384
MAX_EMBED_CHARS = 8_000

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Very common words carry no topic; dropping them keeps hashed buckets for content words.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at for from by with about as into is are was were be
    been being am do does did i me my we our you your ya ur u it its this that these those
    can could would should will shall may might must have has had having how what when where
    which who whom why there here please help need want wanna like just so some any also
    assistance hi hello thanks thank
    gold platinum pro freemium premium standard free plus""".split()  # plan names: noise here
)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def normalize_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (m / norms).astype(np.float32)


@lru_cache(maxsize=1 << 17)  # features repeat (words, their n-grams): hash each once
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(feature.encode("utf-8"))  # stable across processes, unlike hash()
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


# A small shop-support thesaurus: customers and articles name the same thing differently
# ("reimbursement", "rebate", "money back"); mapping them to one term lets both the hashed
# vectors and full-text search match. Applied to queries and articles alike.
SYNONYMS = {
    **dict.fromkeys("modify modifying modified update updating updated edit editing amend "
                    "amending alter altering".split(), "edit"),
    **dict.fromkeys("remove removing removal delete deleting deletion erase close closing "
                    "closure".split(), "delete"),
    **dict.fromkeys("purchase purchasing buy buying acquire acquiring shop shopping".split(), "buy"),
    **dict.fromkeys("reimbursement reimbursements reimburse rebate rebates compensation "
                    "compensations restitution restitutions refund refunds refunded "
                    "refunding".split(), "refund"),
    **dict.fromkeys("bill bills invoice invoices".split(), "invoice"),
    **dict.fromkeys("parcel parcels package packages shipment shipments".split(), "parcel"),
    **dict.fromkeys("error errors trouble troubles issue issues problem problems".split(), "problem"),
    **dict.fromkeys("signup sign-up register registering registration registrations".split(),
                    "register"),
    **dict.fromkeys("penalty penalties fee fees".split(), "fee"),
    **dict.fromkeys("notify notifying inform informing report reporting".split(), "report"),
    **dict.fromkeys("profile profiles account accounts".split(), "account"),
    **dict.fromkeys("eta arrive arrives arrival".split(), "arrive"),
    **dict.fromkeys("password passwords pwd pin passcode".split(), "password"),
    **dict.fromkeys("opinion opinions review reviews feedback".split(), "feedback"),
    **dict.fromkeys("operator operators agent agents representative human person somebody "
                    "someone".split(), "human"),
}


def tokens(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return [SYNONYMS.get(w, w) for w in words if w not in STOPWORDS]


class HashingEmbedder:
    """Local, deterministic, thread-safe (no mutable state)."""

    name = "hashing-v5"  # bump when features change: stored chunks are then re-embedded

    # Weights measured on the Bitext dev questions against the demo articles: character
    # n-grams carry most of the signal for short, misspelt questions; word bigrams hurt.
    def __init__(self, dim: int = EMBEDDING_DIM, word_weight: float = 1.0,
                 bigram_weight: float = 0.0, char_weight: float = 1.6):
        self.dim = dim
        self.word_weight, self.bigram_weight, self.char_weight = word_weight, bigram_weight, char_weight

    def _features(self, text: str) -> dict[str, float]:
        words = tokens(text[:MAX_EMBED_CHARS])
        feats: dict[str, float] = {}
        for w in words:
            feats["w:" + w] = feats.get("w:" + w, 0.0) + self.word_weight
            padded = f"<{w}>"
            for n in (3, 4, 5):
                for i in range(max(1, len(padded) - n + 1)):
                    g = "c:" + padded[i:i + n]
                    feats[g] = feats.get(g, 0.0) + self.char_weight / n
        if self.bigram_weight:
            for a, b in pairwise(words):
                k = f"b:{a} {b}"
                feats[k] = feats.get(k, 0.0) + self.bigram_weight
        return feats

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text or "").items():
                col, sign = _bucket(feature, self.dim)
                out[row, col] += sign * np.log1p(weight)  # damp repeated terms
        return normalize_rows(out)


class OpenAIEmbedder:
    """OpenAI (or compatible) embeddings endpoint, truncated to `dim` by the server."""

    def __init__(self, client, model: str, dim: int = EMBEDDING_DIM, batch_size: int = 256):
        self.client, self.model, self.dim, self.batch_size = client, model, dim, batch_size
        self.name = f"openai:{model}:{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from tenacity import retry, stop_after_attempt, wait_exponential

        @retry(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=4), reraise=True)
        def call(batch: list[str]):
            return self.client.embeddings.create(model=self.model, input=batch, dimensions=self.dim)

        rows: list[list[float]] = []
        items = [(t or " ")[:MAX_EMBED_CHARS] for t in texts]
        for start in range(0, len(items), self.batch_size):
            resp = call(items[start:start + self.batch_size])
            rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        m = np.asarray(rows, dtype=np.float32)
        if m.shape[1] != self.dim:
            raise ValueError(f"embedding dimension {m.shape[1]} from {self.model}, expected {self.dim}")
        return normalize_rows(m)


def openai_client(settings, *, timeout: float | None = None, max_retries: int = 0):
    from openai import OpenAI

    return OpenAI(
        api_key=settings.OPENAI_API_KEY.get_secret_value(),
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=timeout or settings.OPENAI_TIMEOUT_S,
        max_retries=max_retries,  # retries are ours (tenacity), so they are visible and bounded
    )


def build_embedder(settings) -> Embedder:
    if settings.OPENAI_API_KEY is not None and settings.OPENAI_API_KEY.get_secret_value():
        return OpenAIEmbedder(openai_client(settings), settings.OPENAI_EMBEDDING_MODEL,
                              settings.EMBEDDING_DIM)
    return HashingEmbedder(settings.EMBEDDING_DIM)


# --- WordLlama: small static sentence embeddings shipped inside the `wordllama` wheel ------
# 256-d, average-pooled token embeddings (a 32k-token vocabulary): they place "ship to Canada"
# near "international shipping" where n-grams see no shared word. Loaded from the wheel's own
# files (no download; wordllama 0.4's `WordLlama.load()` looks for the tokenizer in the wrong
# folder and then tries the network), once per process.
_WORDLLAMA = None
_WORDLLAMA_LOCK = __import__("threading").Lock()


def wordllama():
    """The shared WordLlama model (loaded on first use, ~2 s)."""
    global _WORDLLAMA
    with _WORDLLAMA_LOCK:
        if _WORDLLAMA is None:
            from pathlib import Path

            import wordllama as package
            from safetensors import safe_open
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference

            root = Path(package.__file__).parent
            with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
                matrix = f.get_tensor("embedding.weight")
            tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
            _WORDLLAMA = WordLlamaInference(matrix, tokenizer)
        return _WORDLLAMA


def sentence_vectors(texts: Sequence[str]) -> np.ndarray:
    """float32[n, 256], unit rows (an empty text gives a zero row)."""
    if not texts:
        return np.zeros((0, 256), dtype=np.float32)
    m = np.asarray(wordllama().embed([(t or " ")[:MAX_EMBED_CHARS] for t in texts], norm=False),
                   dtype=np.float32)
    m[[not (t or "").strip() for t in texts]] = 0.0
    return normalize_rows(m)
