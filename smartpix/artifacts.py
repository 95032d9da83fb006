"""Artifacts are written to a temporary name and renamed, so an interrupted run never leaves a
half-written file that a later stage would trust.

A temporary name carries its writer's process id and host, `.<name>.<pid>@<host>.<random>.tmp`:
what a killed run left behind (its process is gone) is removed by the next write into the same
folder, while the temporaries of runs still going, here or on another host sharing the folder,
are left alone. On failure, the OSError names the artifact by its final path (`err.artifact`),
not by its temporary name."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "localhost"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[a-z0-9_]+\.tmp$")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def pidpid_alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except (OverflowError, ValueError):
        return False  # not a possible process id
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def temporary_prefix(name: str) -> str:
    """The start of a temporary name for `name` written by this process (mkstemp and mkdtemp add
    the random part; the suffix is '.tmp')."""
    return f".{name}.{os.getpid()}@{_HOST}."


def make_temporary_dir(folder: str | os.PathLike[str], name: str) -> Path:
    """A new empty folder in `folder`, named as a temporary of this process."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temporary_prefix(name), suffix=".tmp", dir=folder))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Temporaries in `folder` (of `name`, when given) whose writer, a process on this host, is
    gone: what a killed run left behind."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if (match is None or match["host"] != _HOST or name not in (None, match["name"])
                or int(match["pid"]) == os.getpid() or pidpid_alive(int(match["pid"]))):
            continue
        stale.append(Path(entry.path))
    return stale


def sweep_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove what `stale_temporaries` finds; return what was removed. A temporary that cannot be
    removed is skipped: sweeping never fails a write."""
    removed: list[Path] = []
    for path in stale_temporaries(folder, name):
        _remove(path)
        if not os.path.lexists(path):
            removed.append(path)
    if removed:
        log.info("removed %d temporaries left by killed runs in %s", len(removed), folder)
    return removed


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        # mkdir says 'File exists' when the folder is a file: the problem is that it is not a folder
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), err.filename) from None


def _name_artifact(err: OSError, tmp: Path | None, target: Path) -> None:
    """Set `err.artifact` to the final path of what failed to be written: the error's own
    file name is the temporary one, or none at all for a failed write() or close()."""
    named = getattr(err, "artifact", None) or err.filename
    if tmp is None or not isinstance(named, (str, bytes, os.PathLike)):
        err.artifact = str(target)
        return
    path = Path(os.fsdecode(named))
    if path == tmp:
        err.artifact = str(target)
    elif tmp in path.parents:
        err.artifact = str(target / path.relative_to(tmp))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    try:
        _make_folder(target.parent)
        sweep_stale_temporaries(target.parent)
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(target.name), suffix=".tmp", dir=target.parent)
    except OSError as err:
        _name_artifact(err, None, target)
        raise
    tmp = Path(name)
    try:
        os.close(fd)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it owner-only; artifacts are ordinary files
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        _name_artifact(err, tmp, target)
        raise
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; it replaces `target` only on success."""
    target = Path(target)
    try:
        _make_folder(target.parent)
        sweep_stale_temporaries(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(target.name), suffix=".tmp", dir=target.parent))
    except OSError as err:
        _name_artifact(err, None, target)
        raise
    # the replaced target waits under a temporary name too, so that a kill leaves nothing else
    old = tmp.with_name(tmp.name[:-len(".tmp")] + "_old.tmp")
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        if os.path.lexists(target):
            # a folder cannot be renamed onto a non-empty one: move the old one aside first
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old, target)
                raise
        else:
            os.replace(tmp, target)
    except OSError as err:
        _name_artifact(err, tmp, target)
        raise
    finally:
        _remove(tmp)
        _remove(old)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented, key-sorted JSON atomically (stable bytes for stable input)."""
    return write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")
