"""Write the zoo tasks' JSONL splits into fitness/data/ from the corpus generators.

Items are deterministic in (task, split), arithmetic answers are exactly balanced (the answer
cycles through 0..MAX_ANSWER), and no prompt appears in two splits of one task.
``python -m evomerge.zoo.fitness_data [DIR]`` regenerates the committed files.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evomerge.zoo import corpus as c

SIZES = {"train": 200, "validation": 500, "test": 1000}
BALANCED = {"train": 19 * 11, "validation": 19 * 53, "test": 19 * 105}  # 209 / 1007 / 1995


def _arith(words: bool) -> Callable[[random.Random, int], dict[str, Any]]:
    def make(rng: random.Random, i: int) -> dict[str, Any]:
        prompt, answer = c.word_problem(rng, words=words, ans=i % (c.MAX_ANSWER + 1))
        return {"prompt": prompt, "answer": answer}
    return make


def _words(rng: random.Random, i: int) -> dict[str, Any]:
    prompt, answer = (c.bare_equation if i % 4 == 0 else c.lookup)(rng, words=True)
    return {"prompt": prompt, "answer": answer}


def _pair(fn) -> Callable[[random.Random, int], dict[str, Any]]:
    return lambda rng, i: dict(zip(("prompt", "answer"), fn(rng)))


def _count(rng: random.Random, i: int) -> dict[str, Any]:
    prompt, answer = c.count_item(rng)
    return {"prompt": prompt, "choices": [str(k) for k in range(1, 7)], "answer": int(answer) - 1}


def _story(rng: random.Random, i: int) -> dict[str, Any]:
    return {"text": c.story(rng)}


# task -> (item maker, sizes per split)
TASKS: dict[str, tuple[Callable[[random.Random, int], dict[str, Any]], dict[str, int]]] = {
    "math": (_arith(False), BALANCED),
    "math_words": (_arith(True), BALANCED),
    "words": (_words, {"train": 100, "validation": 300, "test": 600}),  # only 380 distinct equations
    "reverse": (_pair(c.reverse_item), SIZES),
    "count": (_count, SIZES),
    "story_ppl": (_story, {"train": 100, "validation": 300, "test": 500}),
}


def task_items(task: str) -> dict[str, list[dict[str, Any]]]:
    """All splits of one task, deduplicated across splits (test first, then validation, train)."""
    make, sizes = TASKS[task]
    seen: set[str] = set()
    splits: dict[str, list[dict[str, Any]]] = {}
    for split in ("test", "validation", "train"):
        rng, items, i = random.Random(f"fitness:{task}:{split}"), [], 0
        while len(items) < sizes[split]:
            item = make(rng, i)
            key = item.get("prompt", item.get("text"))
            if key not in seen:
                seen.add(key)
                items.append(item)
                i += 1
        splits[split] = items
    return splits


def write_all(root: Path) -> None:
    """Write root/<task>/<split>.jsonl for every task."""
    for task in TASKS:
        for split, items in task_items(task).items():
            path = root / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(it) + "\n" for it in items))


if __name__ == "__main__":
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("fitness/data"))
