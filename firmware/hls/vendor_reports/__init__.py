"""Vendor report parsing: Vivado/Vitis HLS C-synthesis reports, Vivado report_utilization and
Catapult's per-layer results.

Designers synthesize on licensed build servers and copy the results back, so these readers
take the files exactly as the tools wrote them and never guess: a figure the file does not
hold is a PipelineError naming the file and the figure, not a silent default.

- `read_csynth_xml`          `<top>_csynth.xml` (or Vitis' `csynth.xml`), Vivado HLS and Vitis HLS
- `read_csynth_rpt`          `<top>_csynth.rpt`, the text twin of the XML
- `read_vivado_utilization`  `vivado_synth.rpt` written by `report_utilization` (7-series
                             "Slice" rows, UltraScale+ "CLB" rows, with or without "Prohibited")
- `read_catapult_layers`     Catapult's `<top>.v<N>/nnet_layer_results.txt` (area, latency and
                             throughput per layer, FIFO areas), with the part and clock of the
                             hls4ml project around it
- `find_reports`             the report files of one top function in a folder
- `project_folders`          the projects in a folder of results synthesized elsewhere
- `read_reports`             a project folder or a single file -> one JSON-ready dict

Traps handled on purpose: `csynth.xml` may describe an AXI wrapper rather than the network
(the top is chosen from hls4ml's project files or the report names, and a wrapper named
`<top>_*` yields to `<top>`); multi-SLR parts list per-SLR capacities ("Available SLR")
that are kept apart from the device totals; the report's own real-time latency is computed
by the tool from the *estimated* clock when timing fails, so both it and cycles x target
clock are kept.

Modules: schema (the report types), parsing (shared primitives), vitis (csynth.xml and
csynth.rpt), vivado (report_utilization), catapult (the layer table), find (locating reports,
choosing the top), read (read_reports).
"""

from firmware.hls.vendor_reports.catapult import read_catapult_layers
from firmware.hls.vendor_reports.find import find_reports, has_reports, project_folders
from firmware.hls.vendor_reports.read import read_reports
from firmware.hls.vendor_reports.schema import (
    HLS_RESOURCES,
    CatapultFifo,
    CatapultLayer,
    CatapultReport,
    HlsReport,
    ReportFiles,
    UtilizationReport,
)
from firmware.hls.vendor_reports.vitis import read_csynth_rpt, read_csynth_xml
from firmware.hls.vendor_reports.vivado import read_vivado_utilization

__all__ = [
    "HLS_RESOURCES", "CatapultFifo", "CatapultLayer", "CatapultReport", "HlsReport",
    "ReportFiles", "UtilizationReport",
    "find_reports", "has_reports", "project_folders", "read_catapult_layers", "read_csynth_rpt",
    "read_csynth_xml", "read_reports", "read_vivado_utilization",
]
