"""Knowledge base: markdown articles -> chunks -> embeddings in Postgres, and hybrid search.

Search fuses two rankings computed in ONE round trip per batch of queries:
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
from collections import OrderedDict
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
    return Article(
        slug=slug,
        title=title,
        body=body.strip(),
        intents=tuple(str(i) for i in meta.get("intents") or ()),
        tags=tuple(str(t) for t in meta.get("tags") or ()),
        source=source,
    )


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
                 embedder: Embedder | None = None) -> int:
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
    hashes = [_hash(embedder.name, title, chunk, intents, tags, source) for chunk in chunks]
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT chunk_index, content_hash FROM knowledge_base WHERE slug = %s", (slug,))
        existing = dict(cur.fetchall())
        changed = [i for i, h in enumerate(hashes) if existing.get(i) != h]
        if changed:
            vectors = embedder.embed([f"{title}\n{chunks[i]}" for i in changed])
            cur.executemany(
                """
                INSERT INTO knowledge_base (slug, chunk_index, title, body, intents, tags, source,
                                            content_hash, embedding)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (slug, chunk_index) DO UPDATE SET
                    title = EXCLUDED.title, body = EXCLUDED.body, intents = EXCLUDED.intents,
                    tags = EXCLUDED.tags, source = EXCLUDED.source,
                    content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding,
                    updated_at = now()
                """,
                [(slug, i, title, chunks[i], intents, tags, source, hashes[i], v)
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
            source=a.source, embedder=embedder)
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


class KnowledgeBase:
    """Thread-safe search front end for the agents: pooled connections, batched queries,
    and a small in-memory cache of recent results. The cache is keyed by a fingerprint of
    the table (row count, last update, last id) re-read at most every `check_s` seconds,
    so answers follow `fte kb load` or a console edit within that time."""

    FINGERPRINT_SQL = "SELECT count(*), max(updated_at), max(id) FROM knowledge_base"

    def __init__(self, database_url: str, embedder: Embedder, *, cache_size: int = 2048,
                 check_s: float = 2.0):
        self.database_url, self.embedder = database_url, embedder
        self.cache_size, self.check_s = cache_size, check_s
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], list[KbHit]] = OrderedDict()
        self._fingerprint: tuple | None = None
        self._checked_at = 0.0

    def _pool(self):
        from schema.db import pool

        return pool(self.database_url)

    def _refresh(self, conn) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < self.check_s:
                return
            self._checked_at = now
        with conn.cursor(row_factory=tuple_row) as cur:
            fp = tuple(cur.execute(self.FINGERPRINT_SQL).fetchone())
        with self._lock:
            if fp != self._fingerprint:
                self._fingerprint = fp
                self._cache.clear()

    def search_many(self, queries: Sequence[str], k: int = 3) -> list[list[KbHit]]:
        keys = [(" ".join(q.lower().split())[:MAX_QUERY_CHARS], k) for q in queries]
        with self._pool().connection() as conn:
            self._refresh(conn)
            with self._lock:
                found = {key: self._cache[key] for key in keys if key in self._cache}
            missing = list(dict.fromkeys(key for key in keys if key not in found))
            if missing:
                results = search_many(conn, [m[0] for m in missing], embedder=self.embedder, k=k)
                with self._lock:
                    for key, hits in zip(missing, results):
                        found[key] = hits
                        self._cache[key] = hits
                        while len(self._cache) > self.cache_size:
                            self._cache.popitem(last=False)
        return [found[key] for key in keys]

    def search(self, query: str, k: int = 3) -> list[KbHit]:
        return self.search_many([query], k)[0]

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
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
