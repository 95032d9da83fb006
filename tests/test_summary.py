"""`make synth` without vendor tools, and the summary built from reports copied back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from firmware.config import config_from_dict
from firmware.summary import summary_rows, write_summary
from firmware.hls.vendor import vendor_command
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "vendor_reports"


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
    written = write_summary(rows, tmp_path / "reports", tmp_path / "firmware")
    names = {p.name for p in written}
    assert {"summary.md", "summary.csv", "summary.json", "summary_pareto.png"} <= names
    assert "| 4725 |" in (tmp_path / "reports" / "summary.md").read_text()


def test_summary_says_why_a_row_has_no_numbers(random_models, tmp_path):
    rows = summary_rows([_config(random_models["baseline"])], tmp_path, tmp_path / "firmware")
    assert rows[0]["LUT"] is None and "synthesis not run" in rows[0]["note"] and rows[0]["csim"] == "not run"


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
            f"name: {name}\nmodel: {random_models['baseline']}\nbackend: {backend}\npart: xc7z020clg400-1\nclock_period_ns: 10\n")
    out = subprocess.run([sys.executable, "-m", "smartpix", "synth", "--config-dir", str(configs),
                          "--firmware-dir", str(tmp_path / "fw"), "--reports", str(tmp_path / "rep"), "--no-open-flow"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "a: Vivado HLS: tool missing (Vivado HLS not found: install Vivado HLS" in out.stdout
    assert "b: Catapult HLS: tool missing" in out.stdout
    data = json.loads((tmp_path / "rep" / "synth.json").read_text())
    assert [c["vendor"]["status"] for c in data["configs"]] == ["tool missing", "tool missing"]
