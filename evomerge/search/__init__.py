"""Searchers behind one ask/tell interface (see base.py); pure numpy plus the cmaes package.

``make_searcher(name, space, options, seed)`` builds one by name. Entries are imported lazily so
``import evomerge.search`` stays cheap; a new searcher is one module plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from evomerge.errors import EvomergeError
from evomerge.search.base import Candidate, Outcome, Searcher, SpaceInfo

# name -> "module:Class"
SEARCHERS: dict[str, str] = {
    "cmaes": "evomerge.search.cmaes_searcher:CMAESSearcher",
    "m2n2": "evomerge.search.m2n2:M2N2Searcher",
    "map": "evomerge.search.map:MAPSearcher",
    "random": "evomerge.search.random_search:RandomSearcher",
    "grid": "evomerge.search.random_search:GridSearcher",
}


def make_searcher(name: str, space: SpaceInfo, options: dict[str, Any] | None = None,
                  seed: int = 0) -> Searcher:
    """Build the searcher ``name`` (e.g. ``cmaes``) over ``space`` with validated ``options``."""
    target = SEARCHERS.get(name)
    if target is None:
        raise EvomergeError(f"searcher.name: unknown searcher {name!r} (known: {', '.join(sorted(SEARCHERS))})")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(space, options or {}, seed)


__all__ = ["Candidate", "Outcome", "Searcher", "SpaceInfo", "SEARCHERS", "make_searcher"]
