"""The vLLM backend: a live engine whose weights are hot-swapped per candidate.

One engine on the zoo serves the whole module (starting one costs seconds). It is sized two
layers deeper than the sources, so every parameter recipe also runs through the zero-block
padding, and short data-flow paths run on it too; agreement with the HF backend (which has no
padding) on the zoo tasks' requests shows the padding is an identity.
"""

from __future__ import annotations

import importlib.util

import pytest

from evomerge.recipe import parse_recipe

pytestmark = [pytest.mark.vllm,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")]

# Measured on the zoo (float32): |vLLM - HF| summed log-likelihood per request <= 1.6e-5.
LL_TOL = 1e-4
EXTRA_LAYERS = 2
ITEMS = 40


def ties(w0: float, w1: float, density: float = 0.6) -> dict:
    return {"kind": "parameter", "method": "ties", "base": "zoo:base", "parameters": {"lambda": 1.0},
            "sources": [{"model": "zoo:math", "parameters": {"weight": w0, "density": density}},
                        {"model": "zoo:words", "parameters": {"weight": w1, "density": density}}]}


def path(hops: list[tuple[int, int, float]]) -> dict:
    return {"kind": "dataflow", "sources": [{"model": "zoo:math"}, {"model": "zoo:words"}],
            "layers": [{"source": s, "layer": i, "scale": c} for s, i, c in hops]}


@pytest.fixture(scope="module")
def spec(zoo_dir):
    from evomerge.runtime.pool import EvaluatorSpec

    return EvaluatorSpec(sources=("zoo:base", "zoo:math", "zoo:words"), tasks=("math_words", "count", "story_ppl"),
                         backend="vllm", options={"max_layers": 4 + EXTRA_LAYERS, "limit": ITEMS})


@pytest.fixture(scope="module")
def engine(spec):
    from evomerge.evaluate.vllm_backend import VLLMBackend

    backend = VLLMBackend.from_spec(spec)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf(spec):
    from dataclasses import replace

    from evomerge.evaluate.hf_backend import HFBackend

    return HFBackend.from_spec(replace(spec, backend="hf"))


@pytest.fixture(scope="module")
def requests(spec):
    """The zoo tasks' first validation items as the three request kinds."""
    from evomerge.evaluate.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest
    from evomerge.evaluate.tasks import load_task

    gen_task, mc_task, ppl_task = (load_task(t) for t in spec.tasks)
    gen = [GenerationRequest(it["prompt"], gen_task.until, gen_task.max_tokens)
           for it in gen_task.items("validation")[:ITEMS]]
    ll = [LoglikelihoodRequest(it["prompt"], f" {c}") for it in mc_task.items("validation")[:ITEMS // 4]
          for c in it["choices"]]
    roll = [RollingRequest(it["text"]) for it in ppl_task.items("validation")[:ITEMS // 2]]
    return ll, roll, gen


def outputs(backend, requests):
    ll, roll, gen = requests
    return backend.loglikelihood(ll), backend.loglikelihood_rolling(roll), backend.generate_until(gen)


def assert_agree(ours, reference):
    (ll, roll, gen), (ll_ref, roll_ref, gen_ref) = ours, reference
    assert gen == gen_ref
    assert [g for _, g in ll] == [g for _, g in ll_ref]
    assert [n for _, n in roll] == [n for _, n in roll_ref]
    assert max(abs(a - b) for (a, _), (b, _) in zip(ll + roll, ll_ref + roll_ref)) < LL_TOL


@pytest.mark.parametrize("which", ["ties", "short_path", "mixed_path"])
def test_scores_agree_with_the_hf_backend(engine, hf, requests, which):
    recipe = {"ties": ties(1.0, 0.7),
              "short_path": path([(0, 0, 1.0), (1, 2, 0.8)]),
              "mixed_path": path([(0, 0, 1.0), (0, 1, 1.0), (1, 1, 1.3), (1, 3, 1.0), (0, 3, 0.9), (1, 2, 1.0)]),
              }[which]
    engine.load(recipe)
    hf.load(parse_recipe(recipe))
    assert_agree(outputs(engine, requests), outputs(hf, requests))


def test_swapping_back_reproduces_outputs_exactly(engine, requests):
    x, y = ties(1.0, 0.7), ties(0.3, 1.4, density=0.3)
    engine.load(x)
    first = outputs(engine, requests)
    engine.load(y)
    assert outputs(engine, requests)[0] != first[0]
    engine.load(x)
    assert outputs(engine, requests) == first


def test_load_reports_materialize_and_swap_seconds(engine):
    timings = engine.load(ties(1.0, 1.0))
    assert set(timings) == {"materialize", "swap"}
    assert all(v > 0 for v in timings.values())
    assert engine.nonfinite_parameter() is None


def test_a_recipe_over_a_model_that_is_not_resident_fails_cleanly(engine, requests, tmp_path):
    from evomerge.errors import EvomergeError

    engine.load(ties(0.8, 0.8))
    before = outputs(engine, requests)
    stranger = dict(ties(0.8, 0.8), base=str(tmp_path / "elsewhere"))
    with pytest.raises(EvomergeError, match="not among the resident sources"):
        engine.load(stranger)
    with pytest.raises(EvomergeError, match="no candidate loaded"):
        outputs(engine, requests)
    engine.load(ties(0.8, 0.8))
    assert outputs(engine, requests) == before


def test_fifty_swaps_do_not_grow_memory(engine, zoo_dir):
    from evomerge.evaluate.requests import GenerationRequest

    recipes = [ties(0.5 + 0.02 * i, 1.2 - 0.01 * i, density=0.3 + 0.01 * i) for i in range(50)]
    probe = [GenerationRequest(f"ann has {i} shells . how many shells ?", (), 4) for i in range(4)]
    for r in recipes[:5]:  # warm-up: allocator pools, kernel caches
        engine.load(r)
        engine.generate_until(probe)
    (start,) = engine.llm.collective_rpc("evomerge_rss")
    for r in recipes:
        engine.load(r)
        engine.generate_until(probe)
    (end,) = engine.llm.collective_rpc("evomerge_rss")
    model_bytes = (zoo_dir / "base" / "model.safetensors").stat().st_size
    # a leak of one model copy per swap would add 50 model sizes
    assert end - start < 16 * 2**20 + 5 * model_bytes, (start, end, model_bytes)


def test_a_path_longer_than_the_engine_restarts_it_deeper(engine, hf, requests):
    depth = engine.depth
    longer = path([(i % 2, (3 * i) % 4, 1.0 + 0.1 * (i % 3)) for i in range(depth + 1)])
    timings = engine.load(longer)
    assert engine.depth == depth + 1
    assert timings["swap"] > 0
    hf.load(parse_recipe(longer))
    assert_agree(outputs(engine, requests), outputs(hf, requests))


def test_an_engine_can_start_after_merge_kernels_loaded_llvmlite():
    """vLLM's CPU platform runs vars(x).get("kernel") on every module attribute at engine start
    (its Triton-override scan); llvmlite's ffi.lib, loaded by the merge kernels, broke it, so no
    engine could start in a process that had merged. The backend fixes that before each start."""
    import math
    import sys

    import torch
    from vllm.triton_utils.dispatcher import register_kernels

    from evomerge.evaluate.vllm_backend import make_llvmlite_scannable
    from evomerge.ops.fused import Mix, Rule, combine

    mix = Mix(Rule("band", lo=(0.5,), hi=(math.inf,)), (1.0,), (1.0,), consensus=True, normalize=True)
    combine(torch.zeros(4), [torch.ones(4)], mix, torch.empty(4))
    ffi = sys.modules["llvmlite.binding.ffi"]
    ffi.lib._fntab.pop("__dict__", None)  # as in a fresh process, whatever ran before
    with pytest.raises(AttributeError):
        vars(ffi.lib).get("kernel")
    make_llvmlite_scannable()
    register_kernels({})  # vLLM's own scan over every module, as at engine start
