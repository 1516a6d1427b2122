"""mergekit configs <-> evomerge recipes.

`from_mergekit` reads a mergekit YAML (as a dict) into our Recipe with mergekit 0.1.5's
meaning: `dtype` as the compute dtype and `out_dtype` as the output, parameter fallbacks
(model -> slice -> module -> global -> default), gradient lists over depth, `filter`
conditions that claim whole layer groups on the models' tensor names, `slices` that merge
aligned layer ranges (-> per-layer values) or stack single-model slices with `passthrough`
(-> a data-flow recipe: ends from two models, `scale` per module), `modules:` of decoder-only
models, and the `union` tokenizer over one shared vocabulary. Anything else is refused with
one line naming it; never a silently different merge. `to_mergekit` writes a parameter
recipe, or a data-flow path mergekit can express, as a mergekit config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evomerge.config_io import read_yaml
from evomerge.errors import ConfigError, EvomergeError
from evomerge.ops import METHODS, get_method
from evomerge.ops.layered import GROUPS, evaluate, interpolate, tensor_group
from evomerge.recipe import DTYPES, DataflowRecipe, ParameterRecipe, Recipe, load_recipe, parse_recipe
from evomerge.vocab import first_difference
from evomerge.zoo import resolve_model_ref

TOP_KEYS = {"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
            "tokenizer_source", "tokenizer", "modules"}
FILTERS = {"self_attn": "attn", "mlp": "mlp", "embed_tokens": "embed", "lm_head": "head", "layernorm": "layernorm",
           "norm": "norm"}
GROUP_FILTERS = {v: k for k, v in FILTERS.items()}
# a tensor of each group, to read per-slice values at
PROBES = {"attn": "model.layers.0.self_attn.q_proj.weight", "mlp": "model.layers.0.mlp.up_proj.weight",
          "layernorm": "model.layers.0.input_layernorm.weight", "norm": "model.norm.weight",
          "embed": "model.embed_tokens.weight", "head": "lm_head.weight"}
DROPPED = {"int8_mask"}  # changes only the mask's storage type, not the result
INERT = {"task_arithmetic": {"density"}}  # accepted by mergekit 0.1.5 without any effect
SUPPORTED = sorted(set(METHODS) | {"passthrough"})


def _err(source: str, where: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {what}")


# ---- values --------------------------------------------------------------------------------


class _Names:
    """The tensor names of the config's first model, read on first need (any filter beyond the
    known ones is checked against them)."""

    def __init__(self, ref: str | None) -> None:
        self.ref, self._groups = ref, None

    def coverage(self, f: str) -> dict[str, bool]:
        """Layer group -> True if filter `f` matches all of the group's tensors, False if only
        some; groups it matches nothing of are absent."""
        if self._groups is None:
            from evomerge.engine.reader import CheckpointReader

            names = CheckpointReader(resolve_model_ref(self.ref)).names if self.ref else []
            self._groups = {g: [n for n in names if tensor_group(n) == g] for g in GROUPS}
        return {g: all(f in n for n in ns) for g, ns in self._groups.items() if any(f in n for n in ns)}


def _coverage(f: str, names: _Names | None) -> dict[str, bool]:
    if f in FILTERS:  # by the groups' own definitions ("norm" also matches the layers' norms)
        return {FILTERS[f]: True, **({"layernorm": True} if f == "norm" else {})}
    return names.coverage(f) if names is not None else {}


def _value(v: Any, where: str, src: str, names: _Names | None = None) -> Any:
    """A mergekit parameter setting as our parameter value (number, gradient, group mapping).

    A filter list becomes a group mapping when, on the model's tensor names, every filter
    either claims whole layer groups or only groups an earlier filter already claimed
    (mergekit takes the first match); a filter that splits a group is refused."""
    if isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return list(v)
    if isinstance(v, dict) and "value" in v:
        v = [v]
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        groups: dict[str, Any] = {}
        for i, cond in enumerate(v):
            extra = set(cond) - {"filter", "value"}
            if extra:
                raise _err(src, f"{where}[{i}]", f"unknown key {sorted(extra)[0]!r}")
            f = cond.get("filter")
            inner = _value(cond.get("value"), f"{where}[{i}].value", src)
            if isinstance(inner, dict) or isinstance(inner, bool):
                raise _err(src, f"{where}[{i}].value", "must be a number or a list of numbers")
            if f in (None, "*"):
                groups.setdefault("default", inner)
                break  # mergekit takes the first match: later entries are unreachable
            if not isinstance(f, str) or not f:
                raise _err(src, f"{where}[{i}].filter", f"{f!r} is not a substring of tensor names")
            for group, whole in _coverage(f, names).items():
                if group in groups:
                    continue  # claimed by an earlier filter
                if not whole:
                    raise _err(src, f"{where}[{i}].filter", f"{f!r} matches only some tensors of the {group} group; "
                                                            f"evomerge sets one value per group ({', '.join(GROUPS)})")
                groups[group] = inner
        if "norm" in groups and "layernorm" not in groups:  # the layers' norms must not inherit the final norm's
            if "default" not in groups:
                raise _err(src, where, "a filter sets the final norm but not the layers' norms, with no catch-all "
                                       "after it; add {value: ...} at the end")
            groups["layernorm"] = groups["default"]
        return groups
    raise _err(src, where, f"{v!r} is not a supported parameter setting")


def _params(raw: Any, where: str, src: str, names: _Names | None = None) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(src, where, "expected a mapping")
    out = {}
    for k, v in raw.items():
        if k in DROPPED:
            continue
        val = _value(v, f"{where}.{k}", src, names)
        if k == "rescale":
            if not isinstance(val, bool):
                raise _err(src, f"{where}.rescale", "must be true or false")
            val = "l1" if val else "none"  # mergekit rescales to match the L1 norm
        out[k] = val
    return out


def _model(ref: Any, where: str, src: str, folder: Path | None) -> str:
    """A local model directory (absolute); remote hub names and LoRA suffixes are refused."""
    if not isinstance(ref, str) or not ref:
        raise _err(src, where, f"{ref!r} is not a model reference")
    if "+" in ref:
        raise _err(src, where, f"{ref!r}: LoRA references (model+lora) are not supported")
    p = Path(ref).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p] + ([folder / p] if folder else [])
    for c in candidates:
        if c.is_dir():
            return str(c.resolve())
    if ref.startswith("zoo:"):
        return ref
    raise _err(src, where, f"{ref!r} is not a local model directory (remote references are not supported)")


# ---- reading ---------------------------------------------------------------------------------


def from_mergekit(data: Any, path: Path | None = None) -> Recipe:
    """Our recipe for a mergekit config dict (`path` names the file in errors).

    mergekit's `dtype` is the compute dtype (every input cast to it, the arithmetic in it;
    unset: the dtype the models are stored in) and becomes `compute_dtype`; `out_dtype`
    (default: `dtype`) becomes `dtype`, the output."""
    src = str(path) if path else "mergekit config"
    if isinstance(data, dict):  # mergekit also accepts "torch.bfloat16"
        data = {k: (v.removeprefix("torch.") if k in ("dtype", "out_dtype") and isinstance(v, str) else v)
                for k, v in data.items()}
    recipe = _read(data, path, src)
    compute = _compute_dtype(data, recipe, src)
    return recipe.model_copy(update={"compute_dtype": compute}) if compute != "float32" else recipe


def _compute_dtype(data: dict, recipe: Recipe, src: str) -> str:
    """mergekit's `dtype`, or the one dtype every input model is stored in when it is unset."""
    for key in ("dtype", "out_dtype"):
        if data.get(key) is not None and data[key] not in DTYPES:
            raise _err(src, key, f"{data[key]!r} is not one of {', '.join(DTYPES)}")
    if data.get("dtype"):
        return data["dtype"]
    from evomerge.engine.reader import CheckpointReader

    refs = recipe.model_refs() if isinstance(recipe, ParameterRecipe) else [s.model for s in recipe.sources]
    stored = set()
    for ref in dict.fromkeys(refs):
        r = CheckpointReader(resolve_model_ref(ref))
        stored |= {str(r.dtype(n)).removeprefix("torch.") for n in r.names if r.dtype(n).is_floating_point}
    if len(stored) != 1 or not stored <= set(DTYPES):
        raise _err(src, "dtype", f"not set and the models are stored in {', '.join(sorted(stored))}; "
                                 "set the dtype to compute in")
    return stored.pop()


def _read(data: Any, path: Path | None, src: str) -> Recipe:
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping at top level")
    if "modules" in data:
        data = _unwrap_module(data, src)
    if data.get("merge_method") in INERT:
        data = _without(data, INERT[data["merge_method"]])
    for k in data:
        if k not in TOP_KEYS:
            raise _err(src, k, "this mergekit option is not supported")
    method = data.get("merge_method")
    if method not in SUPPORTED:
        raise _err(src, "merge_method", f"{method!r} is not supported (supported: {', '.join(SUPPORTED)})")
    if bool(data.get("models")) == bool(data.get("slices")):
        raise _err(src, "models", "give exactly one of 'models' or 'slices'")
    folder = path.resolve().parent if path else None
    base = _model(data["base_model"], "base_model", src, folder) if data.get("base_model") else None
    dtype = data.get("out_dtype") or data.get("dtype")
    if data.get("slices") and method == "passthrough":
        return _stack_slices(data, src, folder, dtype)
    names = _Names(base or _first_model(data, folder))
    glob = _params(data.get("parameters"), "parameters", src, names)
    if method in ("dare_linear", "dare_ties", "della", "della_linear"):
        glob.setdefault("rescale", "l1")  # mergekit's default (ours is the papers' 1/keep probability)
    if data.get("slices"):
        models, per_layer = _merge_slices(data, method, base, glob, src, folder, names)
        sources = [{"model": m, "parameters": per_layer[m]} for m in models]
        glob = per_layer.get(None, {})
    else:
        sources = []
        for i, m in enumerate(data["models"]):
            if not isinstance(m, dict) or "model" not in m:
                raise _err(src, f"models[{i}]", "expected a mapping with 'model'")
            extra = set(m) - {"model", "parameters"}
            if extra:
                raise _err(src, f"models[{i}].{sorted(extra)[0]}", "not supported")
            ref = _model(m["model"], f"models[{i}].model", src, folder)
            sources.append({"model": ref, "parameters": _params(m.get("parameters"), f"models[{i}].parameters", src, names)})
    return _assemble(data, method, base, sources, glob, dtype, src, folder)


def _first_model(data: dict, folder: Path | None) -> str | None:
    """The first model the config names (whose tensor names filters are checked against), or
    None when the config is malformed there (reported by the reading itself)."""
    try:
        first = data["models"][0]["model"] if data.get("models") else data["slices"][0]["sources"][0]["model"]
        return _model(first, "models[0]", "", folder)
    except (ConfigError, KeyError, IndexError, TypeError):
        return None


def _assemble(data, method, base, sources, glob, dtype, src, folder) -> Recipe:
    if method == "passthrough":
        if len(sources) != 1 or sources[0]["parameters"] or glob:
            raise _err(src, "models", "passthrough copies exactly one model without parameters")
        method, base, glob = "linear", None, {}
        sources[0]["parameters"] = {"weight": 1.0}
    spec = get_method(method)
    others = [s for s in sources if s["model"] != base]
    if not spec.needs_base and not spec.base_optional and base is not None:
        if len(others) == len(sources):
            raise _err(src, "base_model", f"{method} with a base_model outside 'models' is not supported")
        base = None
        others = sources
    if spec.needs_base or method == "slerp":
        if base is None:
            raise _err(src, "base_model", f"required by {method}")
        if method == "slerp" and len(others) != 1:
            raise _err(src, "models", "slerp needs the base and exactly one other model")
    if spec.param("epsilon") is not None and spec.sparsify:  # DELLA: mergekit refuses p outside (0, 1)
        for s in others:
            d, e = (s["parameters"].get(k, glob.get(k, spec.param(k).default)) for k in ("density", "epsilon"))
            if all(isinstance(v, (int, float)) for v in (d, e)) and 0 < d < 1 and not (0 < d - e and d + e < 1):
                raise _err(src, "parameters", f"{s['model']}: density {d} +/- epsilon {e} must lie inside (0, 1) "
                                              "(mergekit refuses it too)")
    tok, where = _tokenizer_source(data, src)
    if tok == "union":
        tok = _union(where, base, [s["model"] for s in others], src)
    if tok is not None and tok != "base":
        ref = _model(tok, where, src, folder)
        idx = [s["model"] for s in others].index(ref) if ref in [s["model"] for s in others] else None
        if idx is None and ref != base:
            raise _err(src, where, f"{tok!r} is not one of the merged models")
        tok = "base" if idx is None else idx
    recipe = {"kind": "parameter", "method": method, "base": base if method != "linear" else None,
              "sources": others, "parameters": glob, "dtype": dtype, "tokenizer_source": tok}
    return parse_recipe(recipe, src)


def _without(data: Any, keys: set[str]) -> Any:
    """A copy of the config with `keys` removed from every `parameters` mapping."""
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    if not isinstance(data, dict):
        return data
    return {k: ({p: x for p, x in v.items() if p not in keys} if k == "parameters" and isinstance(v, dict)
                else _without(v, keys)) for k, v in data.items()}


def _as_conditions(setting: Any) -> list:
    """A mergekit parameter setting as a list of {filter, value} conditions (first match wins)."""
    if isinstance(setting, dict):
        return [setting]
    if isinstance(setting, list) and setting and all(isinstance(c, dict) for c in setting):
        return list(setting)
    return [{"value": setting}]


def _unwrap_module(data: dict, src: str) -> dict:
    """`modules:` with the one module of a decoder-only model ("default") as a plain config.
    The module's parameters take precedence over the global ones, falling through to them
    where no filter matches (mergekit's order): concatenated condition lists say exactly that."""
    modules = data["modules"]
    if not isinstance(modules, dict) or set(modules) != {"default"}:
        names = ", ".join(map(str, modules)) if isinstance(modules, dict) else repr(modules)
        raise _err(src, "modules", f"evomerge reads the single module of decoder-only models ('default'), got {names}")
    module = modules["default"]
    if not isinstance(module, dict):
        raise _err(src, "modules.default", "expected a mapping")
    for key in module:
        if key not in ("models", "slices", "parameters"):
            raise _err(src, f"modules.default.{key}", "unknown key")
    if data.get("models") or data.get("slices"):
        raise _err(src, "modules", "give models/slices either at top level or in modules, not both")
    glob = dict(data.get("parameters") or {})
    for key, setting in (module.get("parameters") or {}).items():
        glob[key] = _as_conditions(setting) + (_as_conditions(glob[key]) if key in glob else [])
    out = {k: v for k, v in data.items() if k != "modules"}
    out.update({k: module[k] for k in ("models", "slices") if k in module})
    if glob:
        out["parameters"] = glob
    return out


def _tokenizer_source(data: dict, src: str) -> tuple[Any, str]:
    """(source, the key it came from): `tokenizer_source`, or the `tokenizer:` block's `source`
    (mergekit's default there: union). Per-token embedding sources and padding are refused."""
    block = data.get("tokenizer")
    if block is None:
        return data.get("tokenizer_source"), "tokenizer_source"
    if data.get("tokenizer_source") is not None:
        raise _err(src, "tokenizer", "give either tokenizer_source or a tokenizer block, not both")
    if not isinstance(block, dict):
        raise _err(src, "tokenizer", "expected a mapping")
    for key in block:
        if key == "tokens":
            raise _err(src, "tokenizer.tokens", "per-token embedding sources are not supported")
        if key == "pad_to_multiple_of":
            raise _err(src, "tokenizer.pad_to_multiple_of", "padding the vocabulary is not supported")
        if key != "source":
            raise _err(src, f"tokenizer.{key}", "unknown key")
    return block.get("source", "union"), "tokenizer.source"


def _union(where: str, base: str | None, models: list[str], src: str) -> str:
    """mergekit's vocabulary union: the base's (else the first model's) tokenizer when every
    model has the same vocabulary; refused otherwise, naming the first difference."""
    diff = first_difference([resolve_model_ref(m) for m in ([base] if base else []) + models])
    if diff:
        raise _err(src, where, f"'union' needs a vocabulary union and {diff}; evomerge merges models "
                               "with one vocabulary (set it to one of the models)")
    return "base" if base else models[0]


def _position(start: int, end: int, layer: int) -> float:
    """Where a layer sits in its slice, for gradients (mergekit: 0 first, 1 last; 1 alone)."""
    return (layer - start) / (end - start - 1) if end - start > 1 else 1.0


def _slice_sources(sl: dict, i: int, src: str, folder, names: _Names | None = None,
                   convert: bool = True) -> list[tuple[str, tuple[int, int], dict]]:
    if not isinstance(sl, dict) or "sources" not in sl:
        raise _err(src, f"slices[{i}]", "expected a mapping with 'sources'")
    extra = set(sl) - {"sources", "base_model", "parameters", "residual_weight"}  # the last: unused by mergekit 0.1.5
    if extra:
        raise _err(src, f"slices[{i}].{sorted(extra)[0]}", "not supported")
    out = []
    for j, s in enumerate(sl["sources"]):
        where = f"slices[{i}].sources[{j}]"
        extra = set(s) - {"model", "layer_range", "parameters"}
        if extra:
            raise _err(src, f"{where}.{sorted(extra)[0]}", "not supported")
        lr = s.get("layer_range")
        if not (isinstance(lr, list) and len(lr) == 2 and all(isinstance(x, int) for x in lr) and 0 <= lr[0] < lr[1]):
            raise _err(src, f"{where}.layer_range", f"{lr!r} is not [start, end) with 0 <= start < end")
        out.append((_model(s.get("model"), f"{where}.model", src, folder), tuple(lr),
                    _params(s.get("parameters"), f"{where}.parameters", src, names) if convert else {}))
    return out


def _stack_slices(data, src, folder, dtype) -> DataflowRecipe:
    """passthrough slices of one model each -> a data-flow path (layer stacking). Embeddings
    come from the first slice's model, final norm and head from the last one's; a `scale`
    becomes the hop's tensor_scale, resolved per layer (slice source -> slice -> global)."""
    models: list[str] = []
    hops = []
    glob = data.get("parameters") or {}
    slices = data["slices"]
    for i, sl in enumerate(slices):
        ss = _slice_sources(sl, i, src, folder, convert=False)  # scale filters are read below
        if len(ss) != 1:
            raise _err(src, f"slices[{i}].sources", "passthrough slices take exactly one source")
        ref, (a, b), _ = ss[0]
        scopes = [(f"slices[{i}].sources[0].parameters", sl["sources"][0].get("parameters") or {}),
                  (f"slices[{i}].parameters", sl.get("parameters") or {}), ("parameters", glob)]
        for where, scope in scopes:
            for key in scope:
                if key != "scale":
                    raise _err(src, f"{where}.{key}", "passthrough takes only a scale")
        if ref not in models:
            models.append(ref)
        for layer in range(a, b):
            t = _position(a, b, layer)
            hop = {"source": models.index(ref), "layer": layer, "scale": 1.0}
            factors = _scale_filters(scopes, t, src)
            hops.append({**hop, "tensor_scale": factors} if factors else hop)
        for tensor in (["model.embed_tokens.weight"] if i == 0 else []) + (
                ["model.norm.weight", "lm_head.weight"] if i == len(slices) - 1 else []):
            if _factor(_scale_filters(scopes, 0.0, src), tensor) != 1.0:
                raise _err(src, f"slices[{i}].parameters.scale", f"scaling {tensor} is not supported "
                                                                 "(only the layers' tensors)")
    ends = [_model(slices[k]["sources"][0]["model"], f"slices[{k}]", src, folder) for k in (0, -1)]
    recipe = {"kind": "dataflow", "sources": [{"model": m} for m in models], "embeddings_from": 0,
              "layers": hops, "dtype": dtype}
    if ends[1] != ends[0]:
        recipe["head_from"] = models.index(ends[1])
    return parse_recipe(recipe, src)


def _scale_filters(scopes, t: float, src: str) -> dict[str, float]:
    """mergekit's `scale` settings over the scopes, in precedence order, as one ordered
    {substring: factor} mapping (first match wins; '*' matches all); {} when all are 1."""
    out: dict[str, float] = {}
    for where, scope in scopes:
        if "scale" not in scope:
            continue
        for j, cond in enumerate(_as_conditions(scope["scale"])):
            f = cond.get("filter") or "*"
            if "layers." in f:
                raise _err(src, f"{where}.scale[{j}].filter", f"{f!r}: filters on layer numbers are not supported")
            v = _value(cond.get("value"), f"{where}.scale[{j}].value", src)
            if isinstance(v, (dict, bool)) or v is None:
                raise _err(src, f"{where}.scale[{j}].value", "must be a number or a list of numbers")
            out.setdefault(f, interpolate([float(x) for x in v], t) if isinstance(v, list) else float(v))
            if f == "*":
                return out if any(x != 1.0 for x in out.values()) else {}
    return out if any(x != 1.0 for x in out.values()) else {}


def _factor(filters: dict[str, float], tensor: str) -> float:
    return next((f for key, f in filters.items() if key == "*" or key in tensor), 1.0)


@dataclass(frozen=True)
class Slice:
    """One aligned slice of a mergekit config: layers [start, end) of every model, with the
    parameters set on each of its sources (by model reference) and on the slice itself."""

    start: int
    end: int
    source_params: dict[str, dict[str, Any]]
    params: dict[str, Any]

    @property
    def layers(self) -> range:
        return range(self.start, self.end)


def _aligned_slices(data, base, src, folder, names: _Names | None) -> tuple[list[str], list[Slice]]:
    """The models merged (base aside, in order) and the slices, which must be aligned: every
    model contributes its own layers [a, b), and the slices tile 0..L in order."""
    slices: list[Slice] = []
    models: list[str] | None = None
    expect = 0
    for i, sl in enumerate(data["slices"]):
        ss = _slice_sources(sl, i, src, folder, names)
        if sl.get("base_model") and _model(sl["base_model"], f"slices[{i}].base_model", src, folder) != base:
            raise _err(src, f"slices[{i}].base_model", "a per-slice base model is not supported")
        ranges = {lr for _, lr, _ in ss}
        if len(ranges) != 1 or next(iter(ranges))[0] != expect:
            raise _err(src, f"slices[{i}]", "only aligned slices are supported (every model's layer_range "
                                            "equal and following the previous slice): a recipe merges layer i "
                                            "of each model with layer i of the others")
        these = [ref for ref, _, _ in ss if ref != base]
        if models is None:
            models = these
        elif these != models:
            raise _err(src, f"slices[{i}].sources", "every slice must merge the same models in the same order")
        a, expect = next(iter(ranges))
        slices.append(Slice(a, expect, {ref: p for ref, _, p in ss},
                            _params(sl.get("parameters"), f"slices[{i}].parameters", src, names)))
    return models or [], slices


def _lookup(key: str, owner: str | None, sl: Slice, glob: dict, tensor: str, t: float) -> Any:
    """mergekit's precedence for one tensor: slice source -> slice -> global (None: unset)."""
    scopes = ([sl.source_params.get(owner, {})] if owner is not None else []) + [sl.params, glob]
    for scope in scopes:
        if key in scope:
            v = evaluate(scope[key], tensor_group(tensor), t)
            if v is not None:
                return v
    return None


def _per_group(key: str, owner: str | None, default: Any, slices: list[Slice], glob: dict) -> dict[str, list]:
    """One parameter's values across the slices: per layer for attn, mlp and layernorm; the
    embeddings as the first slice reads them, final norm and head as the last one does."""
    def value(sl: Slice, group: str, t: float) -> Any:
        v = _lookup(key, owner, sl, glob, PROBES[group], t)
        return default if v is None else v

    per_group = {g: [value(sl, g, _position(sl.start, sl.end, layer)) for sl in slices for layer in sl.layers]
                 for g in ("attn", "mlp", "layernorm")}
    per_group["embed"] = [value(slices[0], "embed", 0.0)]
    per_group["head"] = [value(slices[-1], "head", 0.0)]
    per_group["norm"] = [value(slices[-1], "norm", 0.0)]
    return per_group


def _merge_slices(data, method, base, glob, src, folder, names: _Names | None = None):
    """Aligned slices -> per-layer parameter lists. Returns (models, {model or None (global):
    parameters})."""
    spec = get_method(method) if method in METHODS else None
    models, slices = _aligned_slices(data, base, src, folder, names)
    out: dict[Any, dict[str, Any]] = {m: {} for m in models}
    out[None] = {}
    for pdef in spec.params if spec else ():
        for owner in models if pdef.scope == "source" else [None]:
            per_group = _per_group(pdef.name, owner, pdef.default, slices, glob)
            values = [v for vs in per_group.values() for v in vs]
            if any(v is None for v in values):
                raise _err(src, f"slices.parameters.{pdef.name}", "required but not set for every layer")
            if not pdef.layered and len({str(v) for v in values}) > 1:
                raise _err(src, f"slices.parameters.{pdef.name}", "differs between slices; evomerge takes one value")
            if values and any(v != pdef.default for v in values):
                out[owner][pdef.name] = _compact(per_group, slices[-1].end)
    return models, out


def _compact(per_group: dict[str, list], n_layers: int) -> Any:
    """Per-layer values per group as the smallest equivalent recipe value."""
    def small(vals):
        if isinstance(vals[0], (bool, str)):
            return vals[0]
        return vals[0] if all(v == vals[0] for v in vals) else vals

    groups = {g: small(v) for g, v in per_group.items()}
    if isinstance(next(iter(groups.values())), (bool, str)):
        return groups["attn"]
    if all(g == groups["attn"] for g in groups.values()) and not isinstance(groups["attn"], list):
        return groups["attn"]
    return groups


# ---- writing ---------------------------------------------------------------------------------


def _setting(v: Any) -> Any:
    """Our parameter value as a mergekit setting (group mapping -> filter list)."""
    if isinstance(v, dict):
        conds = [{"filter": GROUP_FILTERS[g], "value": v[g]} for g in GROUPS if g in v and g != "default"]
        if "default" in v:
            conds.append({"value": v["default"]})
        return conds
    return v


def to_mergekit(recipe: Recipe) -> dict[str, Any]:
    """A mergekit 0.1.5 config (a dict; dump with yaml.safe_dump) for a parameter recipe.

    Only what the recipe sets is written (the defaults agree), plus `weight: 1.0` where
    mergekit requires a weight and `dtype` (the recipe's compute dtype, float32 unless set) with
    `out_dtype` (the recipe's `dtype`). Model
    references become local paths. A data-flow recipe becomes passthrough slices when mergekit
    can express it (see `_dataflow_to_mergekit`). Raises ConfigError for what mergekit cannot
    express, e.g. DARE's 1/density rescale (mergekit rescales by the L1 norm)."""
    if not isinstance(recipe, ParameterRecipe):
        return _dataflow_to_mergekit(recipe)
    spec = get_method(recipe.method)
    rescale = recipe.parameters.get("rescale", spec.param("rescale").default if spec.param("rescale") else None)
    if spec.sparsify in ("random", "magnitude_rank") and rescale == "inverse_density":
        raise ConfigError("parameters.rescale: 'inverse_density' (DARE's / DELLA's 1/keep probability) has no "
                          "mergekit equivalent; "
                          "set rescale: l1 (mergekit's) or none")
    glob = {k: (v == "l1" if k == "rescale" else _setting(v)) for k, v in recipe.parameters.items()}
    models = []
    for s in recipe.sources:
        params = {k: _setting(v) for k, v in s.parameters.items()}
        if spec.param("weight") and "weight" not in params and "weight" not in glob:
            params["weight"] = 1.0  # required by mergekit, our default
        models.append({"model": str(resolve_model_ref(s.model)), **({"parameters": params} if params else {})})
    out: dict[str, Any] = {"merge_method": recipe.method}
    if recipe.base:
        out["base_model"] = str(resolve_model_ref(recipe.base))
    elif recipe.method == "slerp":  # mergekit's slerp goes from its base_model (t=0) to the other
        out["base_model"] = models[0]["model"]
    out["models"] = models
    if glob:
        out["parameters"] = glob
    out.update(_dtypes(recipe))
    ts = recipe.tokenizer_source
    if ts == "base":
        out["tokenizer_source"] = "base"
    elif isinstance(ts, int):
        out["tokenizer_source"] = models[ts]["model"]
    elif ts is not None:
        out["tokenizer_source"] = str(resolve_model_ref(ts))
    return out


def _dtypes(recipe: Recipe) -> dict[str, str]:
    """mergekit's dtype (our compute dtype; float32 when unset) and out_dtype (our dtype; when
    unset, the dtype the first model is stored in, which is what our merge writes, where mergekit
    would write its compute dtype)."""
    out = recipe.dtype or _stored_dtype(recipe)
    return {"dtype": recipe.compute_dtype or "float32", **({"out_dtype": out} if out else {})}


def _stored_dtype(recipe: Recipe) -> str | None:
    """The floating dtype the recipe's first model is stored in, or None when it cannot be read."""
    from evomerge.engine.reader import CheckpointReader

    refs = recipe.model_refs() if isinstance(recipe, ParameterRecipe) else [s.model for s in recipe.sources if s.model]
    try:
        reader = CheckpointReader(resolve_model_ref(refs[0]))
    except (EvomergeError, IndexError):
        return None
    dtype = next((str(reader.dtype(n)).removeprefix("torch.") for n in reader.names if reader.dtype(n).is_floating_point),
                 None)
    return dtype if dtype in DTYPES else None


def _dataflow_to_mergekit(recipe: DataflowRecipe) -> dict[str, Any]:
    """Passthrough slices for a data-flow path: runs of consecutive layers of one model with the
    same tensor_scale become one slice. Refused: inline parameter recipes (hybrid), hidden-state
    scales, and ends that mergekit would take elsewhere (it takes the embeddings from the first
    slice's model, the final norm and head from the last one's, and applies a slice's `scale`
    to them too)."""
    if any(s.recipe is not None for s in recipe.sources):
        raise ConfigError("sources: inline parameter recipes (hybrid paths) have no mergekit equivalent")
    bad = next((i for i, h in enumerate(recipe.layers) if h.scale != 1.0), None)
    if bad is not None:
        raise ConfigError(f"layers[{bad}].scale: hidden-state scales have no mergekit equivalent")
    head = recipe.embeddings_from if recipe.head_from is None else recipe.head_from
    if recipe.layers[0].source != recipe.embeddings_from or recipe.layers[-1].source != head:
        raise ConfigError("embeddings_from: mergekit takes the embeddings from the first layer's model and the "
                          "final norm and head from the last layer's")
    runs: list[list] = []  # [source, start, end, tensor_scale]
    for h in recipe.layers:
        last = runs[-1] if runs else None
        if last and last[0] == h.source and last[2] == h.layer and last[3] == (h.tensor_scale or {}):
            last[2] += 1
        else:
            runs.append([h.source, h.layer, h.layer + 1, h.tensor_scale or {}])
    ends = [(runs[0][3], "model.embed_tokens.weight"), (runs[-1][3], "model.norm.weight"),
            (runs[-1][3], "lm_head.weight")]
    for factors, tensor in ends:
        if _factor(factors, tensor) != 1.0:
            raise ConfigError(f"layers.tensor_scale: {factors} would scale {tensor} too in mergekit")
    slices = []
    for src, a, b, factors in runs:
        sl: dict[str, Any] = {"sources": [{"model": str(resolve_model_ref(recipe.sources[src].model)),
                                           "layer_range": [a, b]}]}
        if factors:
            sl["parameters"] = {"scale": [{"value": v} if k == "*" else {"filter": k, "value": v}
                                          for k, v in factors.items()]}
        slices.append(sl)
    return {"merge_method": "passthrough", "slices": slices, **_dtypes(recipe)}


def load_any_recipe(path: str | Path, format: str = "auto") -> Recipe:
    """A recipe from our YAML or from a mergekit config (detected by `merge_method`)."""
    if format not in ("auto", "evomerge", "mergekit"):
        raise ConfigError(f"--format: {format!r} is not auto, evomerge or mergekit")
    if format == "evomerge":
        return load_recipe(path)
    data = read_yaml(path)
    if format == "mergekit" or (isinstance(data, dict) and "merge_method" in data):
        return from_mergekit(data, Path(path))
    return parse_recipe(data, str(path), Path(path).resolve().parent)
