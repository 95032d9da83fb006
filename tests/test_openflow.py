"""`smartpix synth` and `smartpix report` with the open RTL flow, on a model small enough to run
every step for real: da4ml Verilog, Verilator against QKeras, Yosys for an FPGA and an ASIC part."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from firmware.config import config_from_dict
from firmware.synth import run_open_flow
from smartpix.cli import main
from tests.conftest import tiny_model_directory

pytestmark = pytest.mark.slow

CONFIGS = {
    # two FPGA builds of one model at one clock share the Verilog, the Verilator build and verdict
    "tiny_vitis": "backend: Vitis\npart: xcvu13p-flga2577-2-e\nclock_period_ns: 5\n",
    "tiny_vivado": "backend: Vivado\npart: xc7z020clg400-1\nclock_period_ns: 5\n",
    "tiny_asic": "backend: Catapult\npart: nangate-45nm\nclock_period_ns: 25\n",
}


def _cache_entries(cache: Path) -> dict[str, list[str]]:
    return {kind: sorted(p.name for p in (cache / kind).iterdir() if not p.name.startswith("."))
            for kind in ("verilog", "verilator", "verdicts", "yosys")}


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("openflow")
    model_dir = tiny_model_directory(root / "models" / "tiny")
    configs = root / "configs"
    configs.mkdir()
    for name, body in CONFIGS.items():
        (configs / f"{name}.yml").write_text(f"name: {name}\nmodel: {model_dir}\n{body}")
    args = ["--config-dir", str(configs), "--firmware-dir", str(root / "fw"), "--reports", str(root / "reports")]
    return root, args


def test_synth_runs_the_open_flow_for_every_configuration(flow, capsys):
    root, args = flow
    synth = ["synth", *args, "--cache-dir", str(root / "build" / "cache" / "openflow")]
    assert main(synth) == 0
    printed = capsys.readouterr().out
    data = {c["config"]: c["open_flow"] for c in json.loads((root / "reports" / "synth.json").read_text())["configs"]}
    assert set(data) == set(CONFIGS)
    for name, result in data.items():
        assert result["status"] == "done" and result["rtl_exact"] is True, result
        assert f"{name}: open RTL flow: RTL exact on" in printed
        stimuli = [v["stimulus"] for v in result["verdicts"]]
        assert stimuli == ["held_out", "extremes", "hot_pixels", "random_codes", "rounding_midpoints"]
        assert all(v["mismatching_events"] == 0 and v["events"] > 0 for v in result["verdicts"])
        assert Path(result["project"], "project.json").is_file()
        assert result["source"].startswith("Yosys")
    for name in ("tiny_vitis", "tiny_vivado"):
        assert data[name]["yosys"]["LUT"] > 0 and data[name]["yosys"]["DSP"] == 0 and data[name]["yosys"]["GATES"] is None
        assert data[name]["latency_cycles"] >= 2
    assert data["tiny_asic"]["yosys"]["GATES"] > 0 and data["tiny_asic"]["yosys"]["LUT"] is None
    assert "synth_xilinx -family xc7" in data["tiny_vivado"]["source"]
    assert "synth_xilinx -family xcup" in data["tiny_vitis"]["source"]
    # a longer clock period packs more adder levels into each stage
    assert data["tiny_asic"]["latency_cycles"] <= data["tiny_vitis"]["latency_cycles"]

    cache = root / "build" / "cache" / "openflow"
    entries = _cache_entries(cache)
    assert {k: len(v) for k, v in entries.items()} == {"verilog": 2, "verilator": 2, "verdicts": 2, "yosys": 3}

    # a second run reuses every step: nothing new in any cache, the same figures
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert main(synth) == 0
    again = {c["config"]: c["open_flow"] for c in json.loads((root / "reports" / "synth.json").read_text())["configs"]}
    assert _cache_entries(cache) == entries
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps
    assert {k: v["yosys"] for k, v in again.items()} == {k: v["yosys"] for k, v in data.items()}

    # the summary carries the open-flow figures, labelled with their source
    assert main(["report", *args]) == 0
    with open(root / "reports" / "summary.csv") as handle:
        rows = {r["config"]: r for r in csv.DictReader(handle)}
    for name, result in data.items():
        assert rows[name]["rtlsim"] == "exact"
        assert rows[name]["open_latency_cycles"] == str(result["latency_cycles"])
        assert rows[name]["open_FF"] == str(result["yosys"]["FF"])
    assert rows["tiny_vitis"]["open_LUT"] == str(data["tiny_vitis"]["yosys"]["LUT"])
    assert rows["tiny_asic"]["open_gates"] == str(data["tiny_asic"]["yosys"]["GATES"])
    markdown = (root / "reports" / "summary.md").read_text()
    assert f"{data['tiny_asic']['yosys']['GATES']} gates" in markdown and "Yosys" in markdown


def test_a_configuration_the_flow_cannot_build_is_a_failed_row(tmp_path):
    config = config_from_dict({"name": "no_model", "model": str(tmp_path / "missing"), "backend": "Vitis",
                               "part": "xcvu13p-flga2577-2-e", "clock_period_ns": 5})
    result = run_open_flow(config, tmp_path / "rtl", tmp_path / "cache")
    assert result["status"] == "failed"
    assert "model.h5 is missing" in result["message"] and "\n" not in result["message"]
    assert not (tmp_path / "rtl").exists()


def test_a_synthesis_that_fails_keeps_the_rtl_verdict(tmp_path, monkeypatch, capsys):
    from firmware.rtl import yosys
    from firmware.synth import run_synthesis

    model_dir = tiny_model_directory(tmp_path / "models" / "tiny")
    # at 2 ns the design is pipelined, so Yosys runs on its parts, each a module written beside it
    config = config_from_dict({"name": "tiny_asic", "model": str(model_dir), "backend": "Catapult",
                               "part": "nangate-45nm", "clock_period_ns": 2})
    # a real Yosys run, stopped by its timeout before it can finish
    monkeypatch.setattr(yosys, "TIMEOUT_SECONDS", 0.01)
    [result] = run_synthesis([config], tmp_path / "fw", cache_dir=tmp_path / "cache")
    flow = result.open_flow
    assert flow["status"] == "failed" and result.failed
    assert flow["rtl_exact"] is True and sum(v["events"] for v in flow["verdicts"]) > 0
    assert "did not finish within 0.01 s" in flow["message"]
    # the message names the module Yosys was synthesizing, not a file the run wrote beside it
    assert re.search(r"yosys on tiny_part\d did not finish", flow["message"]), flow["message"]
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "open RTL flow" in ln)
    assert line.startswith("tiny_asic: open RTL flow: RTL exact on ") and "did not finish" in line
    # nothing about the failed synthesis is remembered: the next run tries again
    assert not list((tmp_path / "cache" / "yosys").glob("*.json"))
