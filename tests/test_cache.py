"""The one cache key: a change to any module a stage imports (directly, lazily or transitively)
changes that stage's key; a file the stage does not read leaves it alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from smartpix.cache import PACKAGES, content_key, source_digests

REPO = Path(__file__).resolve().parents[1]

STAGES = {
    "hls-project": "firmware.hls.project",
    "csim-verdict": "firmware.hls.csim",
    "rtl-verilog": "firmware.rtl.verilog",
    "rtl-verdict": "firmware.rtl.flow",
    # a design point of a sweep trains, evaluates, converts, simulates and estimates
    "sweep-point": "sweep.points",
}


@pytest.fixture()
def tree(tmp_path) -> Path:
    """A copy of the project's packages that a test may edit."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    return tmp_path


def _keys(root: Path) -> dict[str, str]:
    return {stage: content_key(module, stage, "input", root=root) for stage, module in STAGES.items()}


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize("edited, stages", [
    # passes are imported lazily inside the converter, and the converter by the C simulation
    ("firmware/hls/passes.py", {"hls-project", "csim-verdict", "sweep-point"}),
    ("firmware/hls/templates/testbench.cpp", {"hls-project", "csim-verdict", "sweep-point"}),
    # the fixed-point type and the quantizer mapping shape both flows
    ("firmware/fixedpoint.py", set(STAGES)),
    ("firmware/graph.py", set(STAGES)),
    # the private third-party APIs behind one adapter
    ("firmware/thirdparty.py", set(STAGES)),
    # comparison of codes: both verdicts, neither generated project
    ("firmware/verify/verdict.py", {"csim-verdict", "rtl-verdict", "sweep-point"}),
    ("firmware/verify/stimuli.py", {"csim-verdict", "rtl-verdict", "sweep-point"}),
    # the integer replay is the Verilog's source and, through the exact reference, both verdicts'
    ("firmware/rtl/replay.py", {"csim-verdict", "rtl-verilog", "rtl-verdict", "sweep-point"}),
    # the Verilog depends on the model and the clock only, not on the configuration module
    ("firmware/config.py", {"hls-project", "csim-verdict", "rtl-verdict", "sweep-point"}),
    ("train/evaluate.py", {"sweep-point"}),
    ("sweep/points.py", {"sweep-point"}),
])
def test_editing_a_module_changes_exactly_the_keys_of_the_stages_that_import_it(tree, edited, stages):
    before = _keys(tree)
    _touch(tree / edited)
    after = _keys(tree)
    changed = {stage for stage in STAGES if before[stage] != after[stage]}
    assert changed == stages


@pytest.mark.parametrize("unrelated", ["README.md", "firmware/summary.py", "sweep/report.py"])
def test_a_file_no_stage_imports_changes_no_key(tree, unrelated):
    before = _keys(tree)
    _touch(tree / unrelated)
    assert _keys(tree) == before


def test_inputs_are_hashed_by_content_not_by_name(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    assert content_key("firmware.hls.csim", a) == content_key("firmware.hls.csim", b)
    b.write_bytes(b"other weights")
    assert content_key("firmware.hls.csim", a) != content_key("firmware.hls.csim", b)
    assert content_key("firmware.hls.csim", 1.0) != content_key("firmware.hls.csim", 2.0)


def test_a_stage_depends_on_the_modules_it_imports_inside_functions():
    files = source_digests(["firmware.hls.csim"], REPO)
    # csim imports the converter at the top, which imports the passes only inside a function
    assert "firmware/hls/passes.py" in files
    assert "firmware/verify/verdict.py" in files
    assert "firmware/summary.py" not in files
