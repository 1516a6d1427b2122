"""The in-memory path: a recipe's tensors from resident sources, yielded or written in place.

Uses the same plan and tensor functions as `merge_to_disk`, so the tensors are identical."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import torch

from evomerge.engine.merge import merged_tensors
from evomerge.engine.plan import MergePlan, build_plan, check_compatible
from evomerge.engine.resident import ResidentSources
from evomerge.errors import CheckpointError
from evomerge.ops.fused import Batch
from evomerge.recipe import DataflowRecipe, ParameterRecipe, Recipe


def resident_plan(recipe: ParameterRecipe, sources: ResidentSources) -> tuple[MergePlan, list]:
    refs = ([("base", recipe.base)] if recipe.base else []) + [
        (f"sources[{i}] ({s.model})", s.model) for i, s in enumerate(recipe.sources)]
    models = [(label, sources.model(ref)) for label, ref in refs]
    key = tuple(m.path for _, m in models)
    if key not in sources.checked:  # names/shapes checked once per combination of models
        sources.checked[key] = check_compatible(models)
    plan = build_plan(recipe, models[:1], names=sources.checked[key])
    return plan, [m for _, m in models]


def _merged(recipe: ParameterRecipe, sources: ResidentSources, outs=None, planned=None, batch=None):
    plan, models = planned or resident_plan(recipe, sources)
    base = models[0] if recipe.base else None
    srcs = models[1:] if recipe.base else models
    stacks = None
    if plan.spec.stack and sources.cache_stacks and plan.compute_dtype == "float32":
        stacks = sources.stacks(plan.spec.stack, base, srcs)
    it = merged_tensors(plan, base.get if base else None, [m.get for m in srcs], sources.workspace,
                        stacks=stacks, outs=outs, batch=batch)
    return plan, it


def materialize_tensors(recipe: Recipe, sources: ResidentSources, *, clone: bool = False
                        ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, merged tensor in the output dtype). Unless `clone`, a yielded tensor may be
    a reused buffer, valid until the next one is requested: consume it immediately."""
    if isinstance(recipe, DataflowRecipe):
        from evomerge.engine import dataflow  # written with the data-flow genome

        yield from dataflow.materialize_tensors(recipe, sources)
        return
    plan, it = _merged(recipe, sources)
    with torch.no_grad():
        for name, result in it:
            t = result.to(plan.out_dtypes[name])
            yield name, t.clone() if clone and t is result else t


def materialize_into(recipe: Recipe, sources: ResidentSources, model: torch.nn.Module) -> None:
    """Write the recipe's tensors into `model`'s existing parameters (no disk, no new model).
    Float32 parameters receive the result directly; others get it cast as merge_to_disk does."""
    targets = dict(model.state_dict(keep_vars=True))
    if isinstance(recipe, DataflowRecipe):
        with torch.no_grad():
            for name, t in materialize_tensors(recipe, sources):
                targets[name].copy_(t)
        return
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
        """The parameter itself, if the merge may write its result there: float32, in place, and
        not tied to another name (tied ones are written in plan order, the last one winning, as
        before batching; queued, they would race)."""
        t = targets[name]
        ok = (shared[t.data_ptr()] == 1 and t.dtype == torch.float32 and plan.out_dtypes[name] == torch.float32
              and t.is_contiguous() and t.device == sources.device and tuple(t.shape) == plan.shapes[name]
              and t.data_ptr() % 64 == 0)  # same alignment as workspace buffers: same rounding
        return t.data if ok else None

    batch = Batch()  # the tensors merged straight into parameters: one parallel pass at the end
    _, it = _merged(recipe, sources, outs=direct, planned=planned, batch=batch)
    with torch.no_grad():
        for name, result in it:
            target = targets[name]
            if result.data_ptr() == target.data_ptr():
                continue
            out_dtype = plan.out_dtypes[name]
            target.copy_(result if out_dtype in (torch.float32, target.dtype) else result.to(out_dtype))
        batch.run()
