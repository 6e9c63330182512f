"""Knowledge base: markdown articles -> chunks -> embeddings in Postgres, and hybrid search.

The agents search a hot in-process index (`KbIndex`: the chunk vectors as one numpy matrix
plus a TF-IDF matrix of the chunks' words, rebuilt when the knowledge base's version
changes); `search_many` below is the same hybrid search as one SQL query (tools, tests).

The SQL search fuses two rankings computed in ONE round trip per batch of queries:
pgvector cosine similarity on chunk embeddings, and Postgres full-text search
(`websearch_to_tsquery` with the query's content words OR-ed, ranked by `ts_rank_cd`).
Candidates of both rankings are fused by a calibrated blend, `score` in [0, 1] =
VECTOR_WEIGHT * cosine + (1 - VECTOR_WEIGHT) * min(1, TEXT_SCALE * ts_rank_cd/(1+ts_rank_cd)),
which orders the hits and is the confidence the agents compare with their thresholds
(on the Bitext dev questions it ranks better than reciprocal rank fusion, which is kept
as `fused` for ties). Hits are per article (best chunk).

Writes are idempotent: a chunk is re-embedded only when its content hash changes, and
chunks beyond an article's new length are deleted.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from psycopg.rows import tuple_row

from flows.embeddings import STOPWORDS, SYNONYMS, Embedder, build_embedder

MAX_CHUNK_CHARS = 900
CANDIDATES = 20  # per ranking and query, before fusion
RRF_K = 60
VECTOR_WEIGHT = 0.5  # in the calibrated score; the rest is the normalised text rank
TEXT_SCALE = 2.0
MAX_QUERY_CHARS = 2_000


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    body: str
    intents: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str | None = None
    escalate: str | None = None  # a reason: a confident match goes to a person instead


@dataclass(frozen=True)
class KbHit:
    id: int
    slug: str
    chunk_index: int
    title: str
    body: str
    intents: tuple[str, ...]
    score: float  # calibrated confidence in [0, 1]
    vector_score: float
    text_score: float
    fused: float = 0.0  # reciprocal-rank-fusion value, used for ordering
    escalate: str | None = None  # the article hands the customer to a person (reason)


# --- articles ----------------------------------------------------------------------------
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?(.*)\Z", re.DOTALL)
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def parse_article(text: str, *, slug: str, source: str | None = None) -> Article:
    """An article from markdown with YAML front matter (title, intents, tags)."""
    m = _FRONT_MATTER.match(text)
    meta, body = (yaml.safe_load(m.group(1)) or {}, m.group(2)) if m else ({}, text)
    if not isinstance(meta, dict):
        raise ValueError(f"{slug}: front matter must be a mapping")
    title = str(meta.get("title") or slug.replace("-", " ").capitalize()).strip()
    intents = tuple(str(i) for i in meta.get("intents") or ())
    return Article(
        slug=slug,
        title=title,
        body=body.strip(),
        intents=intents,
        tags=tuple(str(t) for t in meta.get("tags") or ()),
        source=source,
        escalate=escalate_reason(meta.get("escalate"), intents, slug),
    )


# The reason an `escalate: true` article implies, from its intents.
INTENT_ESCALATION = {"get_refund": "refund", "contact_human_agent": "human_requested",
                     "complaint": "complaint"}


def escalate_reason(value, intents: Sequence[str], slug: str) -> str | None:
    """`escalate:` front matter: false/absent -> None; a reason name -> it; true -> the
    reason of the article's intents (human_requested when none says)."""
    from schema.events import EscalationReason

    if value in (None, False):
        return None
    if value is True:
        return next((INTENT_ESCALATION[i] for i in intents if i in INTENT_ESCALATION),
                    "human_requested")
    try:
        return EscalationReason(str(value)).value
    except ValueError as exc:
        raise ValueError(f"{slug}: escalate: true, false or an escalation reason") from exc


def read_articles(directory: Path) -> list[Article]:
    articles = []
    for path in sorted(Path(directory).glob("*.md")):
        slug = path.stem.lower()
        if not SLUG.match(slug):
            raise ValueError(f"{path.name}: file name must be a slug (lower-case, digits, dashes)")
        articles.append(parse_article(path.read_text(encoding="utf-8"), slug=slug,
                                      source=f"file:{path.resolve()}"))
    return articles


def chunk_body(body: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Paragraph-aligned chunks of at most max_chars (a longer paragraph is split by sentence)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    pieces: list[str] = []
    for p in paragraphs:
        if len(p) <= max_chars:
            pieces.append(p)
            continue
        current = ""
        for sentence in split_sentences(p):
            if current and len(current) + len(sentence) + 1 > max_chars:
                pieces.append(current)
                current = ""
            current = f"{current} {sentence}".strip()
        if current:
            pieces.append(current)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + len(piece) + 2 <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks or [body.strip()]


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.extend(s.strip() for s in _SENTENCE.split(line) if s.strip())
    return out


def _hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


# --- writes ------------------------------------------------------------------------------
def save_article(conn, *, settings=None, slug: str, title: str, body: str,
                 intents: Sequence[str] = (), tags: Sequence[str] = (), source: str | None = None,
                 embedder: Embedder | None = None, escalate: str | None | object = ...) -> int:
    """Create or update one article: chunk, embed changed chunks, upsert, drop stale chunks.
    Returns the number of chunks re-embedded. Runs in the caller's transaction."""
    if not SLUG.match(slug):
        raise ValueError(f"slug {slug!r}: use lower-case letters, digits and dashes")
    if embedder is None:
        from fte.settings import get_settings

        embedder = build_embedder(settings or get_settings())
    intents = sorted({i.strip() for i in intents if i and i.strip()})
    tags = sorted({t.strip() for t in tags if t and t.strip()})
    chunks = chunk_body(body)
    if escalate is ...:  # not given (a console edit): keep the article's current marking
        row = conn.execute("SELECT escalate FROM knowledge_base WHERE slug = %s LIMIT 1", (slug,)).fetchone()
        escalate = (row[0] if not isinstance(row, dict) else row["escalate"]) if row else None
    hashes = [_hash(embedder.name, title, chunk, intents, tags, source, escalate) for chunk in chunks]
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT chunk_index, content_hash FROM knowledge_base WHERE slug = %s", (slug,))
        existing = dict(cur.fetchall())
        changed = [i for i, h in enumerate(hashes) if existing.get(i) != h]
        if changed:
            vectors = embedder.embed([f"{title}\n{chunks[i]}" for i in changed])
            cur.executemany(
                """
                INSERT INTO knowledge_base (slug, chunk_index, title, body, intents, tags, source,
                                            content_hash, embedding, escalate)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (slug, chunk_index) DO UPDATE SET
                    title = EXCLUDED.title, body = EXCLUDED.body, intents = EXCLUDED.intents,
                    tags = EXCLUDED.tags, source = EXCLUDED.source, escalate = EXCLUDED.escalate,
                    content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding,
                    updated_at = now()
                """,
                [(slug, i, title, chunks[i], intents, tags, source, hashes[i], v, escalate)
                 for i, v in zip(changed, vectors)],
            )
        cur.execute("DELETE FROM knowledge_base WHERE slug = %s AND chunk_index >= %s",
                    (slug, len(chunks)))
    return len(changed)


def delete_article(conn, slug: str) -> int:
    """Remove every chunk of an article; returns how many chunks were removed."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("DELETE FROM knowledge_base WHERE slug = %s", (slug,))
        return cur.rowcount


@dataclass
class LoadReport:
    articles: int = 0
    embedded_chunks: int = 0
    removed_articles: list[str] = field(default_factory=list)
    kept_edited: list[str] = field(default_factory=list)  # changed in the console since


def load_directory(conn, directory: Path, *, embedder: Embedder, prune: bool = True,
                   overwrite_edited: bool = False) -> LoadReport:
    """Upsert every article of a directory; with prune, delete articles loaded earlier from
    this directory whose file is gone. Articles last saved from the console are kept as
    edited (the console is the newer truth) unless overwrite_edited."""
    directory = Path(directory).resolve()
    articles = read_articles(directory)
    report = LoadReport(articles=len(articles))
    edited: set[str] = set()
    if not overwrite_edited:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT DISTINCT slug FROM knowledge_base WHERE source LIKE %s", ("console:%",))
            edited = {slug for (slug,) in cur.fetchall()}
    for a in articles:
        if a.slug in edited:
            report.kept_edited.append(a.slug)
            continue
        report.embedded_chunks += save_article(
            conn, slug=a.slug, title=a.title, body=a.body, intents=a.intents, tags=a.tags,
            source=a.source, embedder=embedder, escalate=a.escalate)
    if prune:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT DISTINCT slug FROM knowledge_base WHERE source LIKE %s AND NOT slug = ANY(%s)",
                (f"file:{directory}/%", [a.slug for a in articles]))
            for (slug,) in cur.fetchall():
                delete_article(conn, slug)
                report.removed_articles.append(slug)
    return report


# --- search ------------------------------------------------------------------------------
def text_query(text: str) -> str:
    """Content words OR-ed for websearch_to_tsquery: any shared word is evidence."""
    words = []
    for w in re.findall(r"[a-z]+", text[:MAX_QUERY_CHARS].lower()):
        if len(w) > 1 and w not in STOPWORDS:
            words.append(w)
            if w in SYNONYMS:
                words.append(SYNONYMS[w])  # the articles' word for it
    return " or ".join(dict.fromkeys(words))


_SEARCH_SQL = """
WITH q AS (
    SELECT qi, tsq, emb,
           CASE WHEN tsq = '' THEN NULL ELSE websearch_to_tsquery('english', tsq) END AS query
      FROM unnest(%(tsqs)s::text[], %(embs)s::vector[]) WITH ORDINALITY AS u(tsq, emb, qi)
), cand AS (
    SELECT q.qi, v.id FROM q CROSS JOIN LATERAL (
        SELECT id FROM knowledge_base WHERE embedding IS NOT NULL
         ORDER BY embedding <=> q.emb LIMIT %(n)s) v
    UNION
    SELECT q.qi, t.id FROM q CROSS JOIN LATERAL (
        SELECT id FROM knowledge_base WHERE q.query IS NOT NULL AND tsv @@ q.query
         ORDER BY ts_rank_cd(tsv, q.query, 32) DESC LIMIT %(n)s) t
)
SELECT c.qi, kb.id, kb.slug, kb.chunk_index, kb.title, kb.body, kb.intents,
       coalesce(1 - (kb.embedding <=> q.emb), 0) AS sim,
       CASE WHEN q.query IS NOT NULL AND kb.tsv @@ q.query
            THEN ts_rank_cd(kb.tsv, q.query, 32) ELSE 0 END AS trank
  FROM cand c JOIN q USING (qi) JOIN knowledge_base kb ON kb.id = c.id
"""


def _fuse(rows: list[tuple], k: int) -> list[KbHit]:
    """Rows of one query -> best chunk per article, ordered by RRF, with a calibrated score."""
    # a query with no content words embeds to the zero vector: cosine is NaN, i.e. no evidence
    rows = [r[:7] + (0.0 if r[7] is None or math.isnan(r[7]) else r[7],) + r[8:] for r in rows]
    by_vec = sorted(rows, key=lambda r: (-r[7], r[1]))  # id breaks ties: batch == one by one
    by_txt = sorted((r for r in rows if r[8] > 0), key=lambda r: (-r[8], r[1]))
    rrf: dict[int, float] = {}
    for rank, r in enumerate(by_vec):
        rrf[r[1]] = rrf.get(r[1], 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, r in enumerate(by_txt):
        rrf[r[1]] = rrf.get(r[1], 0.0) + 1.0 / (RRF_K + rank + 1)
    best: dict[str, KbHit] = {}
    for r in rows:
        _, id_, slug, chunk_index, title, body, intents, sim, trank = r
        # ts_rank_cd(..., 32) is rank/(rank+1); rescaled so a strong match reaches ~1
        text_score = min(1.0, float(trank) * TEXT_SCALE)
        score = VECTOR_WEIGHT * max(0.0, float(sim)) + (1 - VECTOR_WEIGHT) * text_score
        hit = KbHit(id_, slug, chunk_index, title, body, tuple(intents or ()), round(score, 4),
                    round(float(sim), 4), round(text_score, 4), rrf[id_])
        if score <= 0:
            continue
        prev = best.get(slug)
        if prev is None or (hit.score, hit.fused) > (prev.score, prev.fused):
            best[slug] = hit
    return sorted(best.values(), key=lambda h: (-h.score, -h.fused))[:k]


def search_many(conn, queries: Sequence[str], *, embedder: Embedder, k: int = 3) -> list[list[KbHit]]:
    """Hybrid search for many queries in one round trip; one hit list per query."""
    if not queries:
        return []
    vectors = embedder.embed([q[:MAX_QUERY_CHARS] for q in queries])
    # numpy rows go as a vector[] (pgvector's binary dumper), no text formatting
    params = {"tsqs": [text_query(q) for q in queries], "embs": list(vectors), "n": CANDIDATES}
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_SEARCH_SQL, params)
        rows = cur.fetchall()
    grouped: list[list[tuple]] = [[] for _ in queries]
    for r in rows:
        grouped[r[0] - 1].append(r)
    return [_fuse(g, k) for g in grouped]


def search(conn, query: str, *, embedder: Embedder, k: int = 3) -> list[KbHit]:
    return search_many(conn, [query], embedder=embedder, k=k)[0]


class KbIndex:
    """Every chunk of the knowledge base in memory: one matrix of chunk vectors (the stored
    embeddings) and one TF-IDF matrix over the chunks' words (the shop thesaurus applied), so
    a batch of questions is two matrix products instead of a database query. Immutable;
    `KnowledgeBase` swaps in a new one when the knowledge base's version changes."""

    LOAD_SQL = ("SELECT id, slug, chunk_index, title, body, intents, escalate, embedding "
                "FROM knowledge_base WHERE embedding IS NOT NULL ORDER BY id")

    def __init__(self, rows: list[tuple], version: tuple | None = None):
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.version = version
        self.rows = rows
        self.vectors = (np.vstack([_array(r[7]) for r in rows])
                        if rows else np.zeros((0, 1), dtype=np.float32))
        self.words = TfidfVectorizer(analyzer=_index_words, sublinear_tf=True)
        self.lexical = self.words.fit_transform([f"{r[3]}\n{r[4]}" for r in rows]) if rows else None

    @classmethod
    def load(cls, conn, version: tuple | None = None) -> KbIndex:
        with conn.cursor(row_factory=tuple_row) as cur:
            return cls(cur.execute(cls.LOAD_SQL).fetchall(), version)

    def search_many(self, queries: Sequence[str], *, embedder: Embedder, k: int = 3,
                    intents: Sequence[str | None] | None = None) -> list[list[KbHit]]:
        """Best chunk per article, ordered by the calibrated blend of cosine and lexical score
        (the same scale as the SQL search: VECTOR_WEIGHT * cosine + the rest * text score).
        `intents[i]`: only articles carrying that intent for query i (the article a confident
        route chose, found even when other articles share more of the question's words)."""
        import numpy as np

        if not queries:
            return []
        if not self.rows:
            return [[] for _ in queries]
        clipped = [q[:MAX_QUERY_CHARS] for q in queries]
        sims = embedder.embed(clipped) @ self.vectors.T
        sims = np.nan_to_num(sims, nan=0.0)
        lex = (self.words.transform(clipped) @ self.lexical.T).toarray()
        # every query's scores and ranking at once (matrix operations, not a loop per query)
        texts = np.minimum(1.0, lex * TEXT_SCALE)
        scores = VECTOR_WEIGHT * np.maximum(0.0, sims) + (1 - VECTOR_WEIGHT) * texts
        ranked = np.argsort(-scores, axis=1)[:, :CANDIDATES * 2].tolist()
        out = []
        for qi in range(len(queries)):
            score, text, sim = scores[qi].tolist(), texts[qi].tolist(), sims[qi].tolist()
            wanted = intents[qi] if intents is not None else None
            order = ranked[qi]
            if wanted is not None:  # the chosen intent's articles, wherever they rank
                order = [j for j in np.argsort(-scores[qi]).tolist()
                         if wanted in (self.rows[j][5] or ())][:CANDIDATES * 2]
            best: dict[str, KbHit] = {}
            for j in order:
                if score[j] <= 0 and wanted is None:
                    break
                r = self.rows[j]
                if r[1] in best:
                    continue
                best[r[1]] = KbHit(r[0], r[1], r[2], r[3], r[4], tuple(r[5] or ()),
                                   round(score[j], 4), round(sim[j], 4),
                                   round(text[j], 4), 0.0, r[6])
                if len(best) >= max(k, 5):
                    break
            out.append(list(best.values())[:k])
        return out


def _array(vector):
    import numpy as np

    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def _index_words(text: str) -> list[str]:
    from flows.embeddings import tokens

    return tokens(text)


class KnowledgeBase:
    """Thread-safe search front end for the agents over a hot in-process `KbIndex`.

    The knowledge base's version (row count, last update, last id) is re-read at most every
    `check_s` seconds; when it changed, the index is rebuilt from Postgres (a few hundred
    chunks: milliseconds), so answers follow `fte kb load` or a console edit within that time.
    Searching itself never touches the database."""

    FINGERPRINT_SQL = "SELECT count(*), max(updated_at), max(id) FROM knowledge_base"

    def __init__(self, database_url: str, embedder: Embedder, *, cache_size: int = 2048,
                 check_s: float = 2.0):
        self.database_url, self.embedder = database_url, embedder
        self.check_s = check_s
        self._lock = threading.Lock()
        self._index: KbIndex | None = None
        self._checked_at = 0.0

    def _pool(self):
        from schema.db import pool

        return pool(self.database_url)

    @property
    def kb_version(self) -> tuple | None:
        return self._index.version if self._index else None

    def index(self) -> KbIndex:
        """The current index, rebuilt when the knowledge base's version changed."""
        now = time.monotonic()
        with self._lock:
            fresh = self._index is not None and now - self._checked_at < self.check_s
            if fresh:
                return self._index
            self._checked_at = now
        with self._pool().connection() as conn:
            with conn.cursor(row_factory=tuple_row) as cur:
                version = tuple(cur.execute(self.FINGERPRINT_SQL).fetchone())
            current = self._index
            if current is None or current.version != version:
                current = KbIndex.load(conn, version)
        with self._lock:
            self._index = current
        return current

    def search_many(self, queries: Sequence[str], k: int = 3,
                    intents: Sequence[str | None] | None = None) -> list[list[KbHit]]:
        return self.index().search_many(queries, embedder=self.embedder, k=k, intents=intents)

    def search(self, query: str, k: int = 3) -> list[KbHit]:
        return self.search_many([query], k)[0]

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._checked_at = 0.0


def record_lookups(conn, rows: Sequence[dict]) -> None:
    """Batch-insert kb_lookups rows (inbound_key, channel, query, top_kb_id, top_slug,
    score, answered); idempotent on inbound_key."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO kb_lookups (inbound_key, channel, query, top_kb_id, top_slug, score, answered)
               VALUES (%(inbound_key)s, %(channel)s, %(query)s, %(top_kb_id)s, %(top_slug)s,
                       %(score)s, %(answered)s)
               ON CONFLICT (inbound_key) DO NOTHING""",
            [{**r, "query": r["query"][:MAX_QUERY_CHARS]} for r in rows],
        )
