"""Materialize recipes: streaming to disk (`merge_to_disk`) or in place from resident sources
(`materialize_into`, `materialize_tensors`). Imports torch; `import evomerge` does not."""

from evomerge.engine.materialize import materialize_into, materialize_tensors
from evomerge.engine.merge import merge_to_disk
from evomerge.engine.reader import CheckpointReader
from evomerge.engine.resident import ResidentSources

__all__ = ["CheckpointReader", "ResidentSources", "materialize_into", "materialize_tensors", "merge_to_disk"]
