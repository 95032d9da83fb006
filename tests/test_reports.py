"""Vendor report parsing against real Vivado/Vitis HLS and Vivado reports.

The fixtures are byte-for-byte copies of reports from public hls4ml projects, one folder
each, with a SOURCE.txt that lists the figures they hold. The expected values below were
transcribed by hand from those SOURCE.txt files (and, where a figure is not listed there,
from reading the report itself; such entries say so).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.hls import vendor_reports as reports
from smartpix.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]


def _fixtures_dir() -> Path:
    """The copies in tests/fixtures/vendor_reports, or $SMARTPIX_VENDOR_REPORTS to run the same
    checks on another set of folders."""
    override = os.environ.get("SMARTPIX_VENDOR_REPORTS")
    return Path(override) if override else REPO / "tests" / "fixtures" / "vendor_reports"


FIXTURES = _fixtures_dir()

CHI = "ChiRuiChen__AutoEncoder_hls4ml"
IRIS = "Thifjj__Iris_hls4ml_pynqZ2"
YAN = "YanLunHuang__full_model"
NYCU = "nycu-pcs-lab__LFADs-model-template"
POM = "pominiq__DNNonSilicon"
SEAN = "seanlipps__ECE226_CoDesign"
THA = "thaarres__dnd_hls4ml"

CHI_REPORT = "myproject_prj/solution1/syn/report"
IRIS_REPORT = "projeto_iris_hls_ip_axi/myproject_prj/solution1/syn/report"
POM_REPORT = "hls4ml_prj/myproject_prj/solution1/syn/report"
SEAN_PRJ = "model_1/hls4ml_prj"
SEAN_REPORT = f"{SEAN_PRJ}/myproject_prj/solution1/syn/report"

# --- HLS figures per fixture folder, from SOURCE.txt ------------------------------------------
# resources/available keyed by the normalized names; "dsp_key" is how the report spells DSP.
# latency_*_ns_reported is the report's own real-time figure converted to ns by hand.
EXPECTED_HLS: dict[str, dict | None] = {
    CHI: dict(
        tool="Vivado HLS", tool_version="2019.2.1", top="myproject",
        part="xc7z020-clg400-1", family="zynq",
        clock_target_ns=5.00, clock_uncertainty_ns=0.62, clock_estimated_ns=4.429,
        latency_best_cycles=96014, latency_average_cycles=96014, latency_worst_cycles=96165,
        latency_best_ns_reported=480_000.0, latency_worst_ns_reported=481_000.0,  # 0.480/0.481 ms
        interval_min=4625, interval_max=95949,
        pipeline_type="dataflow", pipeline_kind="dataflow",
        resources=dict(BRAM_18K=285, DSP=118, FF=51414, LUT=33365, URAM=0),
        available=dict(BRAM_18K=280, DSP=220, FF=106400, LUT=53200, URAM=0),
        available_per_slr={},
        dsp_key="DSP48E",
    ),
    IRIS: dict(
        tool="Vitis HLS", tool_version="2025.1", top="myproject",
        part="xc7z020-clg400-1", family="zynq",
        clock_target_ns=5.00, clock_uncertainty_ns=1.35, clock_estimated_ns=3.624,
        latency_best_cycles=32, latency_average_cycles=32, latency_worst_cycles=32,
        latency_best_ns_reported=160.0, latency_worst_ns_reported=160.0,  # 0.160 us
        interval_min=1, interval_max=1,
        pipeline_type="yes", pipeline_kind="pipelined",
        resources=dict(BRAM_18K=3, DSP=110, FF=13240, LUT=4725, URAM=0),
        available=dict(BRAM_18K=280, DSP=220, FF=106400, LUT=53200, URAM=0),
        available_per_slr={},
        dsp_key="DSP",
    ),
    YAN: dict(
        tool="Vivado HLS", tool_version="2019.2", top="myproject",
        part="xcu50-fsvh2104-2L-e", family="virtexuplus",
        clock_target_ns=5.00, clock_uncertainty_ns=0.62, clock_estimated_ns=4.365,
        latency_best_cycles=594652, latency_average_cycles=None, latency_worst_cycles=594652,
        latency_best_ns_reported=2_973_000.0, latency_worst_ns_reported=2_973_000.0,  # 2.973 ms
        interval_min=590082, interval_max=590082,
        pipeline_type="dataflow", pipeline_kind="dataflow",
        resources=dict(BRAM_18K=983, DSP=4738, FF=437546, LUT=590554, URAM=115),
        # SOURCE.txt lists only the per-SLR rows; the device-wide "Available" row further
        # down the same table reads 2688 | 5952 | 1743360 | 871680 | 640, which matches the
        # Vivado report's capacities for this part (1344 BRAM tiles = 2688 BRAM_18K, 5952
        # DSPs, 1743360 registers, 871680 LUTs, 640 URAM).
        available=dict(BRAM_18K=2688, DSP=5952, FF=1743360, LUT=871680, URAM=640),
        available_per_slr=dict(BRAM_18K=1344, DSP=2976, FF=871680, LUT=435840, URAM=320),
        dsp_key="DSP48E",
    ),
    NYCU: None,
    POM: dict(
        tool="Vivado HLS", tool_version="2020.1", top="myproject",
        part="xc7z020-clg400-1", family="zynq",
        clock_target_ns=2.50, clock_uncertainty_ns=3.12, clock_estimated_ns=18.982,
        latency_best_cycles=14409, latency_average_cycles=14409, latency_worst_cycles=14409,
        latency_best_ns_reported=274_000.0, latency_worst_ns_reported=274_000.0,  # 0.274 ms
        interval_min=14403, interval_max=14403,
        pipeline_type="dataflow", pipeline_kind="dataflow",
        resources=dict(BRAM_18K=293, DSP=1170, FF=682850, LUT=415081, URAM=0),
        available=dict(BRAM_18K=280, DSP=220, FF=106400, LUT=53200, URAM=0),
        available_per_slr={},
        dsp_key="DSP48E",
    ),
    SEAN: dict(
        tool="Vitis HLS", tool_version="2024.1", top="myproject",
        part="xcu250-figd2104-2L-e", family="virtexuplus",
        clock_target_ns=5.00, clock_uncertainty_ns=1.35, clock_estimated_ns=3.530,
        latency_best_cycles=395, latency_average_cycles=395, latency_worst_cycles=395,
        latency_best_ns_reported=1975.0, latency_worst_ns_reported=1975.0,  # 1.975 us
        interval_min=390, interval_max=390,
        pipeline_type="dataflow", pipeline_kind="dataflow",
        resources=dict(BRAM_18K=29, DSP=467, FF=7123, LUT=17966, URAM=0),
        available=dict(BRAM_18K=5376, DSP=12288, FF=3456000, LUT=1728000, URAM=1280),
        available_per_slr=dict(BRAM_18K=1344, DSP=3072, FF=864000, LUT=432000, URAM=320),
        dsp_key="DSP",
    ),
    THA: dict(
        tool="Vivado HLS", tool_version="2020.1", top="myproject",
        part="xczu9eg-ffvb1156-2-e", family="zynquplus",
        clock_target_ns=5.00, clock_uncertainty_ns=0.62, clock_estimated_ns=4.218,
        latency_best_cycles=5, latency_average_cycles=None, latency_worst_cycles=5,
        latency_best_ns_reported=25.0, latency_worst_ns_reported=25.0,
        interval_min=1, interval_max=1,
        pipeline_type="function", pipeline_kind="pipelined",
        resources=dict(BRAM_18K=1, DSP=0, FF=4561, LUT=59561, URAM=0),
        available=dict(BRAM_18K=1824, DSP=2520, FF=548160, LUT=274080, URAM=0),
        available_per_slr={},
        dsp_key="DSP48E",
    ),
}

# "Utilization (%)" rows of the text reports as SOURCE.txt lists them, in the order
# BRAM_18K | DSP | FF | LUT | URAM; "~0" means below 1 %.
RPT_UTILIZATION = {
    CHI: ("101", "53", "48", "62", "0"),
    IRIS: ("1", "50", "12", "8", "0"),
    POM: ("104", "531", "641", "780", "0"),
    THA: ("~0", "0", "~0", "21", "0"),
}
RPT_UTILIZATION_SLR = {
    YAN: ("73", "159", "50", "135", "35"),
    SEAN: ("2", "15", "~0", "4", "0"),
}

# --- Vivado report_utilization figures, from SOURCE.txt: (used, available, util%) ----------
EXPECTED_VIVADO: dict[str, dict | None] = {
    CHI: None,
    IRIS: None,
    YAN: dict(
        tool_version="2019.2", top="myproject", device="xcu50fsvh2104-2L",
        design_state="Synthesized",
        rows=dict(
            LUT=(264101, 871680, 30.30), FF=(298539, 1743360, 17.12),
            BRAM_TILE=(377, 1344, 28.05), URAM=(115, 640, 17.97), DSP=(4752, 5952, 79.84),
        ),
        site_types=dict(LUT="CLB LUTs*", FF="CLB Registers"),
    ),
    NYCU: dict(
        tool_version="2022.2", top="myproject", device="xcu50-fsvh2104-2L-e",
        design_state="Synthesized",
        rows=dict(
            LUT=(179437, 871680, 20.59), FF=(227971, 1743360, 13.08),
            BRAM_TILE=(251, 1344, 18.68), URAM=(0, 640, 0.00), DSP=(2058, 5952, 34.58),
        ),
        site_types=dict(LUT="CLB LUTs*", FF="CLB Registers"),
    ),
    POM: dict(
        tool_version="2020.1", top="myproject", device="7z020clg400-1",
        design_state="Synthesized",
        rows=dict(
            LUT=(358266, 53200, 673.43), FF=(308427, 106400, 289.88),
            BRAM_TILE=(140, 140, 100.00), DSP=(220, 220, 100.00),
        ),
        site_types=dict(LUT="Slice LUTs*", FF="Slice Registers"),
    ),
    SEAN: dict(
        tool_version="2024.1", top="myproject", device="xcu250-figd2104-2L-e",
        design_state="Optimized",
        rows=dict(
            LUT=(8565, 1728000, 0.50), FF=(4864, 3456000, 0.14),
            BRAM_TILE=(12, 2688, 0.45), URAM=(0, 1280, 0.00), DSP=(467, 12288, 3.80),
        ),
        site_types=dict(LUT="CLB LUTs*", FF="CLB Registers"),
    ),
    THA: dict(
        tool_version="2020.1", top="myproject", device="xczu9egffvb1156-2",
        design_state="Synthesized",
        rows=dict(
            LUT=(31277, 274080, 11.41), FF=(4555, 548160, 0.83),
            BRAM_TILE=(0.5, 912, 0.05), DSP=(0, 2520, 0.00),
        ),
        site_types=dict(LUT="CLB LUTs*", FF="CLB Registers"),
    ),
}

# the files a folder read must use (XML preferred, rpt checked, never the wrapper csynth.xml,
# never the post-route vivado_utilization.rpt)
EXPECTED_FILES = {
    CHI: [f"{CHI_REPORT}/myproject_csynth.xml", f"{CHI_REPORT}/myproject_csynth.rpt"],
    IRIS: [f"{IRIS_REPORT}/myproject_csynth.xml", f"{IRIS_REPORT}/myproject_csynth.rpt"],
    YAN: ["myproject_csynth.rpt", "vivado_synth.rpt"],
    NYCU: ["vivado_synth.rpt"],
    POM: [
        f"{POM_REPORT}/myproject_csynth.xml",
        f"{POM_REPORT}/myproject_csynth.rpt",
        "hls4ml_prj/vivado_synth.rpt",
    ],
    SEAN: [
        f"{SEAN_REPORT}/myproject_csynth.xml",
        f"{SEAN_REPORT}/myproject_csynth.rpt",
        f"{SEAN_PRJ}/vivado_synth.rpt",
    ],
    THA: ["myproject_csynth.rpt", "vivado_synth.rpt"],
}

# (xml, rpt) pairs that describe the same run
XML_RPT_PAIRS = {
    CHI: (f"{CHI_REPORT}/myproject_csynth.xml", f"{CHI_REPORT}/myproject_csynth.rpt"),
    IRIS: (f"{IRIS_REPORT}/myproject_csynth.xml", f"{IRIS_REPORT}/myproject_csynth.rpt"),
    POM: (f"{POM_REPORT}/myproject_csynth.xml", f"{POM_REPORT}/myproject_csynth.rpt"),
    SEAN: (f"{SEAN_REPORT}/myproject_csynth.xml", f"{SEAN_REPORT}/myproject_csynth.rpt"),
}

FOLDERS = sorted(EXPECTED_FILES)
ORDER = ("BRAM_18K", "DSP", "FF", "LUT", "URAM")


def _fixture(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


@pytest.fixture(scope="module")
def folder_results() -> dict[str, dict]:
    return {folder: reports.read_reports(_fixture(folder)) for folder in FOLDERS}


def test_every_fixture_folder_has_expectations():
    assert FIXTURES.is_dir(), f"fixture folder {FIXTURES} is missing (set SMARTPIX_VENDOR_REPORTS)"
    on_disk = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert on_disk == FOLDERS
    assert sorted(EXPECTED_HLS) == sorted(EXPECTED_VIVADO) == FOLDERS


# ----- figures of every fixture ---------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_hls_figures(folder, folder_results):
    expected = EXPECTED_HLS[folder]
    hls = folder_results[folder]["hls"]
    if expected is None:
        assert hls is None
        return
    expected = dict(expected)
    dsp_key = expected.pop("dsp_key")
    for name, value in expected.items():
        if isinstance(value, float):
            assert hls[name] == pytest.approx(value), name
        else:
            assert hls[name] == value, name
    assert hls["resource_keys"]["DSP"] == dsp_key
    # the ns figures are cycles x target clock, independent of the tool's own rounding
    target = expected["clock_target_ns"]
    assert hls["latency_best_ns"] == pytest.approx(expected["latency_best_cycles"] * target)
    assert hls["latency_worst_ns"] == pytest.approx(expected["latency_worst_cycles"] * target)
    for key, used in expected["resources"].items():
        total = expected["available"][key]
        if total:
            assert hls["utilization_pct"][key] == pytest.approx(100 * used / total, abs=0.005)


@pytest.mark.parametrize("folder", FOLDERS)
def test_vivado_figures(folder, folder_results):
    expected = EXPECTED_VIVADO[folder]
    vivado = folder_results[folder]["vivado_synth"]
    if expected is None:
        assert vivado is None
        return
    assert vivado["tool"] == "Vivado"
    for name in ("tool_version", "top", "device", "design_state"):
        assert vivado[name] == expected[name], name
    assert sorted(vivado["used"]) == sorted(expected["rows"])
    for key, (used, available, pct) in expected["rows"].items():
        assert vivado["used"][key] == pytest.approx(used), key
        assert vivado["available"][key] == pytest.approx(available), key
        assert vivado["utilization_pct"][key] == pytest.approx(pct), key
    for key, name in expected["site_types"].items():
        assert vivado["site_types"][key] == name


@pytest.mark.parametrize("folder", FOLDERS)
def test_files_read(folder, folder_results):
    expected = [str(_fixture(folder, name)) for name in EXPECTED_FILES[folder]]
    assert folder_results[folder]["files"] == expected


@pytest.mark.parametrize("folder", sorted(RPT_UTILIZATION))
def test_utilization_percentages_match_the_text_report(folder, folder_results):
    pct = folder_results[folder]["hls"]["utilization_pct"]
    for key, printed in zip(ORDER, RPT_UTILIZATION[folder]):
        if printed == "~0":
            assert 0 < pct[key] < 1, key
        else:
            assert math.floor(pct[key]) == int(printed), key


@pytest.mark.parametrize("folder", sorted(RPT_UTILIZATION_SLR))
def test_per_slr_percentages_match_the_text_report(folder, folder_results):
    hls = folder_results[folder]["hls"]
    for key, printed in zip(ORDER, RPT_UTILIZATION_SLR[folder]):
        pct = 100 * hls["resources"][key] / hls["available_per_slr"][key]
        assert (0 < pct < 1) if printed == "~0" else math.floor(pct) == int(printed), key


def test_fixtures_read_without_warnings(caplog):
    with caplog.at_level("WARNING", logger="firmware.hls.vendor_reports"):
        for folder in FOLDERS:
            reports.read_reports(_fixture(folder))
    assert caplog.records == []


# ----- the traps --------------------------------------------------------------------------------


def test_csynth_xml_of_the_axi_wrapper_is_not_taken_for_the_top(folder_results):
    wrapper = reports.read_csynth_xml(_fixture(CHI, CHI_REPORT, "csynth.xml"))
    # figures of the wrapper, from SOURCE.txt
    assert wrapper.top == "myproject_axi"
    assert (wrapper.latency_best_cycles, wrapper.latency_worst_cycles) == (96019, 96170)
    assert wrapper.latency_average_cycles == 96019
    assert (wrapper.interval_min, wrapper.interval_max) == (11266, 95949)
    assert wrapper.resources == dict(BRAM_18K=289, DSP=118, FF=53257, LUT=35689, URAM=0)
    assert wrapper.clock_estimated_ns == pytest.approx(4.429)
    # the folder read picks the network, not the wrapper
    hls = folder_results[CHI]["hls"]
    assert hls["top"] == "myproject"
    assert hls["resources"]["LUT"] == 33365
    # asking for the network on the wrapper's file is refused
    with pytest.raises(PipelineError, match="myproject_axi.*not 'myproject'"):
        reports.read_reports(_fixture(CHI, CHI_REPORT, "csynth.xml"), top="myproject")
    # the wrapper is still readable on request
    asked = reports.read_reports(_fixture(CHI), top="myproject_axi")
    assert asked["hls"]["top"] == "myproject_axi"
    assert asked["hls"]["resources"]["FF"] == 53257
    assert asked["files"] == [str(_fixture(CHI, CHI_REPORT, "csynth.xml"))]


def test_vitis_full_design_csynth_xml_reads_the_top_not_a_module():
    full = reports.read_csynth_xml(_fixture(IRIS, IRIS_REPORT, "csynth.xml"))
    top = reports.read_csynth_xml(_fixture(IRIS, IRIS_REPORT, "myproject_csynth.xml"))
    assert dataclass_without_source(full) == dataclass_without_source(top)
    # the first sub-module in the file holds DSP 30, latency 4, estimated clock 3.349
    assert full.resources["DSP"] == 110
    assert full.latency_worst_cycles == 32
    assert full.clock_estimated_ns == pytest.approx(3.624)


def dataclass_without_source(report: reports.HlsReport) -> dict:
    data = report.to_dict()
    data.pop("source")
    return data


def test_dsp_key_is_normalized_but_kept(folder_results):
    vivado_hls = folder_results[CHI]["hls"]
    vitis_hls = folder_results[IRIS]["hls"]
    assert "DSP48E" not in vivado_hls["resources"]
    assert vivado_hls["resources"]["DSP"] == 118
    assert vivado_hls["resource_keys"]["DSP"] == "DSP48E"
    assert vitis_hls["resources"]["DSP"] == 110
    assert vitis_hls["resource_keys"]["DSP"] == "DSP"
    assert set(vivado_hls["resources"]) == set(reports.HLS_RESOURCES)


def test_dataflow_and_pipelined_tops(folder_results):
    kinds = {folder: folder_results[folder]["hls"]["pipeline_kind"]
             for folder in FOLDERS if EXPECTED_HLS[folder] is not None}
    assert kinds == {CHI: "dataflow", IRIS: "pipelined", YAN: "dataflow", POM: "dataflow",
                     SEAN: "dataflow", THA: "pipelined"}


def test_interval_range_of_a_dataflow_design(folder_results):
    hls = folder_results[CHI]["hls"]
    assert (hls["interval_min"], hls["interval_max"]) == (4625, 95949)
    assert hls["latency_best_cycles"] < hls["latency_worst_cycles"]
    rpt = reports.read_csynth_rpt(_fixture(CHI, CHI_REPORT, "myproject_csynth.rpt"))
    assert (rpt.interval_min, rpt.interval_max) == (4625, 95949)


def test_multi_slr_capacity_is_never_the_device_total(folder_results):
    hls = folder_results[YAN]["hls"]
    assert hls["available"]["LUT"] == 871680
    assert hls["available_per_slr"]["LUT"] == 435840
    # 590554 LUTs exceed one SLR (135 %) but not the device (67 %)
    assert hls["utilization_pct"]["LUT"] == pytest.approx(100 * 590554 / 871680, abs=0.005)


def test_report_with_only_per_slr_rows_gives_no_device_total(tmp_path):
    lines = _fixture(YAN, "myproject_csynth.rpt").read_text().splitlines(keepends=True)
    # drop the device-wide rows, keep the per-SLR ones (as a report of a part without them)
    kept = [line for line in lines
            if not line.startswith(("|Available    ", "|Utilization (%)"))]
    assert len(lines) - len(kept) == 2
    copy = tmp_path / "myproject_csynth.rpt"
    copy.write_text("".join(kept))
    report = reports.read_csynth_rpt(copy)
    assert report.available == {}
    assert report.utilization_pct == {}
    assert report.available_per_slr == dict(BRAM_18K=1344, DSP=2976, FF=871680, LUT=435840,
                                             URAM=320)


def test_xml_gives_device_totals_and_rpt_adds_per_slr(folder_results):
    xml = reports.read_csynth_xml(_fixture(SEAN, SEAN_REPORT, "myproject_csynth.xml"))
    assert xml.available_per_slr == {}
    merged = folder_results[SEAN]["hls"]
    assert merged["available"] == xml.available
    assert merged["available_per_slr"]["DSP"] == 3072
    assert merged["source"] == str(_fixture(SEAN, SEAN_REPORT, "myproject_csynth.xml"))


def test_slice_and_clb_rows_prohibited_column_and_routed_report():
    seven = reports.read_vivado_utilization(_fixture(POM, "hls4ml_prj", "vivado_synth.rpt"))
    assert seven.site_types["LUT"] == "Slice LUTs*"
    assert "URAM" not in seven.used  # 7-series parts have no URAM row
    prohibited = reports.read_vivado_utilization(_fixture(NYCU, "vivado_synth.rpt"))
    # with the extra column, Available must not be read from the Prohibited column (0)
    assert prohibited.available["LUT"] == 871680
    assert prohibited.used["DSP"] == 2058
    routed = reports.read_vivado_utilization(_fixture(SEAN, SEAN_PRJ, "vivado_utilization.rpt"))
    # from SOURCE.txt: routed LUTs 7722 (0.45), no asterisk; the "CLB Logic Distribution"
    # table that repeats "LUT as Logic" does not disturb the summary rows
    assert routed.design_state == "Routed"
    assert routed.site_types["LUT"] == "CLB LUTs"
    assert routed.used["LUT"] == 7722
    assert routed.utilization_pct["LUT"] == pytest.approx(0.45)
    assert routed.used["BRAM_TILE"] == 12
    assert routed.used["DSP"] == 467


def test_per_slr_tables_of_utilization_report_are_not_read():
    # section 13 repeats "CLB LUTs", "DSPs", "URAM" with SLR0/SLR1 columns, all 0
    report = reports.read_vivado_utilization(_fixture(YAN, "vivado_synth.rpt"))
    assert report.used["LUT"] == 264101
    assert report.used["URAM"] == 115


def test_fractional_bram_tiles_and_utilization_above_100_percent(folder_results):
    assert folder_results[THA]["vivado_synth"]["used"]["BRAM_TILE"] == 0.5
    vivado = folder_results[POM]["vivado_synth"]
    assert vivado["utilization_pct"]["LUT"] == pytest.approx(673.43)
    hls = folder_results[POM]["hls"]
    assert hls["utilization_pct"]["LUT"] > 100
    assert hls["resources"]["DSP"] > hls["available"]["DSP"]


def test_real_time_latency_uses_the_estimated_clock_when_timing_fails(folder_results):
    hls = folder_results[POM]["hls"]
    # 2.5 ns target, 18.982 ns estimated: the tool prints 0.274 ms = 14409 x 18.982 ns
    assert hls["latency_best_ns"] == pytest.approx(14409 * 2.5)
    assert hls["latency_best_ns_reported"] == pytest.approx(274_000.0)
    assert 14409 * 18.982 == pytest.approx(hls["latency_best_ns_reported"], rel=2e-3)


# ----- XML and text report agree ----------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(XML_RPT_PAIRS))
def test_xml_and_rpt_agree(folder):
    xml_name, rpt_name = XML_RPT_PAIRS[folder]
    xml = reports.read_csynth_xml(_fixture(folder, xml_name))
    rpt = reports.read_csynth_rpt(_fixture(folder, rpt_name))
    for name in ("tool", "tool_version", "top", "part", "family", "clock_target_ns",
                 "clock_uncertainty_ns", "clock_estimated_ns", "latency_best_cycles",
                 "latency_worst_cycles", "interval_min", "interval_max", "pipeline_type",
                 "resources", "resource_keys", "latency_best_ns_reported",
                 "latency_worst_ns_reported"):
        assert getattr(xml, name) == getattr(rpt, name), name
    assert rpt.latency_average_cycles is None
    assert xml.available == rpt.available


def test_xml_and_rpt_from_different_runs_are_refused(tmp_path):
    project = tmp_path / "prj"
    shutil.copytree(_fixture(CHI), project)
    rpt = project / CHI_REPORT / "myproject_csynth.rpt"
    text = rpt.read_text()
    total = "|Total            |      285|    118|   51414|  33365|    0|"
    assert text.count(total) == 1
    rpt.write_text(text.replace(total, total.replace("33365", "33366")))
    with pytest.raises(PipelineError, match="disagree on resources"):
        reports.read_reports(project)


# ----- folder discovery -----------------------------------------------------------------------


def _copy(src: Path, dst: Path, old: str | None = None, new: str | None = None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text()
    dst.write_text(text if old is None else text.replace(old, new))


def test_top_other_than_myproject_is_found_from_report_names(tmp_path):
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "pixelnet_csynth.rpt",
          "myproject", "pixelnet")
    result = reports.read_reports(tmp_path)
    assert result["hls"]["top"] == "pixelnet"
    assert result["hls"]["resources"]["LUT"] == 59561


def test_top_from_hls4ml_config_project_name(tmp_path):
    report_dir = tmp_path / "pixelnet_prj" / "solution1" / "syn" / "report"
    _copy(_fixture(CHI, CHI_REPORT, "myproject_csynth.xml"),
          report_dir / "pixelnet_csynth.xml", "myproject", "pixelnet")
    _copy(_fixture(CHI, CHI_REPORT, "csynth.xml"),
          report_dir / "pixelnet_axi_csynth.xml", "myproject", "pixelnet")
    (tmp_path / "hls4ml_config.yml").write_text(
        "Backend: VivadoAccelerator\n"
        "KerasModel: !keras_model model/keras_model.keras\n"  # a tag yaml.safe_load refuses
        "OutputDir: prj\n"
        "ProjectName: pixelnet_axi\n"
    )
    assert reports.find_reports(tmp_path).top == "pixelnet_axi"
    assert reports.read_reports(tmp_path)["hls"]["resources"]["LUT"] == 35689
    (tmp_path / "hls4ml_config.yml").write_text("ProjectName: pixelnet\n")
    assert reports.read_reports(tmp_path)["hls"]["resources"]["LUT"] == 33365


def test_top_from_project_tcl(tmp_path):
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "a_csynth.rpt", "myproject", "a")
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "b_csynth.rpt", "myproject", "b")
    with pytest.raises(PipelineError, match=r"several top functions \(a, b\).*--top"):
        reports.read_reports(tmp_path)
    (tmp_path / "project.tcl").write_text('variable project_name\nset project_name "b"\n')
    assert reports.read_reports(tmp_path)["hls"]["top"] == "b"
    assert reports.read_reports(tmp_path, top="a")["hls"]["top"] == "a"


def test_wrapper_csynth_xml_alone_yields_to_the_network_report(tmp_path):
    report_dir = tmp_path / "myproject_prj" / "solution1" / "syn" / "report"
    _copy(_fixture(CHI, CHI_REPORT, "csynth.xml"), report_dir / "csynth.xml")
    _copy(_fixture(CHI, CHI_REPORT, "myproject_csynth.rpt"), report_dir / "myproject_csynth.rpt")
    result = reports.read_reports(tmp_path)
    assert result["hls"]["top"] == "myproject"
    assert result["files"] == [str(report_dir / "myproject_csynth.rpt")]


def test_only_a_wrapper_report_is_an_error_with_a_hint(tmp_path):
    _copy(_fixture(CHI, CHI_REPORT, "csynth.xml"), tmp_path / "csynth.xml")
    (tmp_path / "hls4ml_config.yml").write_text("ProjectName: myproject\n")
    with pytest.raises(PipelineError, match="there are reports of myproject_axi: pass --top"):
        reports.read_reports(tmp_path)
    with pytest.raises(PipelineError, match="reports of myproject, myproject_axi: pass --top"):
        reports.read_reports(_fixture(CHI), top="nosuch")


def test_files_with_windows_line_endings(tmp_path):
    sources = [_fixture(CHI, CHI_REPORT, "myproject_csynth.xml"),
               _fixture(CHI, CHI_REPORT, "myproject_csynth.rpt"),
               _fixture(THA, "vivado_synth.rpt")]
    for source in sources:
        (tmp_path / source.name).write_bytes(source.read_bytes().replace(b"\n", b"\r\n"))
    result = reports.read_reports(tmp_path)
    assert result["hls"]["resources"] == EXPECTED_HLS[CHI]["resources"]
    assert result["hls"]["interval_max"] == 95949
    assert result["vivado_synth"]["used"]["BRAM_TILE"] == 0.5


def test_different_copies_at_the_same_depth_are_ambiguous(tmp_path):
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "run1" / "myproject_csynth.rpt")
    _copy(_fixture(YAN, "myproject_csynth.rpt"), tmp_path / "run2" / "myproject_csynth.rpt")
    with pytest.raises(PipelineError, match="several different"):
        reports.read_reports(tmp_path)
    # a shallower copy wins over deeper ones
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "myproject_csynth.rpt")
    assert reports.read_reports(tmp_path)["hls"]["latency_worst_cycles"] == 5


def test_single_files_are_classified_by_content(tmp_path):
    renamed = tmp_path / "report.txt"
    shutil.copy(_fixture(NYCU, "vivado_synth.rpt"), renamed)
    assert reports.read_reports(renamed)["vivado_synth"]["used"]["DSP"] == 2058
    result = reports.read_reports(_fixture(THA, "myproject_csynth.rpt"))
    assert result["hls"]["latency_best_cycles"] == 5
    assert result["vivado_synth"] is None


# ----- errors ----------------------------------------------------------------------------------


def test_truncated_xml(tmp_path):
    text = _fixture(CHI, CHI_REPORT, "myproject_csynth.xml").read_text()
    truncated = tmp_path / "myproject_csynth.xml"
    truncated.write_text(text[: len(text) // 2])
    expected = r"myproject_csynth\.xml: not well-formed XML.*truncated"
    with pytest.raises(PipelineError, match=expected):
        reports.read_csynth_xml(truncated)
    with pytest.raises(PipelineError, match="truncated"):
        reports.read_reports(tmp_path)


def test_xml_missing_figures(tmp_path):
    text = _fixture(IRIS, IRIS_REPORT, "myproject_csynth.xml").read_text()
    start, end = text.index("<AreaEstimates>"), text.index("</AreaEstimates>")
    broken = tmp_path / "myproject_csynth.xml"
    broken.write_text(text[:start] + text[end + len("</AreaEstimates>"):])
    expected = r"myproject_csynth\.xml: .*missing AreaEstimates/Resources"
    with pytest.raises(PipelineError, match=expected):
        reports.read_csynth_xml(broken)
    other = tmp_path / "other.xml"
    other.write_text("<project><name>x</name></project>")
    with pytest.raises(PipelineError, match=r"other\.xml: not an HLS C-synthesis report"):
        reports.read_csynth_xml(other)


def test_rpt_missing_latency_table(tmp_path):
    lines = _fixture(THA, "myproject_csynth.rpt").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("+ Latency"))
    broken = tmp_path / "myproject_csynth.rpt"
    broken.write_text("".join(lines[:start] + lines[start + 9:]))
    with pytest.raises(PipelineError, match=r"myproject_csynth\.rpt: .*missing latency summary"):
        reports.read_csynth_rpt(broken)


def test_utilization_report_missing_rows(tmp_path):
    text = _fixture(THA, "vivado_synth.rpt").read_text()
    broken = tmp_path / "vivado_synth.rpt"
    broken.write_text(text.replace("| DSPs      |", "| Other     |"))
    with pytest.raises(PipelineError, match=r"vivado_synth\.rpt: .*no 'DSPs' row"):
        reports.read_vivado_utilization(broken)


def test_random_text_file(tmp_path):
    junk = tmp_path / "notes.rpt"
    junk.write_text("synthesis went fine, numbers look good\nLUT: many\n")
    for reader in (reports.read_csynth_rpt, reports.read_vivado_utilization,
                   reports.read_csynth_xml):
        with pytest.raises(PipelineError, match=r"notes\.rpt: not"):
            reader(junk)
    with pytest.raises(PipelineError, match=r"notes\.rpt: not a recognised report"):
        reports.read_reports(junk)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(PipelineError, match=r"no report found \(looked for .*_csynth\.xml.*"
                                            r"csynth\.rpt and vivado_synth\.rpt"):
        reports.read_reports(tmp_path)
    with pytest.raises(PipelineError, match="no such file or folder"):
        reports.read_reports(tmp_path / "absent")


# ----- Catapult ---------------------------------------------------------------------------------

CATAPULT = REPO / "tests" / "fixtures" / "catapult_reports" / "smart-pix__smart-pixels-ml"
CATAPULT_TABLE = CATAPULT / "SmtPxl_prj" / "SmtPxl.v1" / "nnet_layer_results.txt"

# The layer table as SOURCE.txt lists it: (function, config, area, latency, thruput)
CATAPULT_LAYERS = [
    ("nnet::depthwise_conv_2d_cl", "config19", 6188, 273, 273),
    ("nnet::pointwise_conv_2d_cl", "config21", 1637, 209, 209),
    ("nnet::hard_tanh", "hard_tanh_config4", 672, 209, 209),
    ("nnet::pointwise_conv_2d_cl", "config22", 1422, 209, 209),
    ("nnet::hard_tanh", "hard_tanh_config7", 570, 209, 209),
    ("nnet::pooling2d_cl", "config8", 3447, 209, 209),
    ("nnet::linear", "linear_config9", 339, 18, 18),
    ("nnet::dense", "config11", 212730, 18, 18),
    ("nnet::hard_tanh", "hard_tanh_config13", 2342, 1, 1),
    ("nnet::dense", "config14", 38041, 1, 1),
    ("nnet::hard_tanh", "hard_tanh_config16", 2342, 1, 1),
    ("nnet::dense", "config17", 33335, 1, 1),
]
# "FIFO Interconnect" as SOURCE.txt lists it: variable -> (width, depth, area)
CATAPULT_FIFOS = {
    "layer11_out": (256, 1, 1122), "layer13_out": (128, 1, 562), "layer14_out": (256, 1, 1122),
    "layer16_out": (128, 1, 562), "layer19_out": (32, 1, 142), "layer20_out": (80, 1, 352),
    "layer4_out": (20, 1, 89), "layer5_out": (60, 1, 264), "layer7_out": (20, 1, 89),
    "layer8_out": (60, 1, 264), "layer9_out": (40, 1, 177),
}


def test_catapult_layer_table_figures():
    result = reports.read_reports(CATAPULT)
    assert result["files"] == [str(CATAPULT_TABLE)]
    assert result["vivado_synth"] is None
    figures = result["hls"]
    assert figures["tool"] == "Catapult"
    assert figures["source"] == str(CATAPULT_TABLE)
    assert figures["top"] == "SmtPxl" and figures["solution"] == "SmtPxl.v1"
    layers = figures["layers"]
    assert len(layers) == 12
    for layer, (function, config, area, latency, thruput) in zip(layers, CATAPULT_LAYERS):
        assert layer["name"].startswith(function + "<") and layer["name"].endswith(f",{config}>")
        assert (layer["area"], layer["latency_cycles"], layer["throughput_cycles"]) == (
            area, latency, thruput)
    # the totals SOURCE.txt states
    assert figures["area_layers"] == 303065
    largest = max(layers, key=lambda layer: layer["area"])
    assert largest["name"] == "nnet::dense<layer9_t,q_dense_result_t,config11>"
    assert largest["area"] == 212730 and round(100 * 212730 / figures["area_layers"]) == 70
    assert figures["area_fifos"] == 4745
    assert figures["area_total"] == 307810
    fifos = {f["variable"]: (f["width"], f["depth"], f["area"]) for f in figures["fifos"]}
    assert fifos == CATAPULT_FIFOS
    # 273 cycles in the depthwise stage, the slowest block: latency and interval of the design
    assert figures["latency_best_cycles"] == figures["latency_worst_cycles"] == 273
    assert figures["interval_min"] == figures["interval_max"] == 273
    assert figures["latency_basis"] == "largest layer latency"
    assert figures["latency_layers_sum_cycles"] == sum(row[3] for row in CATAPULT_LAYERS)
    assert figures["stated_total"] is None
    # the table states no part, clock or tool version, and nothing stands in for them
    assert figures["part"] is None and figures["clock_target_ns"] is None
    assert figures["latency_worst_ns"] is None and figures["tool_version"] is None
    assert figures["area_units"] == "library area units"


def _catapult_project(root: Path, solution: str = "SmtPxl.v1", table: str | None = None) -> Path:
    path = root / "SmtPxl_prj" / solution / "nnet_layer_results.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CATAPULT_TABLE.read_text() if table is None else table)
    return path


def test_catapult_part_and_clock_come_from_the_build_script(tmp_path):
    _catapult_project(tmp_path)
    # the library and clock SOURCE.txt names for this run, as hls4ml's build_prj.tcl sets them
    (tmp_path / "build_prj.tcl").write_text(
        "proc setup_xilinx_part { part } {\n}\n"
        "  project new -name SmtPxl_prj\n"
        "set design_top SmtPxl\n"
        "set hls_clock_period 25\n"
        "setup_asic_libs {tcbn28hpcplusbwp30p140ssg0p81v125c_ccs_dc}\n"
    )
    figures = reports.read_reports(tmp_path)["hls"]
    assert figures["part"] == "tcbn28hpcplusbwp30p140ssg0p81v125c_ccs_dc"
    assert figures["technology"] == "asic"
    assert figures["clock_target_ns"] == 25
    assert figures["latency_worst_ns"] == pytest.approx(273 * 25)
    (tmp_path / "build_prj.tcl").unlink()
    (tmp_path / "hls4ml_config.yml").write_text(
        "KerasModel: !keras_model 'model.h5'\nProjectName: SmtPxl\nPart: xcvu13p-flga2577-2-e\n"
        "ClockPeriod: 5\nTechnology: fpga\n")
    figures = reports.read_reports(tmp_path)["hls"]
    assert (figures["part"], figures["technology"], figures["clock_target_ns"]) == (
        "xcvu13p-flga2577-2-e", "fpga", 5)


def test_catapult_last_solution_is_read_with_versions_as_numbers(tmp_path):
    older = CATAPULT_TABLE.read_text().replace("212730", "999999")
    _catapult_project(tmp_path, "SmtPxl.v9", older)
    newest = _catapult_project(tmp_path, "SmtPxl.v10")
    result = reports.read_reports(tmp_path)
    assert result["files"] == [str(newest)]
    assert result["hls"]["area_layers"] == 303065


def test_catapult_table_copied_on_its_own_is_recognised(tmp_path):
    copy = tmp_path / "catapult_results.log"
    shutil.copy(CATAPULT_TABLE, copy)
    figures = reports.read_reports(copy)["hls"]
    assert figures["area_total"] == 307810 and figures["top"] is None
    with pytest.raises(PipelineError, match="there are reports of SmtPxl: pass --top"):
        reports.read_reports(CATAPULT, top="other")


def test_catapult_row_out_of_its_columns_is_refused(tmp_path):
    text = CATAPULT_TABLE.read_text()
    row = next(line for line in text.splitlines() if "config14>" in line)
    # the area pushed one column left: it now runs across the border of the empty II column
    shifted = row.replace("  38041", "38041  ")
    _catapult_project(tmp_path, table=text.replace(row, shifted))
    expected = r"does not line up with its table's columns: 'nnet::dense<layer13_t"
    with pytest.raises(PipelineError, match=expected):
        reports.read_reports(tmp_path)
    _catapult_project(tmp_path, table=text.replace(row, row.replace("38041", "n/a  ")))
    with pytest.raises(PipelineError, match=r"area of layer nnet::dense<layer13_t.*is not a number"):
        reports.read_reports(tmp_path)


def test_catapult_total_row_is_the_total_not_a_layer(tmp_path):
    text = CATAPULT_TABLE.read_text()
    lines = text.splitlines()
    last = next(line for line in lines if "config17>" in line)
    header = next(line for line in lines if "Thruput" in line)
    cells = {"Layer": "Total", "Area": "307810", "Latency": "280", "Thruput": "273"}
    total = ""
    for name in ("Layer", "Area", "Latency", "Thruput"):
        total = total.ljust(header.index(name)) + cells[name]
    _catapult_project(tmp_path, table=text.replace(last, last + "\n" + total))
    figures = reports.read_reports(tmp_path)["hls"]
    assert len(figures["layers"]) == 12 and figures["area_layers"] == 303065
    assert figures["latency_worst_cycles"] == 280 and figures["interval_max"] == 273
    assert figures["latency_basis"] == "total stated in the report"


def test_catapult_with_its_own_vivado_synthesis(tmp_path):
    table = _catapult_project(tmp_path)
    utilization = table.parent / "vivado_concat_v" / "utilization_synth.rpt"
    utilization.parent.mkdir()
    shutil.copy(_fixture(THA, "vivado_synth.rpt"), utilization)
    result = reports.read_reports(tmp_path)
    assert result["files"] == [str(table), str(utilization)]
    assert result["vivado_synth"]["used"]["LUT"] == 31277


def test_catapult_and_vitis_results_in_one_folder_are_ambiguous(tmp_path):
    _catapult_project(tmp_path / "a")
    _copy(_fixture(THA, "myproject_csynth.rpt"), tmp_path / "b" / "SmtPxl_csynth.rpt",
          "myproject", "SmtPxl")
    with pytest.raises(PipelineError, match="both Catapult results .* and Vivado/Vitis HLS reports"):
        reports.read_reports(tmp_path)


def test_project_folders_of_results_synthesized_elsewhere(tmp_path):
    # a folder of projects: one per subfolder, named after it
    assert reports.project_folders(FIXTURES) == [(p.name, p) for p in sorted(FIXTURES.iterdir())]
    # a folder that is one project: reports, hls4ml's files or a *_prj folder at its top
    for folder in (_fixture(THA), _fixture(CHI), CATAPULT):
        assert reports.project_folders(folder) == [(folder.name, folder)]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("synthesized on the build server\n")
    with pytest.raises(PipelineError, match="no project with reports in it or its subfolders"):
        reports.project_folders(tmp_path)


# ----- command line ----------------------------------------------------------------------------


def _report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smartpix", "report", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def test_report_from_one_project_folder(tmp_path):
    (tmp_path / "configs").mkdir()
    done = _report("--from", str(_fixture(POM)), "--reports", str(tmp_path / "out"),
                   "--config-dir", str(tmp_path / "configs"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (row,) = summary["rows"]
    assert row["config"] == POM and row["backend"] == "Vivado"
    # from SOURCE.txt: HLS estimate 1170 DSP, Vivado synthesis 358266 LUTs
    assert row["DSP"] == 1170 and row["vivado_LUT"] == 358266
    assert "| 1170 |" in done.stdout


def test_report_from_a_bad_file_says_so_in_one_line(tmp_path):
    text = _fixture(IRIS, IRIS_REPORT, "myproject_csynth.xml").read_text()
    truncated = tmp_path / "results" / "iris" / "myproject_csynth.xml"
    truncated.parent.mkdir(parents=True)
    truncated.write_text(text[:1000])
    (tmp_path / "configs").mkdir()
    done = _report("--from", str(tmp_path / "results"), "--reports", str(tmp_path / "out"),
                   "--config-dir", str(tmp_path / "configs"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "reports of iris could not be read (see summary.md)"]
    # the summary is written all the same, the reason on the row
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "myproject_csynth.xml: not well-formed XML" in markdown
    missing = _report("--from", str(tmp_path / "absent"), "--reports", str(tmp_path / "out"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [f"error: {tmp_path / 'absent'}: no such folder"]
