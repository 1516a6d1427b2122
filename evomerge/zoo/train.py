"""Deterministic CPU training of the zoo's tiny Llama models.

Same seed, same thread count, same torch version -> bit-identical weights: data order comes
from ``random.Random(seed)``, initialization from ``torch.manual_seed(seed)``, and there is no
dropout. Documents are packed into fixed windows (``<s> doc </s> <s> doc </s> ...``).
"""

from __future__ import annotations

import math
import random
import torch

from evomerge.layers import layer_index, split_layer_name
from evomerge.zoo.mixes import MIXES, sample_docs
from evomerge.zoo.stages import Schedule
from evomerge.zoo.vocab import BOS, EOS, PAD, vocabulary

SEQ_LEN = 64


def model_config():
    """The zoo architecture: a 4-layer LlamaForCausalLM, head_dim 32 (vLLM's CPU kernels accept it).

Hidden 64 with 2 heads (~0.28 M parameters) keeps the whole build within minutes on a shared
2-core CPU; untied embeddings so input rows and output rows can be merged separately.
"""
    from transformers import LlamaConfig

    vocab = vocabulary()
    return LlamaConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=128,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=vocab.index(BOS),
        eos_token_id=vocab.index(EOS), pad_token_id=vocab.index(PAD), torch_dtype="float32",
    )


def new_model(seed: int):
    """A freshly initialized zoo model (deterministic in seed)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(model_config())
    model.generation_config.do_sample = False
    return model


def token_windows(mix_name: str, seed: int, n_windows: int) -> torch.Tensor:
    """[n_windows, SEQ_LEN+1] packed token ids drawn from the named mixture."""
    ids = {w: i for i, w in enumerate(vocabulary())}
    rng = random.Random(f"{mix_name}:{seed}")
    need = n_windows * (SEQ_LEN + 1)
    stream: list[int] = []
    mix = MIXES[mix_name]()
    while len(stream) < need:
        for doc in sample_docs(mix, rng, 512):
            stream.append(ids[BOS])
            stream.extend(ids[w] for w in doc.split())
            stream.append(ids[EOS])
    return torch.tensor(stream[:need], dtype=torch.long).view(n_windows, SEQ_LEN + 1)


def lr_at(step: int, s: Schedule) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_frac`` of the peak."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.final_lr_frac + (1 - s.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, mix_name: str, schedule: Schedule, seed: int, log=None) -> list[float]:
    """Train in place on the mixture; returns the loss per step."""
    data = token_windows(mix_name, seed, schedule.steps * schedule.batch)
    frozen = _frozen(model, schedule.train_top)
    for p in frozen:
        p.requires_grad_(False)  # AdamW skips parameters without gradients
    opt = torch.optim.AdamW(model.parameters(), lr=schedule.lr, betas=(0.9, 0.98), weight_decay=0.0)
    model.train()
    losses = []
    for step in range(schedule.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, schedule)
        batch = data[step * schedule.batch:(step + 1) * schedule.batch]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log and (step % 100 == 0 or step == schedule.steps - 1):
            log(f"{mix_name} step {step}/{schedule.steps} loss {loss.item():.3f}")
    for p in frozen:
        p.requires_grad_(True)
    model.eval()
    return losses


def train_stacked(model, below, mix_name: str, schedule: Schedule, seed: int, log=None) -> list[float]:
    """Train ``model``'s blocks, final norm and head on top of ``below``'s embeddings and blocks.

    The two are run as one 2L-layer model (``below`` frozen: its embeddings and blocks 0..L-1,
    then ``model``'s blocks as L..2L-1, norm and head), so ``model``'s blocks learn to read what
    ``below``'s last block writes. ``model`` stays a normal L-layer checkpoint with its own
    (untouched) embeddings; the stacked computation exists only as a data-flow path
    ``below`` 0..L-1 -> ``model`` 0..L-1 (docs/ZOO.md, "Stacked member").
    """
    from dataclasses import replace

    from transformers import LlamaForCausalLM

    n = model.config.num_hidden_layers
    config = model_config()
    config.num_hidden_layers = 2 * n
    stack = LlamaForCausalLM(config)
    own = {_shift_layer(k, n): v for k, v in model.state_dict().items() if not k.startswith("model.embed_tokens.")}
    low = {k: v for k, v in below.state_dict().items() if k.startswith(("model.embed_tokens.", "model.layers."))}
    stack.load_state_dict(low | own, strict=True)
    losses = train(stack, mix_name, replace(schedule, train_top=n), seed, log)
    trained = stack.state_dict()
    back = {k: trained[k] for k in ("model.norm.weight", "lm_head.weight")}
    back |= {_shift_layer(k, -n): v for k, v in trained.items() if (layer_index(k) or 0) >= n}
    result = model.load_state_dict(back, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) == {"model.embed_tokens.weight"}, result
    return losses


def _shift_layer(name: str, by: int) -> str:
    """A tensor name moved ``by`` layers (names outside the numbered layers stay)."""
    parts = split_layer_name(name)
    return name if parts is None else f"{parts[0]}{parts[1] + by}.{parts[2]}"


def _frozen(model, train_top: int | None) -> list[torch.nn.Parameter]:
    """The parameters that stay as the parent's: all but the last ``train_top`` blocks, the final
    norm and the head (none when train_top is None)."""
    if train_top is None:
        return []
    n = model.config.num_hidden_layers
    trained = tuple(f"model.layers.{i}." for i in range(n - train_top, n)) + ("model.norm.", "lm_head.")
    return [p for name, p in model.named_parameters() if not name.startswith(trained)]
