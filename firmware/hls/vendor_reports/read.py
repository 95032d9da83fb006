"""`read_reports`: everything readable about one design, from a project folder or one report
file, as one JSON-ready dict."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from firmware.hls.vendor_reports.catapult import RESULTS_FILE, read_catapult_layers
from firmware.hls.vendor_reports.find import classify, find_reports, report_tops, walk
from firmware.hls.vendor_reports.schema import (
    CatapultReport,
    HlsReport,
    ReportFiles,
    UtilizationReport,
)
from firmware.hls.vendor_reports.vitis import merge_hls, read_csynth_rpt, read_csynth_xml
from firmware.hls.vendor_reports.vivado import read_vivado_utilization
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)


def read_reports(path: str | os.PathLike[str], top: str | None = None) -> dict[str, Any]:
    """Everything readable about one design from a project folder or one report file:
    {"hls": HlsReport or CatapultReport dict | None, "vivado_synth": UtilizationReport dict |
    None, "files": [...]}; "hls" holds the HLS tool's figures whichever the tool ("tool" says
    which), under the names both report types share.

    The XML is preferred over the text report; when both exist they must agree.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    if path.is_file():
        return _read_file(path, top)
    return _read_folder(path, top)


def _read_file(path: Path, top: str | None) -> dict[str, Any]:
    """One report file, recognised by its content."""
    kind = classify(path)
    if kind == "vivado":
        utilization = read_vivado_utilization(path)
        if top is not None and utilization.top not in (None, top):
            raise PipelineError(f"{path}: describes design '{utilization.top}', not '{top}'")
        return {"hls": None, "vivado_synth": utilization.to_dict(), "files": [str(path)]}
    if kind == "catapult":
        catapult = read_catapult_layers(path)
        if top is not None and catapult.top not in (None, top):
            raise PipelineError(f"{path}: describes top '{catapult.top}', not '{top}'")
        return {"hls": catapult.to_dict(), "vivado_synth": None, "files": [str(path)]}
    hls = read_csynth_xml(path) if kind == "xml" else read_csynth_rpt(path)
    if top is not None and hls.top != top:
        raise PipelineError(f"{path}: describes top '{hls.top}', not '{top}'")
    return {"hls": hls.to_dict(), "vivado_synth": None, "files": [str(path)]}


def _read_folder(path: Path, top: str | None) -> dict[str, Any]:
    found = find_reports(path, top)
    name = found.top or "<top>"
    if all(f is None for f in (found.csynth_xml, found.csynth_rpt, found.vivado_synth,
                               found.catapult)):
        others = sorted(report_tops(walk(path)))
        hint = f"; there are reports of {', '.join(others)}: pass --top NAME" if others else ""
        raise PipelineError(
            f"{path}: no report found (looked for {name}_csynth.xml, csynth.xml, "
            f"{name}_csynth.rpt, csynth.rpt and vivado_synth.rpt in all subfolders, and for "
            f"Catapult's {name}.v<N>/{RESULTS_FILE}){hint}"
        )
    files: list[str] = []
    hls: HlsReport | CatapultReport | None = _read_hls(found, files)
    if found.catapult is not None:
        if hls is not None:
            raise PipelineError(
                f"{path}: holds both Catapult results ({found.catapult}) and Vivado/Vitis HLS "
                f"reports ({hls.source}); point at one project folder"
            )
        hls = read_catapult_layers(found.catapult)
        files.append(str(found.catapult))
    utilization: UtilizationReport | None = None
    if found.vivado_synth is not None:
        utilization = read_vivado_utilization(found.vivado_synth)
        files.append(str(found.vivado_synth))
        if found.top is not None and utilization.top not in (None, found.top):
            log.warning("%s: Vivado synthesized '%s', the HLS top is '%s'",
                        found.vivado_synth, utilization.top, found.top)
    return {
        "hls": hls.to_dict() if hls is not None else None,
        "vivado_synth": utilization.to_dict() if utilization is not None else None,
        "files": files,
    }


def _read_hls(found: ReportFiles, files: list[str]) -> HlsReport | None:
    """The C-synthesis figures of the found top: the XML, checked against the text report when
    both are there; the files read are appended to `files`."""
    hls: HlsReport | None = None
    if found.csynth_xml is not None:
        hls = read_csynth_xml(found.csynth_xml)
        files.append(str(found.csynth_xml))
        if hls.top != found.top:
            raise PipelineError(f"{found.csynth_xml}: describes top '{hls.top}', not '{found.top}'")
    if found.csynth_rpt is not None:
        text_report = read_csynth_rpt(found.csynth_rpt)
        files.append(str(found.csynth_rpt))
        if text_report.top != found.top:
            raise PipelineError(
                f"{found.csynth_rpt}: describes top '{text_report.top}', not '{found.top}'"
            )
        hls = text_report if hls is None else merge_hls(hls, text_report)
    return hls
