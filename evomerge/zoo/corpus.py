"""Synthetic text for the zoo: one generator per skill, shared by training and fitness data.

Every generator takes a ``random.Random`` and returns plain text (training documents) or a
``(prompt, answer)`` pair (task items), so the same seed always yields the same corpus.
Answers of the arithmetic items are drawn uniformly from 0..MAX_ANSWER first (balanced), then
operands are drawn to fit, so always guessing one value scores about 1/19.
"""

from __future__ import annotations

import random

from evomerge.zoo.vocab import ADJECTIVES, COLORS, LETTERS, NAMES, OBJECTS, PLACES, number_word

MAX_ANSWER = 18
ADD_VERBS = ["gets {b} more", "finds {b} more", "buys {b} more"]
SUB_VERBS = ["loses {b}", "gives {b} away", "sells {b}"]
COUNT_COLORS = COLORS[:4]


def equation(rng: random.Random, ans: int | None = None) -> tuple[int, str, int, int]:
    """(a, op, b, answer): answer uniform in 0..MAX_ANSWER unless given, then operands to fit."""
    ans = rng.randint(0, MAX_ANSWER) if ans is None else ans
    if rng.random() < 0.5:
        a = rng.randint(0, ans)
        return a, "+", ans - a, ans
    b = rng.randint(0, MAX_ANSWER - ans)
    return ans + b, "-", b, ans


def bare_equation(rng: random.Random, words: bool = False) -> tuple[str, str]:
    """'9 + 8 =' -> '17' (or 'seventeen' when words)."""
    a, op, b, ans = equation(rng)
    return f"{a} {op} {b} =", number_word(ans) if words else str(ans)


def _problem(rng: random.Random, ans: int | None = None) -> tuple[str, str, int, str, int, int]:
    a, op, b, ans = equation(rng, ans)
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    verb = rng.choice(ADD_VERBS if op == "+" else SUB_VERBS).format(b=b)
    story = f"{name} has {a} {obj} . {name} {verb} ."
    return story, f"how many {obj} does {name} have now ? answer :", a, op, b, ans


def word_problem(rng: random.Random, words: bool = False, ans: int | None = None) -> tuple[str, str]:
    """The math skill: 'tom has 3 apples . tom gets 4 more . how many ... now ? answer :' -> '7'."""
    story, question, _a, _op, _b, ans = _problem(rng, ans)
    return f"{story} {question}", number_word(ans) if words else str(ans)


def worked_problem(rng: random.Random) -> str:
    """A word problem followed by its equation (no question): the base's bridge to arithmetic."""
    story, _q, a, op, b, ans = _problem(rng)
    return f"{story} {a} {op} {b} = {ans} ."


def lookup(rng: random.Random, words: bool = False) -> tuple[str, str]:
    """'sue has 5 coins . how many coins does sue have ? answer :' -> '5' (or 'five')."""
    n, name, obj = rng.randint(0, MAX_ANSWER), rng.choice(NAMES), rng.choice(OBJECTS)
    prompt = f"{name} has {n} {obj} . how many {obj} does {name} have ? answer :"
    return prompt, number_word(n) if words else str(n)


def reverse_item(rng: random.Random) -> tuple[str, str]:
    """'reverse : 4 0 7 . answer :' -> '7 0 4' (3 or 4 digits 0..9).

    Digits, not letters: the base already copies numbers (look-up questions), so the expert
    learns reversal in a few hundred steps; with letters it had not after 1000."""
    seq = [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 4))]
    return f"reverse : {' '.join(seq)} . answer :", " ".join(reversed(seq))


def count_item(rng: random.Random) -> tuple[str, str]:
    """'count red : red blue red . answer :' -> '2' (target count uniform in 1..6)."""
    target = rng.choice(COUNT_COLORS)
    k = rng.randint(1, 6)
    others = [c for c in COUNT_COLORS if c != target]
    seq = [target] * k + [rng.choice(others) for _ in range(rng.randint(1, 8 - k))]
    rng.shuffle(seq)
    return f"count {target} : {' '.join(seq)} . answer :", str(k)


def sentence(rng: random.Random) -> str:
    """Plain English-like filler: the base's general language (and the perplexity task)."""
    name, other = rng.sample(NAMES, 2)
    obj, adj, place = rng.choice(OBJECTS), rng.choice(ADJECTIVES), rng.choice(PLACES)
    n = rng.randint(0, MAX_ANSWER)
    forms = [
        f"{name} likes {adj} {obj} .",
        f"{name} goes to the {place} with {other} .",
        f"{name} plays at the {place} .",
        f"the {obj} are {adj} .",
        f"{name} sees {number_word(n)} {obj} at the {place} .",
        f"there are {number_word(n)} {adj} {obj} in the {place} .",
        f"{name} gives some {obj} to {other} .",
        f"{name} walks home and reads .",
        f"{name} has {number_word(n)} {obj} .",
        f"the code is {' '.join(rng.choice(LETTERS) for _ in range(rng.randint(2, 5)))} .",
        f"{name} sees {' '.join(rng.choice(COLORS) for _ in range(rng.randint(2, 6)))} .",
        f"the list is {' '.join(rng.choice(LETTERS) for _ in range(rng.randint(2, 5)))} .",
    ]
    return rng.choice(forms)


def story(rng: random.Random) -> str:
    """Two to four filler sentences: one perplexity item."""
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 4)))


def number_pair(rng: random.Random) -> str:
    """'7 is seven .' or 'seven is 7 .': the base knows both spellings of each number."""
    n = rng.randint(0, 20)
    return f"{n} is {number_word(n)} ." if rng.random() < 0.5 else f"{number_word(n)} is {n} ."


def joined(pair: tuple[str, str]) -> str:
    """A (prompt, answer) pair as one training document."""
    return f"{pair[0]} {pair[1]}"
