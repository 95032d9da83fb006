"""`make synth` without vendor tools, Catapult runs read back, and the summary built from
reports copied back or from a folder of projects synthesized elsewhere."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from firmware.config import config_from_dict
from firmware.hls.vendor import run_vendor, vendor_command
from firmware.summary import summary_rows, write_summary
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "vendor_reports"
CATAPULT = REPO / "tests" / "fixtures" / "catapult_reports" / "smart-pix__smart-pixels-ml"
CATAPULT_TABLE = CATAPULT / "SmtPxl_prj" / "SmtPxl.v1" / "nnet_layer_results.txt"
PNG = b"\x89PNG\r\n\x1a\n"


def _config(model_dir, name="cfg", backend="Vitis"):
    return config_from_dict({"name": name, "model": str(model_dir), "backend": backend,
                             "part": "xc7z020-clg400-1", "clock_period_ns": 5})


def test_summary_reads_reports_synthesized_elsewhere(random_models, tmp_path):
    config = _config(random_models["baseline"])
    project = tmp_path / "firmware" / config.name / "hls"
    shutil.copytree(FIXTURES / "Thifjj__Iris_hls4ml_pynqZ2" / "projeto_iris_hls_ip_axi", project)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "csim.json").write_text(json.dumps(
        {"configs": [{"config": "cfg", "exact": True, "verdicts": [{"events": 7}]}]}))
    (tmp_path / "reports" / "evaluation").mkdir()
    (tmp_path / "reports" / "evaluation" / "resolution.json").write_text(json.dumps({"resolution": [
        {"model": "baseline", "target": "x-midplane", "core_width_68": 10.5},
        {"model": "other", "target": "x-midplane", "core_width_68": 99.0}]}))
    rows = summary_rows([config], tmp_path / "reports", tmp_path / "firmware")
    row = rows[0]
    assert row["x_res_um"] == 10.5 and row["y_res_um"] is None
    # figures as SOURCE.txt lists them for this Vitis HLS 2025.1 report
    assert (row["LUT"], row["FF"], row["DSP"], row["BRAM_18K"]) == (4725, 13240, 110, 3)
    assert (row["latency_min_cycles"], row["latency_max_cycles"], row["ii_min"], row["ii_max"]) == (32, 32, 1, 1)
    assert row["csim"] == "exact" and row["csim_events"] == 7 and row["params"] == 2029
    assert "Vitis HLS 2025.1" in row["hls_source"]
    written = write_summary(rows, tmp_path / "reports")
    names = {p.name for p in written}
    assert {"summary.md", "summary.csv", "summary.json", "summary_pareto.png"} <= names
    assert "| 4725 |" in (tmp_path / "reports" / "summary.md").read_text()


def test_summary_says_why_a_row_has_no_numbers(random_models, tmp_path):
    rows = summary_rows([_config(random_models["baseline"])], tmp_path, tmp_path / "firmware")
    assert rows[0]["LUT"] is None and "synthesis not run" in rows[0]["note"] and rows[0]["csim"] == "not run"


def test_plots_without_points_are_not_drawn_and_say_why(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "summary_pareto.png"
    stale.write_bytes(PNG)  # from an earlier run that had resolution figures
    rows = summary_rows([_config(tmp_path / "model")], tmp_path / "reports", tmp_path / "firmware")
    written = write_summary(rows, out)
    assert not stale.exists() and not any(p.suffix == ".png" for p in written)
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.json", "summary.md"]
    markdown = (out / "summary.md").read_text()
    assert "- pareto: not drawn, no configuration has both a resolution and a LUT figure" in markdown
    assert "- resources: not drawn, no configuration has resource figures" in markdown
    assert "- latency: not drawn, no configuration has a latency in ns" in markdown


def test_vendor_commands_follow_hls4ml(tmp_path):
    assert vendor_command("Vivado", "vivado_hls", True, False, False)[:3] == ["vivado_hls", "-f", "build_prj.tcl"]
    assert vendor_command("Vitis", "/opt/vitis-run", True, True, False) == [
        "/opt/vitis-run", "--tcl", "build_prj.tcl", "--mode", "hls"]
    assert "synth=1" in vendor_command("Catapult", "catapult", True, False, False)[-1]


@pytest.mark.slow
def test_synth_without_vendor_tools_exits_cleanly(random_models, tmp_path):
    import os

    # a PATH without any vendor tool, as on a machine where none is installed
    env = {k: v for k, v in os.environ.items() if k not in ("MGC_HOME", "CATAPULT_HOME")}
    env["PATH"] = str(tmp_path / "empty-bin")
    configs = tmp_path / "configs"
    configs.mkdir()
    for name, backend in (("a", "Vivado"), ("b", "Catapult")):
        (configs / f"{name}.yml").write_text(
            f"name: {name}\nmodel: {random_models['baseline']}\nbackend: {backend}\n"
            "part: xc7z020clg400-1\nclock_period_ns: 10\n")
    out = subprocess.run([sys.executable, "-m", "smartpix", "synth", "--config-dir", str(configs),
                          "--firmware-dir", str(tmp_path / "fw"), "--reports", str(tmp_path / "rep"), "--no-open-flow"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "a: Vivado HLS: tool missing (Vivado HLS not found: install Vivado HLS" in out.stdout
    assert "b: Catapult HLS: tool missing" in out.stdout
    data = json.loads((tmp_path / "rep" / "synth.json").read_text())
    assert [c["vendor"]["status"] for c in data["configs"]] == ["tool missing", "tool missing"]


# ----- Catapult runs ------------------------------------------------------------------------------


def _fake_catapult(bin_dir, body: str) -> None:
    """A `catapult` on PATH that does what `body` says in the project folder, as the real one
    runs hls4ml's build_prj.tcl there."""
    bin_dir.mkdir()
    tool = bin_dir / "catapult"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)


def _catapult_project(root):
    project = root / "fw" / "cat" / "hls"
    project.mkdir(parents=True)
    # the lines of hls4ml's Catapult build_prj.tcl that name the top, the clock and the library
    (project / "build_prj.tcl").write_text(
        "  project new -name myproject_prj\nset design_top myproject\nset hls_clock_period 25\n"
        "setup_asic_libs {nangate-45nm}\n")
    return project


def _catapult_config(root):
    return config_from_dict({"name": "cat", "model": str(root / "model"), "backend": "Catapult",
                             "part": "nangate-45nm", "clock_period_ns": 25})


def test_catapult_synthesis_is_done_with_its_figures(tmp_path, monkeypatch):
    project = _catapult_project(tmp_path)
    _fake_catapult(tmp_path / "bin", "mkdir -p myproject_prj/myproject.v1\n"
                   f"cp '{CATAPULT_TABLE}' myproject_prj/myproject.v1/nnet_layer_results.txt\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.delenv("MGC_HOME", raising=False)
    monkeypatch.delenv("CATAPULT_HOME", raising=False)
    result = run_vendor(_catapult_config(tmp_path), project)
    assert result.status == "done" and result.message == ""
    figures = result.reports["hls"]
    assert figures["tool"] == "Catapult" and figures["part"] == "nangate-45nm"
    # the figures SOURCE.txt lists: 307,810 layers + FIFOs, 273 cycles in the depthwise stage
    assert figures["area_total"] == 307810 and figures["latency_worst_cycles"] == 273
    assert figures["latency_worst_ns"] == 273 * 25
    # the synth stage's record, read by the summary
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "synth.json").write_text(json.dumps(
        {"configs": [{"config": "cat", "vendor": dataclasses.asdict(result), "open_flow": {}}]}))
    (row,) = summary_rows([_catapult_config(tmp_path)], reports, tmp_path / "fw")
    assert row["area"] == 307810
    assert (row["latency_max_cycles"], row["ii_max"], row["latency_max_ns"]) == (273, 273, 273 * 25)
    assert row["LUT"] is None and "failed" not in row["note"]
    assert row["hls_source"] == f"Catapult: {project}/myproject_prj/myproject.v1/nnet_layer_results.txt"
    written = write_summary([row], tmp_path / "out")
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| area (library units) |" in markdown and "| 307810 |" in markdown
    assert "212,730 (70%)" in markdown  # the first dense layer's share, as SOURCE.txt states it
    assert (tmp_path / "out" / "summary_resources.png") in written


def test_catapult_run_without_a_layer_table_is_done_and_says_why(tmp_path, monkeypatch):
    project = _catapult_project(tmp_path)
    _fake_catapult(tmp_path / "bin", "exit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    result = run_vendor(_catapult_config(tmp_path), project)
    assert result.status == "done" and result.reports is None
    assert "figures could not be read" in result.message and "nnet_layer_results.txt" in result.message
    (tmp_path / "bin" / "catapult").write_text("#!/bin/sh\necho 'Error: license checkout failed'\nexit 3\n")
    failed = run_vendor(_catapult_config(tmp_path), project)
    assert failed.status == "failed"
    assert failed.message == "catapult exited with status 3: Error: license checkout failed"


# ----- smartpix report --from -------------------------------------------------------------------


def _report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartpix", "report", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_report_from_the_fixture_folder_writes_the_summary(tmp_path):
    out = tmp_path / "out"
    stale = out / "summary_pareto.png"
    stale.parent.mkdir()
    stale.write_bytes(PNG)  # from an earlier run that had resolution figures
    done = _report("--from", str(FIXTURES), "--reports", str(out))
    assert done.returncode == 0, done.stderr
    for name in ("summary.md", "summary.csv", "summary.json", "summary_resources.png", "summary_latency.png"):
        assert (out / name).is_file(), name
    for name in ("summary_resources.png", "summary_latency.png"):
        assert (out / name).read_bytes().startswith(PNG)
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["config"]: row for row in summary["rows"]}
    assert sorted(rows) == sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    # figures as the SOURCE.txt files list them
    assert rows["Thifjj__Iris_hls4ml_pynqZ2"]["LUT"] == 4725
    assert rows["thaarres__dnd_hls4ml"]["latency_max_cycles"] == 5
    assert rows["nycu-pcs-lab__LFADs-model-template"]["vivado_DSP"] == 2058
    with open(out / "summary.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    # no resolution figures here: no resolution plot, no stale one, and the summary says why
    assert not stale.exists()
    markdown = (out / "summary.md").read_text()
    assert "pareto: not drawn, no configuration has both a resolution and a LUT figure" in markdown
    assert "[resources](summary_resources.png)" in markdown


def test_report_from_a_folder_joins_a_project_to_its_configuration(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(CATAPULT, results / "cat")
    shutil.copytree(FIXTURES / "thaarres__dnd_hls4ml", results / "elsewhere")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "cat.yml").write_text(
        f"name: cat\nmodel: {tmp_path / 'model'}\nbackend: Catapult\npart: nangate-45nm\nclock_period_ns: 25\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "csim.json").write_text(json.dumps(
        {"configs": [{"config": "cat", "exact": True, "verdicts": [{"events": 11}]}]}))
    done = _report("--from", str(results), "--reports", str(reports), "--config-dir", str(configs))
    assert done.returncode == 0, done.stderr
    rows = {row["config"]: row for row in json.loads((reports / "summary.json").read_text())["rows"]}
    cat = rows["cat"]
    assert (cat["csim"], cat["csim_events"], cat["backend"]) == ("exact", 11, "Catapult")
    assert cat["area"] == 307810 and cat["latency_max_cycles"] == 273
    assert "failed" not in cat["note"] and cat["hls_source"].startswith("Catapult: ")
    # the layer table states no clock: the configuration's 25 ns
    assert cat["latency_max_ns"] == 273 * 25
    assert rows["elsewhere"]["csim"] is None and rows["elsewhere"]["LUT"] == 59561
    assert "reports only" in rows["elsewhere"]["note"]
    assert json.loads((reports / "summary.json").read_text())["units"]["area"].startswith(
        "the technology library's area unit")
