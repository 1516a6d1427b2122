"""Every kind of config file fails the same way: one line naming the file (and the field)."""

from __future__ import annotations

import pytest

from evomerge.errors import ConfigError
from evomerge.evaluate.task_refs import parse_task_ref
from evomerge.evaluate.tasks import load_task
from evomerge.experiment import load_experiment
from evomerge.genome import Models, load_space
from evomerge.recipe import load_recipe

LOADERS = {
    "recipe": load_recipe,
    "experiment": load_experiment,
    "search space": lambda path: load_space(path, Models(sources=("zoo:a",))),
    "task": lambda path: load_task(str(path)),
}
VALID_BUT = {  # a file of each kind with one unknown field
    "recipe": "method: linear\nsources: [{model: a}]\ncolour: blue\n",
    "experiment": "colour: blue\n",
    "search space": "kind: parameter\ncolour: blue\n",
    "task": "kind: generate\ndata: x\ncolour: blue\n",
}


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("content, expected", [
    (b"name: x\n  base: [oops\n", "c.yaml: malformed YAML (line 2): "),
    (b"name: caf\xe9\n", "c.yaml: not UTF-8 text (byte 0xe9 at offset 9)"),
    (b"- 1\n- 2\n", "c.yaml: expected a mapping at top level, got list"),
    (None, "c.yaml: colour: unknown field"),
])
def test_one_wording_for_every_config_file(tmp_path, kind, content, expected):
    path = tmp_path / "c.yaml"
    path.write_bytes(content if content is not None else VALID_BUT[kind].encode())
    with pytest.raises(ConfigError) as err:
        LOADERS[kind](path)
    assert str(err.value).startswith(f"{tmp_path}/{expected}") and "\n" not in str(err.value), str(err.value)


def test_an_inline_task_reference_reads_the_same_way():
    with pytest.raises(ConfigError, match=r"^--task: malformed YAML \(line 1\): "):
        parse_task_ref("{lm_eval: [x", "--task")
    with pytest.raises(ConfigError, match=r"^--task: metrc: unknown field$"):
        parse_task_ref("{lm_eval: x, metrc: acc}", "--task")
