"""The lean in-place path: sources in their stored dtype, a worker's memory bounded per
parameter, the same tensors as before, and bad inputs refused before any work."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from evomerge.engine import ResidentSources, materialize_into, materialize_tensors
from evomerge.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"model.embed_tokens.weight": (300, 256), "model.layers.0.self_attn.q_proj.weight": (64, 64),
          "model.layers.0.mlp.up_proj.weight": (400, 200), "model.layers.1.mlp.up_proj.weight": (400, 200),
          "model.layers.1.input_layernorm.weight": (64,), "lm_head.weight": (300, 256)}
# SHA-256 (16 hex digits) of the merged float32 tensors of `family` below, computed by the engine
# before sources stayed in their stored dtype (float32 task-vector stacks, sorted magnitudes):
# the lean path must give the same bits.
BEFORE = {"task_arithmetic": "d7170933750d8661", "ties": "26c697b4a31c380e", "dare_ties": "73edfd79309fd385",
          "dare_linear": "8d11d4b8982ca04d", "breadcrumbs_ties": "c4f5526f1e2f7022", "linear": "e0770e2a0bc15db8"}


def family(root: Path, dtype=torch.float32) -> dict[str, Path]:
    """base + 3 experts with tensors on both sides of the histogram threshold (SMALL entries)
    and a fifth of every delta exactly zero (ties at the TIES threshold)."""
    out = {}
    for m, name in enumerate(["base", "e0", "e1", "e2"]):
        state = {}
        for i, (n, s) in enumerate(SHAPES.items()):
            t = torch.randn(s, generator=torch.Generator().manual_seed(100 + i)) * 0.02
            if m:
                d = torch.randn(s, generator=torch.Generator().manual_seed(1000 * m + i)) * 0.003
                d.view(-1)[::5] = 0.0
                t = t + d
            state[n] = t.to(dtype).contiguous()
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
        out[name] = folder
    return out


def recipe(fam: dict[str, Path], method: str, dtype: str | None = None):
    params = {"weight": [0.6, 1.3], "density": 0.45}
    if method in ("task_arithmetic", "linear"):
        params.pop("density")
    data = {"method": method, "sources": [{"model": str(fam[e]), "parameters": params} for e in ("e0", "e1", "e2")],
            "parameters": {} if method == "linear" else {"lambda": 0.9}, "seed": 5}
    if method != "linear":
        data["base"] = str(fam["base"])
    if dtype:
        data["dtype"] = dtype
    return parse_recipe(data)


def digest(items) -> str:
    h = hashlib.sha256()
    for name, t in items:
        h.update(name.encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def test_float32_sources_give_the_previous_engines_tensors_bit_for_bit(tmp_path):
    fam = family(tmp_path)
    sources = ResidentSources.load([str(p) for p in fam.values()])
    for method, want in BEFORE.items():
        assert digest(materialize_tensors(recipe(fam, method), sources)) == want, method
    assert all(t.dtype == torch.float32 for m in sources.models.values() for t in m.tensors.values())


@pytest.mark.parametrize("out", ["float32", "bfloat16"])
def test_bf16_sources_merge_as_if_converted_to_float32_first(tmp_path, out):
    fam = family(tmp_path, torch.bfloat16)
    stored = ResidentSources.load([str(p) for p in fam.values()])
    converted = ResidentSources.load([str(p) for p in fam.values()], dtype=torch.float32)
    assert {t.dtype for m in stored.models.values() for t in m.tensors.values()} == {torch.bfloat16}
    for method in BEFORE:
        r = recipe(fam, method, out)
        assert digest(materialize_tensors(r, stored)) == digest(materialize_tensors(r, converted)), method


def test_host_placement_streams_the_same_tensors_into_a_model(tmp_path):
    fam = family(tmp_path, torch.bfloat16)
    refs = [str(p) for p in fam.values()]
    device, host = ResidentSources.load(refs), ResidentSources.load(refs, placement="host")
    for method in ("ties", "dare_ties", "linear"):
        models = []
        for sources in (device, host):
            model = torch.nn.Module()
            for n, s in SHAPES.items():  # parameters named like the checkpoint's tensors
                *path, leaf = n.split(".")
                parent = model
                for part in path:
                    if not hasattr(parent, part):
                        parent.add_module(part, torch.nn.Module())
                    parent = getattr(parent, part)
                parent.register_parameter(leaf, torch.nn.Parameter(torch.zeros(s, dtype=torch.bfloat16)))
            materialize_into(recipe(fam, method), sources, model)
            models.append(model.state_dict())
        assert all(torch.equal(models[0][n], models[1][n]) for n in SHAPES), method


MEMORY_CHILD = r"""
import json, resource, sys, psutil, torch
sys.path.insert(0, sys.argv[1])
from scale_rehearsal import build_family, parameters
from evomerge.engine import materialize_into
from evomerge.evaluate.loading import InPlaceLoader
from evomerge.recipe import parse_recipe

def recipes(refs):
    for method in ("ties", "dare_ties", "task_arithmetic", "ties"):
        p = {"weight": 0.8} if method == "task_arithmetic" else {"weight": 0.8, "density": 0.4}
        yield parse_recipe({"kind": "parameter", "method": method, "base": refs[0], "seed": 0,
                            "sources": [{"model": r, "parameters": p} for r in refs[1:]]}, "recipe")

def run(shape):
    fam = build_family(shape, "cpu", cache=__import__("pathlib").Path(sys.argv[2]))
    refs = [str(fam[n]) for n in ("base", "e0", "e1", "e2")]
    loader = InPlaceLoader(refs, {})
    for r in recipes(refs):
        materialize_into(r, loader.sources, loader.model)
    return loader

build_family("50m", "cpu", cache=__import__("pathlib").Path(sys.argv[2]))
warm = run("tiny")  # kernels compiled and loaded, transformers warmed: the idle baseline
del warm
idle = psutil.Process().memory_info().rss
resource_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
loader = run("50m")
peak = max(psutil.Process().memory_info().rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"idle": idle, "peak": peak, "before": resource_before, "params": parameters("50m"),
                  "model_dtype": str(next(loader.model.parameters()).dtype)}))
"""


def test_a_worker_holds_bf16_sources_and_model_within_12_bytes_per_parameter(tmp_path):
    """base + 3 bf16 sources (8 bytes per parameter, as file pages) + a bf16 model (2) +
    scratch and histograms: at most 12 bytes per parameter above the warmed-up process, with
    TIES, DARE-TIES and task arithmetic materialized in place."""
    res = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT / "benchmarks"), str(tmp_path)],
                         capture_output=True, text=True, timeout=900, env={"OMP_NUM_THREADS": "2", "PATH": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads(res.stdout.strip().splitlines()[-1])
    per_param = (m["peak"] - m["idle"]) / m["params"]
    assert m["model_dtype"] == "torch.bfloat16"
    assert 8 <= per_param <= 12 * 1.1, m  # the sources are really resident, and nothing else is large


def _run_experiment(tmp_path: Path, fam: dict[str, Path], **options) -> subprocess.CompletedProcess:
    from typer.testing import CliRunner

    from evomerge.cli import app

    exp = {"name": "lean", "models": {"base": str(fam["base"]), "sources": [str(fam["e0"]), str(fam["e1"])]},
           "search_space": {"kind": "parameter", "method": "ties", "weight": {"low": 0.0, "high": 1.0}},
           "fitness": {"tasks": [str(ROOT / "fitness" / "story_ppl.yaml")], "options": options},
           "searcher": {"name": "random"}, "budget": 2, "backend": "hf"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "exp.yaml"), "--runs-dir", str(tmp_path / "runs"),
                                   "--no-progress"])
    return subprocess.CompletedProcess([], res.exit_code, res.stdout, res.stderr)


@pytest.mark.parametrize("case,match", [
    ("dtype", r"sources\[1\]|e1.*: tensor .* is bfloat16, .* has float32; convert the sources to one dtype"),
    ("cuda", r"device: cuda requested but this machine has no CUDA device"),
    ("budget", r"options.memory_budget_gb: a worker needs sources .* GB .* more than memory_budget_gb 0.0001"),
])
def test_bad_worker_setups_fail_before_any_work_with_one_line(tmp_path, case, match):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    fam = family(tmp_path / "models")
    options = {}
    if case == "dtype":
        family(tmp_path / "bf16", torch.bfloat16)
        fam["e1"] = tmp_path / "bf16" / "e1"
    elif case == "cuda":
        options = {"device": "cuda"}
    else:
        options = {"memory_budget_gb": 0.0001}
    res = _run_experiment(tmp_path, fam, **options)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    import re

    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_backend_that_cannot_score_candidates_is_refused_before_the_run(tmp_path):
    from typer.testing import CliRunner

    from evomerge.cli import app

    fam = family(tmp_path / "models")
    exp = {"name": "t", "models": {"base": str(fam["base"]), "sources": [str(fam["e0"])]},
           "search_space": {"kind": "parameter", "method": "ties", "weight": {"low": 0.0, "high": 1.0}},
           "fitness": {"tasks": [str(ROOT / "fitness" / "story_ppl.yaml")]}, "searcher": {"name": "random"},
           "budget": 1, "backend": "torch"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "exp.yaml"), "--runs-dir", str(tmp_path / "runs")])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert "backend TorchBackend cannot score merge candidates" in lines[0]
    assert not (tmp_path / "runs").exists()
