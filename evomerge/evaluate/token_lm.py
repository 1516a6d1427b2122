"""What the token-level language-model backends (HF, vLLM) share, as lm-evaluation-harness's
TemplateLM does: one tokenization of requests, log-likelihoods from per-token log-probabilities,
and stop-string cutting. A subclass supplies the model: ``_token_logprobs`` and generation."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from evomerge.evaluate.backend import Backend
from evomerge.evaluate.requests import LoglikelihoodRequest, RollingRequest


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """The text before the first stop string (of any in `until`), stripped."""
    for stop in until:
        if stop and stop in text:
            text = text[:text.index(stop)]
    return text.strip()


class TokenLM(Backend):
    """A backend over a tokenizer and a causal LM scored token by token."""

    tokenizer: Any

    def _encode(self, texts: list[str], special: bool) -> list[list[int]]:
        """Token ids of many texts in one tokenizer call (much faster than one by one)."""
        return self.tokenizer(list(texts), add_special_tokens=special)["input_ids"] if texts else []

    @abstractmethod
    def _token_logprobs(self, seqs: list[list[int]]) -> list[tuple[Any, Any]]:
        """Per sequence: log P(token t | tokens < t) for t >= 1 and whether each token is the
        argmax, as two sequences (torch tensors or lists) of length len(seq) - 1."""

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[tuple[float, bool]]:
        contexts = self._encode([r.context for r in requests], True)
        conts = self._encode([r.continuation for r in requests], False)
        seqs, lengths = [c + k for c, k in zip(contexts, conts)], [len(k) for k in conts]
        return [(_total(lp[-k:]), bool(all(greedy[-k:]))) for (lp, greedy), k in zip(self._token_logprobs(seqs), lengths)]

    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[tuple[float, int]]:
        scored = self._token_logprobs(self._encode([r.text for r in requests], True))
        return [(_total(lp), len(lp)) for lp, _ in scored]


def _total(values: Any) -> float:
    """The sum of log-probabilities as the model holds them (a tensor's own sum, or a list's)."""
    return float(values.sum()) if hasattr(values, "sum") else float(sum(values))
