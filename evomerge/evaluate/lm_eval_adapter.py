"""An ``lm_eval.api.model.LM`` over an evomerge ``Backend``: lm-eval tasks score the weights
the backend holds now (hf in place, vllm hot-swapped), so a candidate is materialized once
for every task, native or lm-eval, and no checkpoint is written.

Requests go to the backend as whole batches, unchanged, except two deliberate choices:
generation is greedy only (a sampling request is refused), and generated text comes back
cut at the stop strings and stripped, as evomerge's native tasks see it, so the hf and vllm
backends agree (vLLM's text starts with a space where HF's does not). lm-eval's own ``hf``
model does not strip; a task that should score the same under both strips in a filter
(``fitness/lm_eval/math_words.yaml`` does).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM

from evomerge.errors import EvomergeError
from evomerge.evaluate.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest

DEFAULT_MAX_GEN_TOKS = 256   # lm-eval's default for generate_until


class BackendLM(LM):
    """lm-eval's model interface answered by an evomerge backend (see the module docstring)."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        batch = [LoglikelihoodRequest(*r.args) for r in requests]
        return [(float(lp), bool(greedy)) for lp, greedy in self.backend.loglikelihood(batch)]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        batch = [RollingRequest(r.args[0]) for r in requests]
        return [float(lp) for lp, _ in self.backend.loglikelihood_rolling(batch)]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        return self.backend.generate_until([generation_request(*r.args) for r in requests])


def generation_request(context: str, gen_kwargs: dict[str, Any]) -> GenerationRequest:
    """lm-eval's (context, gen_kwargs) as a greedy evomerge request; sampling is refused."""
    kwargs = dict(gen_kwargs or {})
    if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0.0:
        raise EvomergeError(f"generation_kwargs: {kwargs}: evomerge scores greedily (do_sample: false, temperature: 0)")
    until = kwargs.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    max_tokens = int(kwargs.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS)
    return GenerationRequest(context, until, max_tokens)
