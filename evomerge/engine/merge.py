"""The parameter path to disk: stream a parameter recipe into an HF checkpoint, one tensor at
a time.

Peak memory is the inputs of one tensor plus scratch for it (about sources + a few times the
largest tensor), never the model. The output appears atomically."""

from __future__ import annotations

from pathlib import Path

from evomerge.engine.files import with_dtype
from evomerge.engine.plan import MergePlan, build_plan
from evomerge.engine.reader import CheckpointReader
from evomerge.engine.writer import DEFAULT_SHARD_BYTES, check_output_dir, write_checkpoint
from evomerge.ops.workspace import Workspace
from evomerge.recipe import ParameterRecipe
from evomerge.zoo import resolve_model_ref

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


def merged_tensors(plan: MergePlan, base, sources, ws: Workspace, outs=None, memo=None, batch=None):
    """(name, result) per tensor: in `outs(name)` when it gives a tensor (any float dtype),
    else float32 in a workspace buffer. `base`, `sources` map a tensor name to the input tensor
    (any dtype) or None; `memo(name)` to the tensor's kept threshold histograms. With `batch`
    (fused.Batch), results written into `outs` may be queued there: they are final only
    after batch.run()."""
    fn = plan.spec.fn_for(plan.compute_dtype)
    for name in plan.names:
        b = base(name) if base is not None else None
        tensors = [s(name) for s in sources]
        out = outs(name) if outs is not None else None
        yield name, fn(b, tensors, plan.params[name], ws, out=out, memo=memo(name) if memo else None, batch=batch)


def merge_parameters_to_disk(recipe: ParameterRecipe, out_dir: str | Path, *, force: bool = False,
                             allow_pickle: bool = False, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
                             recipe_file: str = RECIPE_FILE) -> Path:
    """Materialize a parameter recipe as a complete HF checkpoint in `out_dir` (atomically)."""
    out = Path(out_dir)
    check_output_dir(out, force)
    models = open_models(recipe, allow_pickle)
    plan = build_plan(recipe, models)
    readers = [m for _, m in models]
    base = readers[0].get if recipe.base else None
    sources = [r.get for r in (readers[1:] if recipe.base else readers)]
    ws = Workspace()
    outs = lambda name: ws.buf("out", plan.shapes[name], "cpu", plan.out_dtypes[name])  # noqa: E731
    ref = readers[0]
    config = ref.config() or None
    return write_checkpoint(out, plan.layout(), merged_tensors(plan, base, sources, ws, outs=outs),
                            config=config and with_dtype(config, recipe.dtype or _dtype_name(plan)),
                            config_from=ref.folder, tokenizer_from=tokenizer_folder(recipe, models),
                            files={recipe_file: recipe.to_yaml()}, force=force, max_shard_bytes=max_shard_bytes)


def _dtype_name(plan: MergePlan) -> str | None:
    dts = {str(d).removeprefix("torch.") for d in plan.out_dtypes.values()}
    return dts.pop() if len(dts) == 1 else None
