"""Reading config files (recipes, experiments, search spaces, tasks, task references): one safe
YAML loader, one strict pydantic base, and one wording for every way a file can be wrong, so a
bad file fails with one line naming the file (and the field) whatever kind of config it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from evomerge.errors import ConfigError


class StrictModel(BaseModel):
    """The base of every config model: an unknown field is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


Model = TypeVar("Model", bound=BaseModel)


def parse_yaml(text: str, where: str) -> Any:
    """safe_load YAML text; ConfigError `where: malformed YAML (line N): problem`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        what = str(getattr(err, "problem", None) or err).strip().splitlines() or ["unreadable"]
        raise ConfigError(f"{where}: malformed YAML{line}: {what[0]}") from None


def read_yaml(path: str | Path) -> Any:
    """safe_load a YAML file; ConfigError naming the file when unreadable, not UTF-8 or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})") from None
    return parse_yaml(text, str(path))


def require_mapping(data: Any, where: str) -> dict[str, Any]:
    """`data` if it is a mapping; else ConfigError `where: expected a mapping at top level, got T`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    return data


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level must be a mapping."""
    return require_mapping(read_yaml(path), str(path))


# pydantic's tags for the members of tagged unions: not fields, so left out of error paths
UNION_TAGS = frozenset({"ParameterRecipe", "DataflowRecipe", "native_task", "lm_eval_task",
                        "budget_count", "budget_mapping"})


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as one line: `prefix: field.path: what is wrong` (an unknown
    field first: a typo explains the errors it causes)."""
    errors = err.errors()
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    parts: list[str] = []
    for part in e["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        elif part not in UNION_TAGS:
            parts.append(str(part))
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "missing":
        msg = "required field is missing"
    elif e["type"] == "extra_forbidden":
        msg = "unknown field"
    loc = ".".join(parts)
    line = f"{loc}: {msg}" if loc else msg
    return f"{prefix}: {line}" if prefix else line


def validate(model: type[Model], data: Any, where: str) -> Model:
    """`model` validated from `data`; ConfigError with one line naming `where` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None
