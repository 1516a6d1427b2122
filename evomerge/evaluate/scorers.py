"""Item scorers: compare one model output with one reference, return a score in [0, 1].

Built-ins are ``exact_match`` and ``regex`` (extract with the task's pattern, then compare);
a task may instead name any function ``(prediction: str, item: dict) -> float`` by dotted path
(``package.module:function`` or ``package.module.function``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from evomerge.errors import ConfigError

Scorer = Callable[[str, dict[str, Any]], float]


def normalize(text: str) -> str:
    """Collapse whitespace and lowercase, so ' Seven ' matches 'seven'."""
    return " ".join(text.split()).lower()


def exact_match(prediction: str, item: dict[str, Any]) -> float:
    """1.0 when the prediction equals the answer after normalization."""
    return float(normalize(prediction) == normalize(str(item["answer"])))


def regex_scorer(pattern: str) -> Scorer:
    """Score the first capture group (or whole match) of pattern against the answer."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"regex: invalid pattern {pattern!r}: {err}") from None

    def score(prediction: str, item: dict[str, Any]) -> float:
        match = compiled.search(prediction)
        if match is None:
            return 0.0
        found = match.group(1) if compiled.groups else match.group(0)
        return float(normalize(found) == normalize(str(item["answer"])))

    return score


def load_scorer(name: str, pattern: str | None = None, where: str = "scorer") -> Scorer:
    """Resolve a scorer name from a task YAML."""
    if name == "exact_match":
        return exact_match
    if name == "regex":
        if not pattern:
            raise ConfigError(f"{where}: scorer 'regex' needs a 'regex' pattern")
        return regex_scorer(pattern)
    module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    if not module or not attr:
        raise ConfigError(f"{where}: unknown scorer {name!r} (exact_match, regex, or module:function)")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{where}: cannot import scorer {name!r}: {err}") from None
    if not callable(fn):
        raise ConfigError(f"{where}: scorer {name!r} is not callable")
    return fn
