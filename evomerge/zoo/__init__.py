"""The embedded tiny model zoo: a base and skill experts, built locally on CPU in minutes.

``resolve("zoo:NAME") -> Path`` and ``build(out, seed)``; see docs/ZOO.md for the design.
Importing this package is cheap: torch and transformers load only when building.
"""

from evomerge.zoo.builder import MODELS, build, default_zoo_dir, is_up_to_date, resolve

__all__ = ["MODELS", "build", "default_zoo_dir", "is_up_to_date", "resolve"]
