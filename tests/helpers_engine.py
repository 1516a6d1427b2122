"""Tiny random Llama checkpoints for the engine/ops/mergekit tests (built in a second)."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 96


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "[BOS]": 2, "[EOS]": 3}
    vocab.update({f"w{i}": i + 4 for i in range(VOCAB - 4)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="[BOS]", eos_token="[EOS]")


def tiny_config(layers: int = 4, tie: bool = False):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=32, vocab_size=VOCAB,
                       max_position_embeddings=64, tie_word_embeddings=tie, bos_token_id=2,
                       eos_token_id=3, pad_token_id=1)


def save_model(state: dict[str, torch.Tensor], folder: Path, layers: int = 4, dtype=torch.float32,
               tokenizer: bool = True, max_shard_size: str | None = None) -> Path:
    """A checkpoint with the given tensors (LlamaForCausalLM names) via save_pretrained."""
    from transformers import GenerationConfig, LlamaForCausalLM

    cfg = tiny_config(layers)
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(state)
    model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    GenerationConfig(bos_token_id=2, eos_token_id=3, pad_token_id=1).save_pretrained(folder)
    if tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    return Path(folder)


def random_state(seed: int, layers: int = 4) -> dict[str, torch.Tensor]:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in LlamaForCausalLM(tiny_config(layers)).state_dict().items()}


def finetune(base: dict[str, torch.Tensor], seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in base.items()}


def build_family(root: Path, n_experts: int = 3, layers: int = 4, dtype=torch.float32,
                 max_shard_size: str | None = None) -> dict[str, Path]:
    """base + n experts (small random task vectors), saved under root."""
    base = random_state(0, layers)
    out = {"base": save_model(base, root / "base", layers, dtype, max_shard_size=max_shard_size)}
    for i in range(n_experts):
        out[f"e{i}"] = save_model(finetune(base, 100 + i), root / f"e{i}", layers, dtype,
                                  max_shard_size=max_shard_size)
    return out


def load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from evomerge.engine.reader import CheckpointReader

    r = CheckpointReader(folder)
    return {n: r.get(n) for n in r.names}
