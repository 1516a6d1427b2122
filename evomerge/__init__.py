"""evomerge: evolutionary search for model-merge recipes.

Importing the package is cheap on purpose: neither ray nor vllm (nor torch-heavy
submodules) are imported here.
"""

__version__ = "0.1.0"
