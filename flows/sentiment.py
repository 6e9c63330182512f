"""Message sentiment (VADER lexicon, no download) and a per-customer rolling trend.

`score` is VADER's compound score, already in [-1, 1]. `Trend` is the small immutable
state the support flow keeps per customer: an exponentially weighted mean plus the last
few scores, so "getting angrier" is visible even when no single message is very negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

_analyzer = SentimentIntensityAnalyzer()  # read-only after construction: safe across threads

MAX_SCORED_CHARS = 5_000  # VADER is per-token Python; long mails add cost, not signal


def score(text: str) -> float:
    """Compound sentiment of `text` in [-1, 1] (negative = unhappy)."""
    if not text or not text.strip():
        return 0.0
    value = _analyzer.polarity_scores(text[:MAX_SCORED_CHARS])["compound"]
    return max(-1.0, min(1.0, float(value)))


@dataclass(frozen=True)
class Trend:
    """Rolling sentiment of one customer; update returns a new state (Bytewax-friendly)."""

    mean: float = 0.0
    count: int = 0
    recent: tuple[float, ...] = field(default_factory=tuple)
    alpha: float = 0.4  # weight of the newest message in the moving mean
    window: int = 4  # scores kept to judge direction
    drop: float = 0.5  # fall from the window's first to its last score that counts as falling

    def update(self, value: float) -> Trend:
        value = max(-1.0, min(1.0, float(value)))
        mean = value if self.count == 0 else self.alpha * value + (1 - self.alpha) * self.mean
        recent = (self.recent + (value,))[-self.window:]
        return replace(self, mean=mean, count=self.count + 1, recent=recent)

    @property
    def falling(self) -> bool:
        """At least three messages, each no happier than the one before, ending clearly
        negative and well below where they started."""
        r = self.recent
        if len(r) < 3:
            return False
        monotone = all(b <= a + 0.05 for a, b in pairwise(r))
        return monotone and r[-1] < -0.2 and (r[0] - r[-1]) >= self.drop
