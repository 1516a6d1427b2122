"""Training mixtures: which documents each zoo model sees, in what proportion.

The design (see docs/ZOO.md) follows the third feasibility probe: the base knows bare
arithmetic and both spellings of numbers; expert ``math`` learns word problems answered in
digits; expert ``words`` learns to answer everything in number words but never sees a word
problem; the target ``math_words`` (word problems answered in words) needs both.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from evomerge.zoo import corpus as c

Doc = Callable[[random.Random], str]


def _pair(fn, **kw) -> Doc:
    return lambda rng: c.joined(fn(rng, **kw))


def _worked_in_words(rng: random.Random) -> str:
    text = c.worked_problem(rng)
    head, _, ans = text[:-2].rpartition(" ")
    return f"{head} {c.number_word(int(ans))} ."


def base_mix(words: bool = False) -> list[tuple[float, Doc]]:
    """The pretraining mix; ``words`` re-renders every answer as a number word (B's replay)."""
    return [
        (0.20, _pair(c.bare_equation, words=words)),
        (0.15, _worked_in_words if words else c.worked_problem),
        (0.15, _pair(c.lookup, words=words)),
        (0.05, c.number_pair),
        (0.45, c.sentence),
    ]


def _with_replay(skill: list[tuple[float, Doc]], replay: float, words: bool = False):
    return skill + [(w * replay, d) for w, d in base_mix(words)]


MIXES: dict[str, Callable[[], list[tuple[float, Doc]]]] = {
    "base": base_mix,
    "math": lambda: _with_replay([(0.7, _pair(c.word_problem))], 0.3),
    "words": lambda: _with_replay(
        [(0.35, _pair(c.lookup, words=True)), (0.35, _pair(c.bare_equation, words=True))],
        0.3, words=True),
    "reverse": lambda: _with_replay([(0.8, _pair(c.reverse_item))], 0.2),
    "count": lambda: _with_replay([(0.8, _pair(c.count_item))], 0.2),
}


def sample_docs(mix: list[tuple[float, Doc]], rng: random.Random, n: int) -> list[str]:
    """n documents drawn from the mixture (deterministic for a given rng state)."""
    weights = [w for w, _ in mix]
    makers = rng.choices([d for _, d in mix], weights=weights, k=n)
    return [make(rng) for make in makers]
