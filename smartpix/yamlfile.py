"""Reading the pipeline's YAML files (hardware configurations, model specs, sweeps): UTF-8 text,
one mapping, no key given twice; every failure is one line naming the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from smartpix.errors import PipelineError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        where = f"on line {line}" if line == first_line else f"(lines {first_line} and {line})"
        super().__init__(f"key {key!r} appears twice {where}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a mapping key given twice: PyYAML keeps the last one silently, so a
    setting pasted twice would quietly override the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base' then overriding a key of base is the point of merges
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
        return super().construct_mapping(node, deep=deep)


def read_mapping(path: Path, what: str = "file") -> dict[str, Any]:
    """The top-level mapping of the YAML file at `path`."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{what} {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise PipelineError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at line {line})") from None
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as err:
        raise PipelineError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


Loaded = TypeVar("Loaded")


def load_folder(folder: Path, load: Callable[[Path], Loaded], kind: str, names: list[str] | None = None) -> list[Loaded]:
    """Every `*.yml` of `folder` read with `load` (sorted by file name), or only the named ones
    (each loaded object has a `name`); `kind` names them in errors ("configuration")."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise PipelineError(f"no {kind} files (*.yml) in {folder}")
    loaded = [load(f) for f in files]
    if not names:
        return loaded
    by_name = {item.name: item for item in loaded}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PipelineError(f"no {kind} named {missing[0]!r} in {folder}; known: {', '.join(sorted(by_name))}")
    return [by_name[n] for n in names]


def named_file_header(data: dict[str, Any], path: Path | str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """The checks every named YAML file shares: only `allowed` top-level keys, a file-name-safe
    `name` that agrees with the file's name, a string `description`; returns (name, description)."""
    where = str(path)
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise PipelineError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise PipelineError(f"{where}: key 'name' must be a file-name-safe identifier, got {name!r}")
    if isinstance(path, Path) and path.stem != name:
        raise PipelineError(f"{where}: key 'name' is {name!r} but the file is named {path.name!r}; make them agree")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PipelineError(f"{where}: key 'description' must be a string, got {description!r}")
    return name, description
