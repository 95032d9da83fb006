"""Child processes that end with this process, however it ends.

Every external program (g++, the compiled testbench) starts through `popen` or `run` into one
process group held by a small guard process. The guard waits for end-of-file on a pipe whose
only writer is this process: when this process exits, even by SIGKILL, the guard ends the whole
group, so a compiler driver's own children (cc1plus, as, ld) end too. `end_children` ends the
group at once (the CLI calls it on SIGINT and SIGTERM, which no longer reach the group through
the terminal).

Workers of `process_pool` (spawned Python processes) join the same group and, on Linux, also
set PR_SET_PDEATHSIG: the kernel sends them SIGKILL when the thread that created them exits.
The pool starts its workers from the thread that first submits to it, and the pool lives only
inside that call, so in practice that is when this process ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterator

_PR_SET_PDEATHSIG = 1

# The guard: ignores the signals that end its group, waits until this process has gone (end of
# file on stdin), asks the group to end, then makes sure it has.
_GUARD = """
import os, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while os.read(0, 4096):
    pass
os.killpg(0, signal.SIGTERM)
time.sleep(0.5)
os.killpg(0, signal.SIGKILL)
"""

_lock = threading.RLock()  # re-entered by the signal handler when it interrupts _group
_guard: subprocess.Popen | None = None
_guard_owner = 0  # the pid that started _guard (a forked copy of this process needs its own)
_ended: int | None = None  # the signal that made end_children end the group


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C so that cleanup code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__("terminated" if signum == signal.SIGTERM else "interrupted")
        self.signum = signum


# --------------------------------------------------------------------------- child processes

def _group() -> int:
    """The process group of this process's children, led by a live guard."""
    global _guard, _guard_owner
    with _lock:
        if _ended is not None:
            raise Interrupted(_ended)
        if _guard is None or _guard_owner != os.getpid() or _guard.poll() is not None:
            _guard = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD], stdin=subprocess.PIPE,
                                      process_group=0)
            _guard_owner = os.getpid()
        return _guard.pid


def popen(command: list[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen, in the group that ends when this process ends."""
    return subprocess.Popen(command, process_group=_group(), **kwargs)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run, in the group that ends when this process ends."""
    return subprocess.run(command, process_group=_group(), **kwargs)


def end_children(signum: int = signal.SIGTERM) -> None:
    """End every child started here (and theirs) now; later starts raise Interrupted(signum)."""
    global _ended
    with _lock:
        _ended = signum
        if _guard is not None and _guard_owner == os.getpid() and _guard.poll() is None:
            try:
                os.killpg(_guard.pid, signal.SIGTERM)  # the guard ignores it
            except ProcessLookupError:
                pass


@contextlib.contextmanager
def end_children_on_signals() -> Iterator[None]:
    """Within: SIGINT or SIGTERM end the children, then raise Interrupted in the main thread
    (cleanup code runs as for Ctrl-C). The previous handlers come back on exit."""
    def handler(signum: int, frame: Any) -> None:
        end_children(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def ending_signal() -> int | None:
    """The signal that made end_children end this process's children, if any."""
    return _ended


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent thread exits (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _start_worker(parent: int, group: int, filters: list[tuple]) -> None:
    """Initializer of process_pool workers: end with the parent, see warnings as the parent does."""
    die_with_parent()
    try:
        os.setpgid(0, group)
    except OSError:
        os._exit(1)  # the group is gone: the parent has ended
    if os.getppid() != parent:  # the parent ended before the line above could take effect
        os._exit(1)
    warnings.resetwarnings()
    for action, message, category, module, lineno in filters:  # patterns are compiled, or plain text
        warnings.filterwarnings(action, getattr(message, "pattern", message) or "", category,
                                getattr(module, "pattern", module) or "", lineno, append=True)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of spawned worker processes that end with this process and inherit its warning
    filters (those of built-in categories). Spawn, not fork: a forked copy of a process that
    has run TensorFlow can crash."""
    filters = [f for f in warnings.filters if f[2].__module__ == "builtins"]
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), _group(), filters))


# --------------------------------------------------------------------------- temporaries
