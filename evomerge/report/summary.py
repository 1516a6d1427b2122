"""One-line, human-readable summaries of recipes (stored as plain dicts) for tables and hovers."""

from __future__ import annotations

from typing import Any


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.3g}"


def _value(v: Any) -> str:
    """A parameter value: number, gradient list, or per-group mapping, kept short."""
    if isinstance(v, list):
        if len(v) <= 3:
            return "[" + ",".join(_num(x) for x in v) + "]"
        return f"[{_num(v[0])}..{_num(v[-1])}]x{len(v)}"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    return _num(v)


def _model_name(ref: Any) -> str:
    text = str(ref)
    if text.startswith("zoo:"):
        return text[4:]
    return text.rstrip("/").rsplit("/", 1)[-1] or text


_ABBREV = {"weight": "w", "density": "d", "t": "t", "gamma": "g", "epsilon": "e"}


def _parameter(recipe: dict[str, Any]) -> str:
    parts = [str(recipe.get("method", "?"))]
    globals_ = recipe.get("parameters") or {}
    if globals_:
        parts.append(" ".join(f"{k}={_value(v)}" for k, v in globals_.items() if v not in (None, False)))
    for src in recipe.get("sources") or []:
        params = src.get("parameters") or {}
        knobs = " ".join(f"{_ABBREV.get(k, k)}={_value(v)}" for k, v in params.items())
        parts.append(f"{_model_name(src.get('model', '?'))}({knobs})" if knobs else _model_name(src.get("model", "?")))
    if recipe.get("base"):
        parts.append(f"base={_model_name(recipe['base'])}")
    return " ".join(p for p in parts if p)


def _source_label(src: dict[str, Any]) -> str:
    if "recipe" in src:
        return "[" + _parameter(src["recipe"]) + "]"
    return _model_name(src.get("model", "?"))


def _dataflow(recipe: dict[str, Any]) -> str:
    layers = recipe.get("layers") or []
    sources = [_source_label(s) for s in recipe.get("sources") or []]
    runs: list[str] = []  # consecutive layers of one source collapse to "s:a-b"
    i = 0
    while i < len(layers):
        j = i
        src = layers[i].get("source")
        while (j + 1 < len(layers) and layers[j + 1].get("source") == src
               and layers[j + 1].get("layer") == layers[j].get("layer") + 1
               and float(layers[j + 1].get("scale", 1.0)) == 1.0):
            j += 1
        a, b = layers[i].get("layer"), layers[j].get("layer")
        scale = float(layers[i].get("scale", 1.0))
        runs.append(f"{src}:{a}" + (f"-{b}" if j > i else "") + (f"*{scale:.3g}" if scale != 1.0 else ""))
        i = j + 1
    hybrid = any("recipe" in s for s in recipe.get("sources") or [])
    kind = "hybrid" if hybrid else "dataflow"
    names = ", ".join(f"{k}={n}" for k, n in enumerate(sources))
    return f"{kind} {len(layers)} layers [{' '.join(runs)}] over {names}"


def recipe_summary(recipe: dict[str, Any]) -> str:
    """E.g. ``ties lambda=1 math(w=1 d=0.5) words(w=0.8 d=0.7) base=base`` or
    ``dataflow 6 layers [0:0-3 1:2*0.8 1:3] over 0=math, 1=words``."""
    if not recipe:
        return "(no recipe)"
    if recipe.get("kind", "parameter") == "dataflow":
        return _dataflow(recipe)
    return _parameter(recipe)
