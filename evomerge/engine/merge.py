"""`merge_to_disk`: stream a recipe into an HF checkpoint, one tensor at a time.

Peak memory is the inputs of one tensor plus float32 scratch for it (about sources + a few
times the largest tensor), never the model. The output appears atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from evomerge.engine.files import copy_side_files, write_config
from evomerge.engine.plan import MergePlan, build_plan
from evomerge.engine.reader import CheckpointReader
from evomerge.engine.writer import DEFAULT_SHARD_BYTES, ShardedWriter, atomic_output_dir, check_output_dir
from evomerge.ops.workspace import Workspace
from evomerge.recipe import DataflowRecipe, ParameterRecipe, Recipe, resolve_model_ref

RECIPE_FILE = "evomerge_recipe.yaml"


def open_models(recipe: ParameterRecipe, allow_pickle: bool = False) -> list[tuple[str, CheckpointReader]]:
    """Readers for base (if any) then each source, labelled by their recipe field."""
    labelled = ([("base", recipe.base)] if recipe.base else []) + [
        (f"sources[{i}] ({s.model})", s.model) for i, s in enumerate(recipe.sources)]
    cache: dict[Path, CheckpointReader] = {}
    out = []
    for label, ref in labelled:
        path = resolve_model_ref(ref)
        if path not in cache:
            cache[path] = CheckpointReader(path, allow_pickle=allow_pickle)
        out.append((f"{label}: {path}" if label == "base" else label, cache[path]))
    return out


def tokenizer_folder(recipe: ParameterRecipe, models: list[tuple[str, CheckpointReader]]) -> Path:
    ts = recipe.tokenizer_source
    offset = 1 if recipe.base else 0
    if ts is None or ts == "base":
        return models[0][1].folder
    if isinstance(ts, int):
        return models[offset + ts][1].folder
    return resolve_model_ref(ts)


def merged_tensors(plan: MergePlan, base, sources, ws: Workspace, stacks=None, outs=None, batch=None):
    """(name, float32 result) per tensor. `base`, `sources` and `outs` (float32 tensors to
    write into) map a tensor name to a tensor or None; `stacks` to (stacked inputs, aux dict).
    With `batch` (fused.Batch), results written into `outs` may be queued there: they are
    final only after batch.run()."""
    fn = plan.spec.fn_for(plan.compute_dtype)
    for name in plan.names:
        b = base(name) if base is not None else None
        stack, aux = stacks(name) if stacks is not None else (None, None)
        tensors = [s(name) for s in sources] if stack is None else []
        out = outs(name) if outs is not None else None
        yield name, fn(b, tensors, plan.params[name], ws, stack=stack, out=out, aux=aux, batch=batch)


def merge_to_disk(recipe: Recipe, out_dir: str | Path, *, force: bool = False, allow_pickle: bool = False,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Materialize `recipe` as a complete HF checkpoint in `out_dir` (atomically)."""
    out = Path(out_dir)
    if isinstance(recipe, DataflowRecipe):
        from evomerge.engine import dataflow  # written with the data-flow genome

        return dataflow.merge_to_disk(recipe, out, force=force, allow_pickle=allow_pickle,
                                      max_shard_bytes=max_shard_bytes)
    check_output_dir(out, force)
    models = open_models(recipe, allow_pickle)
    plan = build_plan(recipe, models)
    readers = [m for _, m in models]
    base = readers[0].get if recipe.base else None
    sources = [r.get for r in (readers[1:] if recipe.base else readers)]
    ws = Workspace()
    with atomic_output_dir(out, force) as tmp:
        writer = ShardedWriter(tmp, plan.layout(), max_shard_bytes)
        try:
            with torch.inference_mode():
                for name, result in merged_tensors(plan, base, sources, ws):
                    writer.write(name, result.to(plan.out_dtypes[name]))
            writer.close()
        finally:
            writer.abort()
        ref = readers[0]
        write_config(ref.folder, tmp, recipe.dtype or _dtype_name(plan))
        copy_side_files(ref.folder, tokenizer_folder(recipe, models), tmp)
        (tmp / RECIPE_FILE).write_text(recipe.to_yaml())
    return out


def _dtype_name(plan: MergePlan) -> str | None:
    dts = {str(d).removeprefix("torch.") for d in plan.out_dtypes.values()}
    return dts.pop() if len(dts) == 1 else None
