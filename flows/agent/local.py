"""Local agent: learned route + hybrid retrieval, then an answer made only of the matched
article's own sentences, or one specific clarifying question, or a hand-over.

The decision is `flows/resolution.py: resolve` (answer only when the model and retrieval
agree confidently; after one unanswered clarification, escalate `low_confidence`; multi-turn
signals escalate with their reason). Without a trained model it falls back to retrieval
alone with a strict bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from flows.agent.base import AgentRequest, AgentResult, question_text
from flows.embeddings import tokens
from flows.knowledge import KnowledgeBase, split_sentences
from flows.resolution import CLARIFY_OPENING, Resolution, Thresholds, Turn, resolve
from schema.events import EscalationReason

__all__ = ["CLARIFY_OPENING", "LocalAgent", "answer_from_article", "turns"]
MAX_ANSWER_SENTENCES = 3
CANDIDATES = 10


def turns(req: AgentRequest) -> list[Turn]:
    return [Turn(h.direction, h.body) for h in req.history]


class LocalAgent:
    provider = "local"

    def __init__(self, kb: KnowledgeBase, router=None, *, thresholds: Thresholds = Thresholds()):
        self.kb, self.router, self.thresholds = kb, router, thresholds

    def respond(self, req: AgentRequest) -> AgentResult:
        return self.respond_many([req])[0]

    def respond_many(self, reqs: Sequence[AgentRequest]) -> list[AgentResult]:
        """One routing call and one in-process retrieval for the whole batch."""
        questions = [question_text(r.inbound) for r in reqs]
        routes = self.router.route_many(questions) if self.router else [None] * len(reqs)
        # candidates wide enough for the learned intent to re-rank (flows/resolution.py)
        all_hits = self.kb.search_many(questions, k=CANDIDATES)
        # a confident route's article, when retrieval left it out of the candidates
        missing = [i for i, (route, hits) in enumerate(zip(routes, all_hits))
                   if route is not None and route.intent is not None
                   and route.confidence >= self.thresholds.choose_min
                   and not any(route.intent in h.intents for h in hits)]
        if missing:
            found = self.kb.search_many([questions[i] for i in missing], k=1,
                                        intents=[routes[i].intent for i in missing])
            for i, extra in zip(missing, found):
                all_hits[i] = list(all_hits[i]) + extra
        return [self.result(resolve(q, route, hits, turns(req), self.thresholds), q)
                for req, q, route, hits in zip(reqs, questions, routes, all_hits)]

    def result(self, r: Resolution, question: str) -> AgentResult:
        slugs = [h.slug for h in r.hits[:3]]
        top_score = r.hits[0].score if r.hits else None
        if r.action == "escalate":
            return AgentResult("escalate", r.text, EscalationReason(r.reason), slugs, top_score,
                               False, provider=self.provider)
        if r.action == "clarify":
            return AgentResult("clarify", r.text, None, slugs, top_score, False, provider=self.provider)
        text = answer_from_article(question, r.hit.body, embedder=self.kb.embedder)
        slugs = [r.hit.slug] + [s for s in slugs if s != r.hit.slug]
        return AgentResult("answer", text, None, slugs, r.hit.score, True, provider=self.provider)


def answer_from_article(question: str, body: str, *, embedder, max_sentences: int = MAX_ANSWER_SENTENCES) -> str:
    """The article sentences most relevant to the question, in the article's order.

    Relevance = word overlap with the question (after the shared thesaurus) plus embedding
    similarity; sentences far below the best one are left out, so the answer is what the
    question asked about, not the article's opening. Bullet lists travel whole with the
    sentence that introduces them.
    """
    units, unit_vectors, unit_words = _article_units(body, embedder)
    if len(units) <= max_sentences:
        return "\n".join(units)
    q_words = set(tokens(question))
    sims = unit_vectors @ embedder.embed([question])[0]
    overlap = np.array([len(q_words & words) / (1 + len(q_words)) for words in unit_words])
    scores = sims + overlap
    best = float(scores.max())
    chosen = sorted(i for i in np.argsort(-scores)[:max_sentences] if scores[i] >= 0.5 * best)
    return "\n".join(units[i] for i in chosen)


@lru_cache(maxsize=1024)
def _article_units(body: str, embedder) -> tuple[list[str], np.ndarray, list[frozenset[str]]]:
    """Units of an article with their vectors and words, computed once per article text."""
    units = _units(body)
    vectors = embedder.embed(units) if units else np.zeros((0, getattr(embedder, "dim", 384)))
    return units, vectors, [frozenset(tokens(u)) for u in units]


def _units(body: str) -> list[str]:
    """Sentences, with a bullet list kept together with the line before it; headings (the
    question an article answers) are left out of the answer."""
    units: list[str] = []
    for paragraph in body.split("\n\n"):
        lines = [ln.strip() for ln in paragraph.splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            continue
        bullets = [ln for ln in lines if ln.startswith(("-", "*"))]
        if bullets:
            intro = " ".join(ln for ln in lines if not ln.startswith(("-", "*")))
            units.append("\n".join([intro] + bullets) if intro else "\n".join(bullets))
        else:
            units.extend(split_sentences(paragraph))
    return units
