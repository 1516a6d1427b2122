"""vLLM backend: one live engine per evaluator, candidate weights hot-swapped in place.

The engine starts once from a "shell" checkpoint folder (the sources' config at the engine's
depth, the tokenizer, no weights: ``load_format="dummy"``). Its worker loads the sources once
(see ``vllm_worker``); ``load(recipe)`` sends only the recipe dict, the worker materializes and
reloads the weights, and the driver resets the prefix cache so no stale KV blocks survive.

Scoring follows the HF backend exactly (same tokenizer calls, BOS handling, greedy decoding,
stop-string cutting), so the two agree on generations and, up to float rounding, on
log-likelihoods. vLLM is imported only when this module is.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evomerge.engine.files import TOKENIZER_FILES
from evomerge.errors import ConfigError, EvomergeError
from evomerge.evaluate.requests import GenerationRequest
from evomerge.evaluate.token_lm import TokenLM, cut_at_stop
from evomerge.layers import num_layers

WORKER_EXTENSION = "evomerge.evaluate.vllm_worker.EvomergeWorkerExtension"
SIDE_FILES = (*TOKENIZER_FILES, "generation_config.json")
OPTIONS = ("max_layers", "dtype", "max_model_len", "kv_cache_gib", "seed", "multiprocessing", "engine_args", "placement",
           "base")


def make_llvmlite_scannable() -> None:
    """vLLM's CPU platform (0.32) scans every module attribute at engine start and calls vars()
    on it; llvmlite's `ffi.lib` (loaded with numba once a merge kernel compiles) answers any
    attribute, `__dict__` included, with a function wrapper, and the scan crashes. Hand it an
    empty dict instead (nothing to do while llvmlite is not loaded)."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    fntab = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(fntab, dict) and not isinstance(fntab.get("__dict__"), dict):
        fntab["__dict__"] = {}


def _set_env(multiprocessing: bool, kv_cache_gib: int) -> None:
    """vLLM reads these at engine start; explicit user settings win."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1" if multiprocessing else "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))


def _shell_dir(source: Path, depth: int | None) -> tuple[Path, int]:
    """A temp folder with the source's config (at ``depth`` layers) and tokenizer, no weights."""
    try:
        config = json.loads((source / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise EvomergeError(f"{source / 'config.json'}: cannot read the model config ({err})") from None
    depth = num_layers(config) if depth is None else int(depth)
    if depth < 1:
        raise ConfigError(f"options.max_layers: {depth} must be at least 1")
    config["num_hidden_layers"] = depth
    if isinstance(config.get("layer_types"), list) and config["layer_types"]:
        config["layer_types"] = (config["layer_types"] * depth)[:depth]
    shell = Path(tempfile.mkdtemp(prefix="evomerge-vllm-"))
    (shell / "config.json").write_text(json.dumps(config))
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, shell / name)
    return shell, depth


class VLLMBackend(TokenLM):
    """A vLLM engine plus the HF tokenizer of the sources; ``load(recipe)`` swaps weights.

    The engine holds ``max_layers`` decoder layers (default: the sources' own count). A
    data-flow path longer than that restarts the engine once at the larger depth (seconds,
    counted in that candidate's ``swap`` time); shorter models run padded with identity blocks.
    """

    def __init__(self, model_dir: str | Path, *, sources: tuple[str, ...] = (), max_layers: int | None = None,
                 dtype: str | None = None, max_model_len: int | None = None, kv_cache_gib: int = 1, seed: int = 0,
                 multiprocessing: bool = False, engine_args: dict[str, Any] | None = None,
                 placement: str = "device", base: str | None = None) -> None:
        """Start an engine on ``model_dir``. With ``sources``, the engine starts without weights
        (``model_dir`` gives config and tokenizer) and every candidate comes in via ``load``.
        ``dtype`` None runs the engine in the checkpoint's stored dtype (bf16 sources: a bf16
        engine, 2 bytes per parameter; vLLM's own "auto" would run float32 checkpoints in 16 bits); ``placement`` is where the worker keeps the sources (device, or
        host memory streamed to the device per tensor); ``base`` (the experiment's base model:
        the worker builds its magnitude histograms at start-up)."""
        from transformers import AutoTokenizer

        _set_env(multiprocessing, kv_cache_gib)
        self.model_dir = Path(model_dir)
        self.sources = tuple(sources)
        self.placement, self.base = placement, base
        if dtype is None:
            from evomerge.evaluate.loading import stored_dtype

            dtype = str(stored_dtype(self.model_dir)).removeprefix("torch.")
        self.engine_kwargs: dict[str, Any] = dict(dtype=dtype, seed=seed, enforce_eager=True,
                                                  max_model_len=max_model_len, worker_extension_cls=WORKER_EXTENSION)
        self.engine_kwargs.update(engine_args or {})
        self.llm: Any = None
        self._shell: Path | None = None
        self.depth: int | None = None
        self.loaded = not sources
        self.last_timings: dict[str, float] = {}
        self._nonfinite: str | None = None
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self._start(max_layers)

    def _start(self, depth: int | None) -> None:
        """(Re)start the engine; with sources, on a weightless shell of ``depth`` layers."""
        from vllm import LLM

        self.close()
        kwargs = dict(self.engine_kwargs)
        path = self.model_dir
        if self.sources:
            self._shell, self.depth = _shell_dir(self.model_dir, depth)
            path = self._shell
            kwargs["load_format"] = "dummy"
        make_llvmlite_scannable()
        self.llm = LLM(model=str(path), tokenizer=str(path), **kwargs)
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        if self.sources:
            self.llm.collective_rpc("evomerge_init", args=(list(self.sources), self.depth, self.placement, self.base))
            self.loaded = False

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int | None = None, **options: Any) -> "VLLMBackend":
        """An engine on one checkpoint (no swapping), e.g. for ``evomerge eval`` (vLLM batches
        requests itself: ``batch_size`` is ignored). float32 unless ``dtype`` says otherwise, as
        the HF reference loads a checkpoint, so both backends give the same scores."""
        from evomerge.evaluate.loading import check_checkpoint

        return cls(check_checkpoint(path), **{"dtype": "float32", **options})

    @classmethod
    def from_spec(cls, spec: Any) -> "VLLMBackend":
        """An engine for ``spec.sources``; of ``spec.options`` it reads the keys in ``OPTIONS``
        (the rest belong to the evaluator: limit, seed, workers, ...)."""
        from evomerge.evaluate.loading import check_checkpoint

        if not spec.sources:
            raise ConfigError("sources: the vllm backend needs at least one source model")
        paths = [check_checkpoint(ref) for ref in spec.sources]
        opts = {k: v for k, v in spec.options.items() if k in OPTIONS}
        return cls(paths[0], sources=tuple(spec.sources), **opts)

    def load(self, recipe: Any) -> dict[str, float]:
        """Swap the recipe's weights into the engine; returns (and keeps) seconds per phase:
        ``materialize`` (merging in the worker) and ``swap`` (reload + prefix-cache reset)."""
        if not self.sources:
            raise ConfigError("the vllm backend was started without sources; it cannot load recipes")
        data = recipe.to_dict() if hasattr(recipe, "to_dict") else dict(recipe)
        t0 = time.perf_counter()
        needed = len(data.get("layers") or ()) if data.get("kind") == "dataflow" else 0
        if self.depth is not None and needed > self.depth:
            self._start(needed)
        restart = time.perf_counter() - t0
        self.loaded = False
        (reply,) = self.llm.collective_rpc("evomerge_swap", args=(data,))
        t1 = time.perf_counter()
        self.llm.reset_prefix_cache()
        self._nonfinite = reply["nonfinite"]
        self.last_timings = {"materialize": reply["materialize"],
                             "swap": restart + reply["swap"] + time.perf_counter() - t1}
        self.loaded = True
        return dict(self.last_timings)

    def nonfinite_parameter(self) -> str | None:
        """The first tensor of the loaded candidate holding NaN or inf (checked in the worker)."""
        return self._nonfinite

    def close(self) -> None:
        """Stop the engine and remove the shell folder."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine_core = getattr(llm.llm_engine, "engine_core", None)
            if engine_core is not None and hasattr(engine_core, "shutdown"):
                engine_core.shutdown()
            self.llm = None
            gc.collect()
        if self._shell is not None:
            shutil.rmtree(self._shell, ignore_errors=True)
            self._shell = None

    # --- scoring -------------------------------------------------------------------------------

    def _run(self, seqs: list[list[int]], params: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        if not self.loaded:
            raise EvomergeError("vllm backend: no candidate loaded (call load(recipe) first, or reload "
                                "after a failed swap)")
        for i, s in enumerate(seqs):
            if len(s) >= self.max_model_len:
                raise EvomergeError(f"request {i}: {len(s)} tokens do not fit the engine's max_model_len "
                                    f"{self.max_model_len}")
        prompts = [TokensPrompt(prompt_token_ids=s) for s in seqs]
        return self.llm.generate(prompts, params, use_tqdm=False)

    def _token_logprobs(self, seqs: list[list[int]]) -> list[tuple[list[float], list[bool]]]:
        """Per sequence: log P(token t | tokens < t) for t >= 1, and whether it is the argmax."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0, detokenize=False)
        out = []
        for seq, res in zip(seqs, self._run(seqs, [params] * len(seqs))):
            lps, greedy = [], []
            for tok, entry in zip(seq[1:], res.prompt_logprobs[1:]):
                lp = entry[tok]
                lps.append(lp.logprob)
                greedy.append(lp.rank == 1)
            out.append((lps, greedy))
        return out

    def generate_until(self, requests: list[GenerationRequest]) -> list[str]:
        from vllm import SamplingParams

        seqs = self._encode([r.context for r in requests], True)
        params = [SamplingParams(max_tokens=r.max_tokens, temperature=0.0, detokenize=False) for r in requests]
        results = self._run(seqs, params)
        texts = self.tokenizer.batch_decode([list(res.outputs[0].token_ids) for res in results],
                                            skip_special_tokens=True)
        return [cut_at_stop(text, r.until) for text, r in zip(texts, requests)]
