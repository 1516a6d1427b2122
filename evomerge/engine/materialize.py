"""The parameter path in memory: a parameter recipe's tensors from resident sources, yielded or
written in place.

Uses the same plan and tensor functions as the path to disk, so the tensors are identical. The
only memory a merge adds to the sources and the model is one tensor's scratch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import torch

from evomerge.engine.merge import merged_tensors
from evomerge.engine.plan import MergePlan, build_plan, check_compatible
from evomerge.engine.resident import ResidentModel, ResidentSources
from evomerge.errors import CheckpointError
from evomerge.ops.fused import Batch
from evomerge.ops.thresholds import TensorMemo
from evomerge.recipe import ParameterRecipe


def resident_plan(recipe: ParameterRecipe, sources: ResidentSources) -> tuple[MergePlan, list[ResidentModel]]:
    refs = ([("base", recipe.base)] if recipe.base else []) + [
        (f"sources[{i}] ({s.model})", s.model) for i, s in enumerate(recipe.sources)]
    models = [(label, sources.model(ref)) for label, ref in refs]
    key = tuple(m.path for _, m in models)
    if key not in sources.checked:  # names/shapes/dtypes checked once per combination of models
        sources.checked[key] = check_compatible(models, same_dtype=True)
    plan = build_plan(recipe, models[:1], names=sources.checked[key])
    return plan, [m for _, m in models]


def _merged(recipe: ParameterRecipe, sources: ResidentSources, outs=None, planned=None, batch=None):
    plan, models = planned or resident_plan(recipe, sources)
    getters = sources.getters(models, plan.names)
    base = getters[0] if recipe.base else None
    srcs = getters[1:] if recipe.base else getters
    srcs_models = models[1:] if recipe.base else models
    base_path = models[0].path if recipe.base else None

    def memo(name: str) -> TensorMemo:
        return TensorMemo(sources.histograms, [(name, base_path, m.path) for m in srcs_models])

    return plan, merged_tensors(plan, base, srcs, sources.workspace, outs=outs, memo=memo, batch=batch)


def parameter_tensors(recipe: ParameterRecipe, sources: ResidentSources, *, clone: bool = False
                      ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, merged tensor in the output dtype). Unless `clone`, a yielded tensor may be
    a reused buffer, valid until the next one is requested: consume it immediately."""
    plan, _ = resident_plan(recipe, sources)
    ws = sources.workspace

    def outs(name: str) -> torch.Tensor:
        return ws.buf("out", plan.shapes[name], sources.device, plan.out_dtypes[name])

    _, it = _merged(recipe, sources, outs=outs)
    with torch.no_grad():
        for name, result in it:
            yield name, result.clone() if clone else result


def parameters_into(recipe: ParameterRecipe, sources: ResidentSources, model: torch.nn.Module) -> None:
    """Write the recipe's tensors into `model`'s existing parameters (no disk, no new model),
    in the parameters' own dtype (rounded as the path to disk rounds to the recipe's dtype)."""
    targets = dict(model.state_dict(keep_vars=True))
    planned = resident_plan(recipe, sources)
    plan = planned[0]
    missing = [n for n in plan.names if n not in targets]
    if missing:
        raise CheckpointError(f"model has no parameter {missing[0]} (recipe's checkpoints do)")
    covered = set(plan.names)
    uncovered = [n for n, p in model.named_parameters() if n not in covered]
    if uncovered:
        raise CheckpointError(f"checkpoints lack the model's parameter {uncovered[0]}")

    shared = Counter(targets[n].data_ptr() for n in plan.names)  # tied parameters (e.g. embeddings and head)

    def direct(name: str) -> torch.Tensor | None:
        """The parameter itself, if the merge may write its result there: the output dtype, in
        place, and not tied to another name (tied ones are written in plan order, the last one
        winning; queued, they would race)."""
        t = targets[name]
        ok = (shared[t.data_ptr()] == 1 and t.dtype == plan.out_dtypes[name] and t.is_contiguous()
              and t.device == sources.device and tuple(t.shape) == plan.shapes[name])
        return t.data if ok else None

    # the tensors merged straight into parameters: one parallel pass at the end (only while the
    # inputs stay put: streamed inputs are reused two tensors on)
    batch = Batch() if sources.placement == "device" else None
    _, it = _merged(recipe, sources, outs=direct, planned=planned, batch=batch)
    with torch.no_grad():
        for name, result in it:
            target = targets[name]
            if result.data_ptr() == target.data_ptr():
                continue
            out_dtype = plan.out_dtypes[name]
            target.copy_(result if out_dtype in (torch.float32, target.dtype) else result.to(out_dtype))
        if batch is not None:
            batch.run()
