"""GGUF file -> a plain HF checkpoint (bf16 safetensors, config, tokenizer, generation config).

transformers can read a GGUF (it dequantizes to float32) but refuses to ``save_pretrained`` the
result, so the model is rebuilt from its config without the quantization entry and the
dequantized tensors are loaded into it. Every failure a user can cause is one line: the
``gguf`` / ``accelerate`` packages missing, a damaged file, an architecture transformers cannot
read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evomerge.errors import CheckpointError, EvomergeError

INSTALL_HINT = "pip install 'evomerge[real-model]' (scripts/setup.sh does)"


def require_gguf_support() -> None:
    """Fail in one line when the packages transformers needs to read GGUF files are missing."""
    import importlib.util

    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise EvomergeError(f"reading GGUF files needs the package(s) {', '.join(missing)}: {INSTALL_HINT}")


def read_gguf_metadata(path: Path) -> dict:
    """transformers' reading of the file's metadata (config, tokenizer), without the tensors.

    Raises a one-line CheckpointError for a missing or damaged file, or an architecture that
    this transformers cannot read."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: GGUF file not found")
    try:
        return load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as err:
        if "is not supported" in str(err):
            import transformers

            arch = str(err).split("architecture", 1)[-1].split("is not", 1)[0].strip()
            raise CheckpointError(f"{path}: GGUF architecture {arch!r} cannot be read by transformers "
                                  f"{transformers.__version__}") from None
        raise CheckpointError(f"{path}: damaged GGUF file ({err})") from None
    except Exception as err:  # the reader raises IndexError, struct errors, ... on bad bytes
        raise CheckpointError(f"{path}: damaged GGUF file ({type(err).__name__}: {err})") from None


def convert_gguf(path: Path, out: Path, card: str = "", log: Callable[[str], None] | None = None) -> None:
    """Write the GGUF model as a bf16 HF checkpoint into the (existing, empty) folder ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    log = log or (lambda _msg: None)
    require_gguf_support()
    path = Path(path)
    read_gguf_metadata(path)
    folder, name = str(path.parent), path.name
    try:
        log(f"reading and dequantizing {path.name}")
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as err:  # data past a valid header can still be damaged
        raise CheckpointError(f"{path}: cannot read the GGUF model ({type(err).__name__}: {err})") from None
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    state = {k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the {type(model).__name__} layout "
                              f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    del loaded, state
    out = Path(out)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id, do_sample=False).save_pretrained(str(out))
    if card:
        (out / "README.md").write_text(card)
    log(f"wrote {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters (bf16) to {out}")
