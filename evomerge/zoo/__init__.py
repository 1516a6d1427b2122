"""The embedded model zoos: the tiny zoo trained from scratch, and the real-model zoo.

``resolve("zoo:NAME") -> Path``: ``zoo:base``, ``zoo:math``... (tiny zoo, docs/ZOO.md, built by
``build(out, seed)``) and ``zoo:smollm2``, ``zoo:smollm2-NAME`` (SmolLM2-135M-Instruct and experts
fine-tuned from it, ``evomerge.zoo.real``). Importing this package is cheap: torch and
transformers load only when building.
"""

from pathlib import Path

from evomerge.zoo import builder
from evomerge.zoo.builder import MODELS, build, default_zoo_dir, is_up_to_date


def resolve(ref: str, zoo_dir: Path | None = None) -> Path:
    """``zoo:NAME`` -> the model's folder; ``zoo:smollm2*`` names come from the real-model zoo."""
    if ref == "zoo:smollm2" or ref.startswith("zoo:smollm2-"):
        from evomerge.zoo import real

        return real.resolve(ref)
    return builder.resolve(ref, zoo_dir)


def resolve_model_ref(ref: str) -> Path:
    """A model reference as a local directory: ``zoo:NAME`` via ``resolve``, anything else a path."""
    return Path(resolve(ref)) if ref.startswith("zoo:") else Path(ref).expanduser()


__all__ = ["MODELS", "build", "default_zoo_dir", "is_up_to_date", "resolve", "resolve_model_ref"]
