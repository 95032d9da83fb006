"""What the C simulation stage does when things go wrong: a program that is not a compiler, a
full disk, a killed or terminated run, leftovers of killed runs; and that its output and its
projects stay clean (no third-party chatter, byte-identical projects)."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from firmware.config import load_configs
from firmware.hls.csim import build_testbench
from firmware.hls.project import TESTBENCH, _pin_volatile_content, convert
from smartpix import artifacts
from smartpix.errors import PipelineError
from tests.conftest import REPO, tiny_model_directory

CHATTER = ("cuDNN", "cuFFT", "cuBLAS", "copying AC", "Copying NNET", "UserWarning", "WARNING:tensorflow",
           "Traceback")


# --------------------------------------------------------------------------- fixtures and tools

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, its Catapult configuration, and its project converted once."""
    root = tmp_path_factory.mktemp("tiny")
    model = tiny_model_directory(root / "model")
    configs = root / "configs"
    configs.mkdir()
    (configs / "tiny.yml").write_text(
        f"name: tiny\nmodel: {model}\nbackend: Catapult\npart: nangate-45nm\nclock_period_ns: 25\n")
    firmware = root / "firmware"
    project = convert(load_configs(configs)[0], firmware / "tiny" / "hls")
    return {"root": root, "model": model, "configs": configs, "firmware": firmware, "project": project.directory}


def _csim(tiny: dict[str, Path], firmware: Path, cache: Path, env: dict[str, str] | None = None,
          stderr=subprocess.PIPE) -> subprocess.Popen:
    """`smartpix csim` on the tiny configuration, in a process of its own."""
    command = [sys.executable, "-m", "smartpix", "csim", "--config-dir", str(tiny["configs"]),
               "--firmware-dir", str(firmware), "--cache-dir", str(cache), "--reports", str(cache.parent / "reports")]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def _fake_compiler(folder: Path, body: str) -> Path:
    """A shell script standing in for the compiler: `body` runs first; the compiler check
    (`--version`, the test program) goes to g++."""
    path = folder / "fakecxx"
    path.write_text('#!/bin/sh\ncase "$*" in\n  --version|*"-o probe"*) exec g++ "$@" ;;\nesac\n' + body)
    path.chmod(0o755)
    return path


def _compiler_with_a_child(folder: Path) -> Path:
    """g++, after starting a long-lived child of its own for each compile: a process that only
    ends if something ends it, as a compiler's cc1plus or as would outlive a killed driver."""
    path = folder / "cxx-with-child"
    path.write_text('#!/bin/sh\ncase "$*" in *" -c "*) sleep 600 & ;; esac\nexec g++ "$@"\n')
    path.chmod(0o755)
    return path


def _small_project(folder: Path) -> Path:
    """The two sources a testbench build compiles, small enough to build in a moment."""
    (folder / "firmware").mkdir(parents=True)
    (folder / "firmware" / "myproject.cpp").write_text("int twice(int x) { return 2 * x; }\n")
    (folder / TESTBENCH).write_text("int twice(int);\nint main() { return twice(0); }\n")
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[tuple[int, str], str]:
    """Every process below `root`: (pid, start time) -> command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields:
            found[(pid, fields[19])] = _cmdline(pid)
            todo += children.get(pid, [])
    return found


def _alive(pid: int, started: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def _wait_for(condition, seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _survivors(tree: dict[tuple[int, str], str], marker: str) -> list[str]:
    """Processes of `tree`, or any mentioning `marker` in their command line, still alive."""
    alive = [cmd for (pid, started), cmd in tree.items() if _alive(pid, started)]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in _cmdline(int(entry.name)):
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z":
                alive.append(_cmdline(int(entry.name)))
    return alive


def _compiling(process: subprocess.Popen) -> dict[tuple[int, str], str] | None:
    """The process tree of `process` once cc1plus compiles the project's firmware in it."""
    tree = _descendants(process.pid)
    return tree if any("cc1plus" in cmd and "myproject.cpp" in cmd for cmd in tree.values()) else None


# --------------------------------------------------------------------------- compiler

def test_a_program_that_is_not_a_compiler_is_named_in_one_line(tiny, tmp_path):
    process = _csim(tiny, tmp_path / "firmware", tmp_path / "cache", env={"CXX": "true"})
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err == ("error: C++ compiler 'true' is not a C++ compiler: it exited with success but wrote no "
                   "program (install g++, or set CXX to a C++ compiler)\n")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "firmware").exists()


def test_a_build_that_writes_no_program_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    project = _small_project(tmp_path / "project")
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, "exit 0\n")))
    with pytest.raises(PipelineError) as error:
        build_testbench(project, tmp_path / "cache")
    assert str(error.value) == ("C++ compiler 'fakecxx' exited with success but wrote no object file for "
                                "myproject.cpp")
    assert _files(tmp_path / "cache") == []
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]


def test_an_empty_cached_program_is_built_again(tmp_path):
    project = _small_project(tmp_path / "project")
    binary, _, cached = build_testbench(project, tmp_path / "cache")
    assert not cached
    binary.write_bytes(b"")  # what a build that trusted a compiler's exit status could leave
    again, _, cached = build_testbench(project, tmp_path / "cache")
    assert again == binary and not cached
    assert subprocess.run([str(binary)]).returncode == 0


def test_a_full_disk_while_linking_is_named(tmp_path, monkeypatch):
    project = _small_project(tmp_path / "project")
    linker_says = ("/usr/bin/ld: final link failed: No space left on device\n"
                   "collect2: error: ld returned 1 exit status\n")
    compile_writes = 'case "$*" in *" -c "*) for last; do :; done; echo object > "$last"; exit 0 ;; esac\n'
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, f"{compile_writes}printf '{linker_says}' >&2\nexit 1\n")))
    with pytest.raises(PipelineError) as error:
        build_testbench(project, tmp_path / "cache")
    assert str(error.value) == ("linking the testbench failed: no space left on device: "
                                "/usr/bin/ld: final link failed: No space left on device")
    assert _files(tmp_path / "cache") == []


def test_a_full_disk_in_the_cache_is_named(tmp_path, monkeypatch):
    import errno

    make_temporary_dir = artifacts.make_temporary_dir
    cache = tmp_path / "cache"

    def full(folder, name):
        if Path(folder) == cache:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return make_temporary_dir(folder, name)

    monkeypatch.setattr(artifacts, "make_temporary_dir", full)
    with pytest.raises(PipelineError) as error:
        build_testbench(_small_project(tmp_path / "project"), cache)
    assert str(error.value) == f"building the testbench in {tmp_path / 'cache'} failed: No space left on device"


# --------------------------------------------------------------------------- killed runs

def test_stale_temporaries_are_those_of_processes_that_have_gone(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen(["sleep", "30"])
    host = artifacts._HOST
    try:
        (tmp_path / f".key.{gone.pid}@{host}.abc123.tmp").mkdir()
        (tmp_path / f".csim.{gone.pid}@{host}.x_y.tmp").write_text("")
        (tmp_path / f".key.{living.pid}@{host}.abc123.tmp").mkdir()
        (tmp_path / f".key.{os.getpid()}@{host}.abc123.tmp").mkdir()
        (tmp_path / "0123abcd").mkdir()
        assert sorted(p.name for p in artifacts.stale_temporaries(tmp_path)) == sorted(
            [f".csim.{gone.pid}@{host}.x_y.tmp", f".key.{gone.pid}@{host}.abc123.tmp"])
        assert [p.name for p in artifacts.stale_temporaries(tmp_path, "csim")] == [f".csim.{gone.pid}@{host}.x_y.tmp"]
        artifacts.sweep_stale_temporaries(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["0123abcd", f".key.{living.pid}@{host}.abc123.tmp", f".key.{os.getpid()}@{host}.abc123.tmp"])
    finally:
        living.kill()
        living.wait()


@pytest.mark.slow
def test_sigkill_during_conversion_ends_the_worker_before_it_writes_the_project(tiny, tmp_path):
    firmware = tmp_path / "firmware"
    process = _csim(tiny, firmware, tmp_path / "cache", stderr=subprocess.DEVNULL)
    try:
        converting = _wait_for(lambda: any((firmware / "tiny").glob(".hls.*.tmp")) or process.poll() is not None, 300)
        tree = _descendants(process.pid)
        assert converting and process.poll() is None
        assert any("multiprocessing" in cmd for cmd in tree.values())  # the spawned worker
        process.kill()
        process.wait()
        assert _wait_for(lambda: not _survivors(tree, str(tmp_path)), 20), _survivors(tree, str(tmp_path))
        assert not (firmware / "tiny" / "hls").exists()
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_sigkill_during_compilation_ends_the_compiler_and_a_rerun_cleans_up(tiny, tmp_path):
    cache = tmp_path / "cache"
    process = _csim(tiny, tiny["firmware"], cache, env={"CXX": str(_compiler_with_a_child(tmp_path))},
                    stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _compiling(process) or process.poll() is not None, 300)
        tree = _descendants(process.pid)
        assert process.poll() is None and "sleep 600 " in tree.values()
        process.kill()
        process.wait()
        assert _wait_for(lambda: not _survivors(tree, str(tmp_path)), 20), _survivors(tree, str(tmp_path))
    finally:
        process.kill()
        process.wait()
    left = [p.name for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert left and all(f".{process.pid}@" in name for name in left)  # the killed run could not clean up
    binary, _, cached = build_testbench(tiny["project"], cache)
    assert not cached and binary.stat().st_size > 0
    assert [p for p in cache.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_sigterm_during_compilation_is_one_line_and_cleans_up(tiny, tmp_path):
    cache = tmp_path / "cache"
    process = _csim(tiny, tiny["firmware"], cache, env={"CXX": str(_compiler_with_a_child(tmp_path))})
    try:
        assert _wait_for(lambda: _compiling(process) or process.poll() is not None, 300)
        tree = _descendants(process.pid)
        assert "sleep 600 " in tree.values()
        process.terminate()
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 143
    assert err.endswith("error: terminated\n")  # after the stage's own progress lines
    assert [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line] == [
        "error: terminated"]
    assert _wait_for(lambda: not _survivors(tree, str(tmp_path)), 20), _survivors(tree, str(tmp_path))
    assert [p for p in cache.rglob("*") if p.name.startswith(".") or p.name == "csim"] == []


# --------------------------------------------------------------------------- clean output, stable projects

@pytest.mark.slow
def test_a_cold_run_prints_only_its_own_lines(tiny, tmp_path):
    process = _csim(tiny, tmp_path / "firmware", tmp_path / "cache")
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    for text in CHATTER:
        assert text not in out and text not in err, text
    assert out.startswith("# C simulation: bit-exact verdicts\n")
    assert err == ""
    assert not [p for p in (tmp_path / "firmware" / "tiny").iterdir() if p.name != "hls"]  # no archive beside it


@pytest.mark.parametrize("written", ["Stamp: '79338552'", "Stamp: 1a2b3c4d"])
def test_the_random_stamp_is_pinned_quoted_or_not(tmp_path, written):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hls4ml_config.yml").write_text(f"Backend: Catapult\n{written}\nOutputDir: {project}\n")
    (project / "build_lib.sh").write_text(f"LIB_STAMP={written.split()[1].strip(chr(39))}\n")
    _pin_volatile_content(project, tmp_path / "final", "0123abcd" + "f" * 24, tmp_path / "model.h5")
    assert (project / "hls4ml_config.yml").read_text() == (
        f"Backend: Catapult\nStamp: '0123abcd'\nOutputDir: {tmp_path / 'final'}\n")
    assert (project / "build_lib.sh").read_text() == "LIB_STAMP=0123abcd\n"


@pytest.mark.slow
def test_conversions_with_all_digit_stamps_are_byte_identical(tiny, tmp_path, monkeypatch):
    """hls4ml's stamp is the end of a random UUID; YAML quotes it when it is all digits."""
    config = load_configs(tiny["configs"])[0]
    target = tmp_path / "project"
    for n, stamp in enumerate(("79338552", "12345678")):
        monkeypatch.setattr(uuid, "uuid4", lambda stamp=stamp: uuid.UUID(f"00000000-0000-4000-8000-0000{stamp}"))
        convert(config, target)
        if n == 0:
            shutil.move(target, tmp_path / "first")
    files = _files(target)
    assert files == _files(tmp_path / "first")
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "first", target, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
