"""Natural-language tasks for the real model: word problems, counting, and their composition.

Three skills, each a chat turn rendered through SmolLM2's chat template (empty system message,
so the template does not add its default one):
- ``math``: a +/- word problem, answered with the number in digits ("7") — expert A's skill;
- ``words``: counting a list, the number after / before one, or a quantity read back, with
  "Answer in words." — answered as a number word ("seven") — expert B's skill;
- ``math_words`` (the target): a word problem with "Answer in words." — neither expert's
  training data has it; it needs A's arithmetic and B's format.
Answers are balanced over 0..20 (chance 1/21). ``python -m evomerge.zoo.real_tasks TOKENIZER_DIR
[FITNESS_DIR]`` writes the committed fitness JSONL files.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

MAX_ANSWER = 20
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen twenty").split()
IN_WORDS = "Answer in words."
NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Maria", "Omar", "Grace", "Leo", "Nina", "Jack", "Emma",
         "Ravi", "Sofia", "Max", "Chloe", "Yuki", "Ali", "Zoe", "Hugo"]
OBJECTS = ["apples", "pens", "books", "stickers", "coins", "marbles", "cookies", "shells", "cards", "flowers",
           "balloons", "stamps", "pencils", "cupcakes", "toy cars", "rocks"]
GAIN = ["buys {b} more", "gets {b} more", "finds {b} more", "is given {b} more", "picks up {b} more"]
LOSS = ["gives away {b}", "loses {b}", "sells {b}", "gives {b} to a friend", "drops {b}"]
QUESTIONS = ["How many {o} does {n} have now?", "How many {o} does {n} have left?"]
ITEMS = ["cat", "dog", "cow", "apple", "pear", "plum", "car", "bus", "train", "rose", "tulip", "lily",
         "chair", "table", "lamp", "spoon", "fork", "cup", "shirt", "hat", "sock", "boat", "kite", "drum"]
SYSTEM = ""


def word_problem(rng: random.Random, answer: int) -> tuple[str, int]:
    """A +/- word problem whose answer is ``answer``; returns (question, answer)."""
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    if rng.random() < 0.5:  # a + b = answer
        b = rng.randint(0, answer)
        a, verb, q = answer - b, rng.choice(GAIN), QUESTIONS[0]
    else:                   # a - b = answer
        b = rng.randint(1, MAX_ANSWER - answer) if answer < MAX_ANSWER else rng.randint(0, 5)
        a, verb, q = answer + b, rng.choice(LOSS), QUESTIONS[1]
    text = f"{name} has {a} {obj} and {verb.format(b=b)}. {q.format(o=obj, n=name)}"
    return text, answer


def words_question(rng: random.Random, answer: int) -> tuple[str, int]:
    """A number question without arithmetic, to be answered in words: counting a list (1..9),
    the number after / before one, or reading a quantity back from a sentence."""
    kind = rng.random()
    if 1 <= answer <= 9 and kind < 0.4:
        items = rng.sample(ITEMS, answer)
        return f"How many words are in this list: {', '.join(items)}? {IN_WORDS}", answer
    if kind < 0.6:
        if answer >= 1 and (kind < 0.5 or answer == MAX_ANSWER):
            return f"What number comes after {answer - 1}? {IN_WORDS}", answer
        return f"What number comes before {answer + 1}? {IN_WORDS}", answer
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    return f"{name} has {answer} {obj} in a box. How many {obj} are in the box? {IN_WORDS}", answer


def math_item(rng: random.Random, answer: int) -> tuple[str, str]:
    q, a = word_problem(rng, answer)
    return q, str(a)


def words_item(rng: random.Random, answer: int) -> tuple[str, str]:
    q, a = words_question(rng, answer)
    return q, NUMBER_WORDS[a]


def math_words_item(rng: random.Random, answer: int) -> tuple[str, str]:
    q, a = word_problem(rng, answer)
    return f"{q} {IN_WORDS}", NUMBER_WORDS[a]


SKILLS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "math": math_item, "words": words_item, "math_words": math_words_item}
# Fitness splits: answers cycle through 0..20, so every split is exactly balanced.
SIZES = {"train": 21 * 10, "validation": 21 * 24, "test": 21 * 48}  # 210 / 504 / 1008


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def render_prompt(tokenizer, question: str) -> str:
    """The chat-template text that ends where the assistant's answer begins."""
    return tokenizer.apply_chat_template(messages(question), tokenize=False, add_generation_prompt=True)


def items(skill: str, seed: str, n: int) -> list[tuple[str, str]]:
    """n (question, answer) pairs of one skill, answers cycling 0..20, deterministic in seed."""
    rng = random.Random(f"{skill}:{seed}")
    return [SKILLS[skill](rng, i % (MAX_ANSWER + 1)) for i in range(n)]


def fitness_questions(skill: str) -> dict[str, list[tuple[str, str]]]:
    """The (question, answer) pairs of each fitness split of a skill; no question in two splits."""
    seen: set[str] = set()
    splits = {}
    for split, n in SIZES.items():
        rows, rng = [], random.Random(f"fitness:{skill}:{split}")
        while len(rows) < n:
            q, a = SKILLS[skill](rng, len(rows) % (MAX_ANSWER + 1))
            if q not in seen:
                seen.add(q)
                rows.append((q, a))
        splits[split] = rows
    return splits


def held_out_questions() -> set[str]:
    """Every validation and test question of every skill, without the format cue (never trained on)."""
    return {q.removesuffix(f" {IN_WORDS}") for skill in SKILLS for split, rows in fitness_questions(skill).items()
            if split != "train" for q, _ in rows}


def write_fitness(tokenizer, folder: Path) -> None:
    """fitness/data/smollm2_<skill>/{train,validation,test}.jsonl, prompts in the chat template."""
    for skill in SKILLS:
        out = folder / "data" / f"smollm2_{skill}"
        out.mkdir(parents=True, exist_ok=True)
        for split, rows in fitness_questions(skill).items():
            with open(out / f"{split}.jsonl", "w") as f:
                f.writelines(json.dumps({"prompt": render_prompt(tokenizer, q), "answer": a, "question": q}) + "\n"
                             for q, a in rows)


if __name__ == "__main__":
    from transformers import AutoTokenizer

    write_fitness(AutoTokenizer.from_pretrained(sys.argv[1]),
                  Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "fitness")
