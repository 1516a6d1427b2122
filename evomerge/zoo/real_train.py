"""Fine-tune SmolLM2 experts on CPU, cheaply and deterministically.

CPU time is the limit (a full step on 16 chat turns costs ~7 CPU-seconds), so an expert trains
only its top decoder layers (``first_layer`` and up; embeddings, which are tied to the output
head, stay frozen), the loss covers only the answer tokens, and the output head runs only at
those positions. Same data order (``random.Random``), same thread count and same torch version
give identical weights. Frozen tensors are saved bit-identical to the base, so their task
vectors are exactly zero.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from evomerge.zoo.real_tasks import held_out_questions, items, messages


@dataclass(frozen=True)
class ExpertSpec:
    """What one expert learns and how: a skill of real_tasks, AdamW with warm-up + cosine."""

    skill: str
    steps: int
    lr: float
    first_layer: int
    batch: int = 16
    warmup: int = 8
    seed: int = 0


# The experts of the real-model zoo (zoo:smollm2-NAME): arithmetic deeper, format in the top layers.
EXPERTS: dict[str, ExpertSpec] = {
    "math": ExpertSpec("math", steps=80, lr=2e-4, first_layer=10),
    "words": ExpertSpec("words", steps=40, lr=1e-4, first_layer=15),
}


def training_examples(tokenizer, spec: ExpertSpec) -> list[tuple[list[int], int]]:
    """(token ids, number of answer tokens at the end) per example, none from a held-out split."""
    held_out = held_out_questions()
    need = spec.steps * spec.batch
    pool = [qa for qa in items(spec.skill, f"train:{spec.seed}", need * 2)
            if qa[0].removesuffix(" Answer in words.") not in held_out][:need]
    if len(pool) < need:
        raise ValueError(f"{spec.skill}: only {len(pool)} training questions outside the held-out splits")
    random.Random(f"order:{spec.skill}:{spec.seed}").shuffle(pool)
    out = []
    for question, answer in pool:
        prompt = tokenizer.apply_chat_template(messages(question), tokenize=False, add_generation_prompt=True)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        out.append((p + a, len(a)))
    return out


def _batch(examples: list[tuple[list[int], int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, and the (row, position) of every answer token's prediction."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    rows, cols = [], []
    for r, (seq, n_answer) in enumerate(examples):
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
        for t in range(len(seq) - n_answer, len(seq)):
            rows.append(r)
            cols.append(t - 1)  # the hidden state at t-1 predicts token t
    return ids, mask, torch.tensor([rows, cols])


def lr_at(step: int, spec: ExpertSpec) -> float:
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def finetune(base: Path, spec: ExpertSpec, out: Path, log: Callable[[str], None] | None = None) -> dict:
    """Train one expert from ``base`` and save it (bf16, with the base's tokenizer) into ``out``."""
    import time

    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    log = log or (lambda _msg: None)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    n_layers = model.config.num_hidden_layers
    if not 0 <= spec.first_layer < n_layers:
        raise ValueError(f"first_layer {spec.first_layer} outside 0..{n_layers - 1}")
    for name, p in model.named_parameters():
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        p.requires_grad_(name == "model.norm.weight" or (layer is not None and layer >= spec.first_layer))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=spec.lr, betas=(0.9, 0.98), weight_decay=0.0)
    examples = training_examples(tokenizer, spec)
    model.train()
    t0, c0, losses = time.perf_counter(), time.process_time(), []
    for step in range(spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        ids, mask, where = _batch(examples[step * spec.batch:(step + 1) * spec.batch], tokenizer.pad_token_id)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[where[0], where[1]])
        loss = torch.nn.functional.cross_entropy(logits.float(), ids[where[0], where[1] + 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        if step % 10 == 0 or step == spec.steps - 1:
            log(f"{spec.skill} step {step}/{spec.steps} loss {loss.item():.3f}")
    model.eval()
    model.to(torch.bfloat16).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    GenerationConfig.from_pretrained(str(base)).save_pretrained(str(out))
    return {"spec": asdict(spec), "loss_first": losses[0], "loss_last": losses[-1],
            "trainable_parameters": sum(p.numel() for p in trainable),
            "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
