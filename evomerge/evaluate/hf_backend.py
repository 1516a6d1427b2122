"""HF transformers backend: the exact reference. Batched, greedy, deterministic.

Log-likelihoods use right padding (positions start at 0 for every row, so a padded row scores
exactly like an unpadded one); generation uses left padding with positions taken from the
attention mask. Requests are sorted by length for batching and answered in their own order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evomerge.errors import ConfigError
from evomerge.evaluate.requests import GenerationRequest
from evomerge.evaluate.token_lm import TokenLM, cut_at_stop


class HFBackend(TokenLM):
    """A causal LM + tokenizer; ``load(recipe)`` swaps candidate weights in (see Evaluator)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 128, loader: Any = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.loader = loader
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int = 128, device: str = "cpu") -> "HFBackend":
        """Load a checkpoint directory (safetensors only)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from evomerge.evaluate.loading import check_checkpoint

        path = check_checkpoint(path)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True)
        return cls(model.to(device), AutoTokenizer.from_pretrained(str(path)), batch_size)

    @classmethod
    def from_spec(cls, spec: Any) -> "HFBackend":
        """Resident sources + one allocated model, for an Evaluator."""
        from evomerge.evaluate.loading import InPlaceLoader

        opts = spec.options
        loader = InPlaceLoader(spec.sources, opts)
        return cls(loader.model, loader.tokenizer, opts.get("batch_size", 128), loader)

    def load(self, recipe: Any) -> dict[str, float]:
        """Put the recipe's weights into the model (in place for parameter recipes)."""
        import time

        if self.loader is None:
            raise ConfigError("hf backend: opened on one checkpoint, not on sources; it cannot load recipes")
        start = time.perf_counter()
        self.model = self.loader.load(recipe).eval()
        self.device = next(self.model.parameters()).device
        return {"materialize": time.perf_counter() - start}

    def nonfinite_parameter(self) -> str | None:
        from evomerge.evaluate.loading import nonfinite_parameter

        return nonfinite_parameter(self.model)

    def _batches(self, seqs: list[list[int]]):
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    @torch.inference_mode()
    def _token_logprobs(self, seqs: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sequence: log P(token t | tokens < t) for t >= 1, and whether argmax == token."""
        out: list[Any] = [None] * len(seqs)
        pad = self.tokenizer.pad_token_id or 0
        for idx in self._batches(seqs):
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, :len(seqs[i])] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).cpu()
            for row, i in enumerate(idx):
                n = len(seqs[i])
                target = ids[row, 1:n]
                lp = logp[row, :n - 1]
                out[i] = (lp.gather(1, target[:, None])[:, 0], lp.argmax(-1) == target)
        return out

    @torch.inference_mode()
    def generate_until(self, requests: list[GenerationRequest]) -> list[str]:
        out: list[str] = [""] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.until, r.max_tokens), []).append(i)
        for (until, max_tokens), members in groups.items():
            seqs = self._encode([requests[i].context for i in members], True)
            for idx in self._batches(seqs):
                texts = self._generate([seqs[i] for i in idx], max_tokens)
                for i, text in zip(idx, texts):
                    out[members[i]] = cut_at_stop(text, until)
        return out

    def _generate(self, seqs: list[list[int]], max_tokens: int) -> list[str]:
        pad = self.tokenizer.pad_token_id or 0
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
        gen = self.model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=max_tokens,
            do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
        )
        return self.tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True)

