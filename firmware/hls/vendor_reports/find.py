"""Locating the reports of one design in a folder as copied back from a build server: which
top function is the network (not its AXI wrapper), and which copy of each report to read."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from firmware.hls.vendor_reports.catapult import RESULTS_FILE, SOLUTION, is_catapult_layer_table
from firmware.hls.vendor_reports.parsing import read_text
from firmware.hls.vendor_reports.schema import ReportFiles
from firmware.hls.vendor_reports.vitis import RPT_HEADER, csynth_rpt_top, csynth_xml_top
from firmware.hls.vendor_reports.vivado import is_vivado_utilization
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

# hls4ml's default project name, the last resort when nothing else names the top
_HLS4ML_DEFAULT_TOP = "myproject"


def walk(folder: Path) -> list[Path]:
    """Every file under `folder`, skipping hidden folders (.autopilot, .Xil, .git: tool
    scratch space that holds thousands of files and no final report)."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__pycache__")
        found.extend(Path(directory) / name for name in sorted(files))
    return found


def _depth(path: Path, root: Path) -> int:
    return len(path.relative_to(root).parts)


def _project_name(files: list[Path], folder: Path) -> str | None:
    """hls4ml's own record of the top: `ProjectName` in hls4ml_config.yml, else
    `set project_name "..."` in project.tcl; the shallowest file wins."""
    patterns = {
        "hls4ml_config.yml": re.compile(r"^ProjectName:\s*['\"]?([A-Za-z_]\w*)", re.MULTILINE),
        "project.tcl": re.compile(r"^\s*set\s+project_name\s+\"?([A-Za-z_]\w*)", re.MULTILINE),
    }
    for name, pattern in patterns.items():
        candidates = sorted(
            (f for f in files if f.name == name), key=lambda f: (_depth(f, folder), str(f))
        )
        found = {}
        for candidate in candidates:
            if _depth(candidate, folder) != _depth(candidates[0], folder):
                break
            try:
                match = pattern.search(read_text(candidate))
            except PipelineError:
                continue
            if match:
                found[match.group(1)] = candidate
        if len(found) == 1:
            project, source = next(iter(found.items()))
            log.debug("top '%s' from %s", project, source)
            return project
        if len(found) > 1:
            raise PipelineError(
                f"{folder}: holds several hls4ml projects ({', '.join(sorted(found))}); "
                "pass --top NAME or point at one project folder"
            )
    return None


def _named_and_hls_tops(files: list[Path]) -> tuple[set[str], set[str]]:
    """Tops named by `<top>_csynth.*` file names, and tops that Vitis/Vivado HLS wrote into
    `csynth.xml`/`csynth.rpt` (the function synthesized as the HLS top, maybe a wrapper)."""
    named: set[str] = set()
    hls_tops: set[str] = set()
    for file in files:
        match = re.fullmatch(r"(.+)_csynth\.(xml|rpt)", file.name)
        top = None
        if match:
            named.add(match.group(1))
        elif file.name == "csynth.xml":
            top = csynth_xml_top(file)
        elif file.name == "csynth.rpt":
            top = csynth_rpt_top(file)
        if top:
            hls_tops.add(top)
    return named, hls_tops


def report_tops(files: list[Path]) -> set[str]:
    """Every top function that some C-synthesis report or Catapult solution among `files`
    describes."""
    named, hls_tops = _named_and_hls_tops(files)
    solutions = (SOLUTION.fullmatch(f.parent.name) for f in files if f.name == RESULTS_FILE)
    return named | hls_tops | {match["top"] for match in solutions if match}


def choose_top(files: list[Path], folder: Path) -> str | None:
    """The network's top function: hls4ml's project files first, then the reports present,
    preferring `<top>` over a wrapper `<top>_*` (an AXI wrapper is often the HLS top)."""
    project = _project_name(files, folder)
    if project is not None:
        return project
    named, hls_tops = _named_and_hls_tops(files)
    if hls_tops:
        resolved = set()
        for top in hls_tops:
            inner = [name for name in named if top.startswith(name + "_")]
            resolved.add(max(inner, key=len) if inner else top)
        if len(resolved) == 1:
            return resolved.pop()
        named |= resolved
    elif len(named) == 1:
        return next(iter(named))
    if not named:
        return None
    if _HLS4ML_DEFAULT_TOP in named:
        log.info("%s: several reports (%s); reading hls4ml's default top '%s'",
                 folder, ", ".join(sorted(named)), _HLS4ML_DEFAULT_TOP)
        return _HLS4ML_DEFAULT_TOP
    raise PipelineError(
        f"{folder}: reports of several top functions ({', '.join(sorted(named))}); pass --top NAME"
    )


def pick(candidates: list[Path], folder: Path, what: str) -> Path | None:
    """The shallowest candidate; equally shallow ones must be byte-identical copies."""
    if not candidates:
        return None
    candidates = sorted(candidates, key=lambda f: (_depth(f, folder), str(f)))
    shallowest = [c for c in candidates if _depth(c, folder) == _depth(candidates[0], folder)]
    first = shallowest[0]
    for other in shallowest[1:]:
        if read_text(other) != read_text(first):
            raise PipelineError(
                f"{folder}: several different {what} ({first}, {other}); "
                "point at one project folder or solution"
            )
    if len(candidates) > 1:
        log.debug("%s: reading %s of %d candidates", what, first, len(candidates))
    return first


def _csynth_files(files: list[Path], folder: Path, top: str) -> tuple[Path | None, Path | None]:
    """`<top>_csynth.*` first; Vitis' csynth.* only when its own top is `top`."""
    xml = pick([f for f in files if f.name == f"{top}_csynth.xml"], folder, "csynth XML")
    if xml is None:
        xml = pick(
            [f for f in files if f.name == "csynth.xml" and csynth_xml_top(f) == top],
            folder,
            "csynth XML",
        )
    rpt = pick([f for f in files if f.name == f"{top}_csynth.rpt"], folder, "csynth report")
    if rpt is None:
        rpt = pick(
            [f for f in files if f.name == "csynth.rpt" and csynth_rpt_top(f) == top],
            folder,
            "csynth report",
        )
    return xml, rpt


def _catapult_results(files: list[Path], folder: Path, top: str | None) -> Path | None:
    """The layer table of the last solution `<top>.v<N>` of each Catapult project folder, as
    hls4ml reads it, with versions compared as numbers (v10 after v9); a table outside such a
    folder (copied on its own) belongs to any top."""
    candidates = [f for f in files if f.name == RESULTS_FILE]
    solutions = {f: SOLUTION.fullmatch(f.parent.name) for f in candidates}
    if top is None:
        tops = sorted({match["top"] for match in solutions.values() if match})
        if len(tops) > 1:
            raise PipelineError(
                f"{folder}: Catapult results of several top functions ({', '.join(tops)}); "
                "pass --top NAME"
            )
    latest: dict[Path, tuple[int, Path]] = {}
    for file, match in solutions.items():
        if match and top is not None and match["top"] != top:
            continue
        version = int(match["version"]) if match else 0
        project = file.parent.parent if match else file.parent
        if project not in latest or version > latest[project][0]:
            latest[project] = (version, file)
    return pick([file for _, file in latest.values()], folder, "Catapult layer tables")


def _vivado_files(files: list[Path], catapult: Path | None) -> list[Path]:
    """hls4ml's vivado_synth.rpt; for Catapult, the report_utilization of the Vivado synthesis
    Catapult runs itself (vivado_concat_v/utilization_synth.rpt in the solution folder)."""
    found = [f for f in files if f.name == "vivado_synth.rpt"]
    if not found and catapult is not None:
        own = catapult.parent / "vivado_concat_v" / "utilization_synth.rpt"
        found = [own] if own in files else []
    return found


def find_reports(folder: str | os.PathLike[str], top: str | None = None) -> ReportFiles:
    """Locate the reports of `top` (discovered when None) anywhere under `folder`."""
    folder = Path(folder)
    files = walk(folder)
    if top is None:
        top = choose_top(files, folder)
    xml = rpt = None
    if top is not None:
        xml, rpt = _csynth_files(files, folder, top)
    catapult = _catapult_results(files, folder, top)
    vivado = pick(_vivado_files(files, catapult), folder, "vivado_synth.rpt")
    return ReportFiles(top=top, csynth_xml=xml, csynth_rpt=rpt, vivado_synth=vivado,
                       catapult=catapult)


# hls4ml's own files at the top of a project folder
_PROJECT_FILES = ("hls4ml_config.yml", "build_prj.tcl", "project.tcl")


def is_report_file(path: Path) -> bool:
    """Whether `path` is named like a report that find_reports reads."""
    return path.name.endswith(("_csynth.xml", "_csynth.rpt")) or path.name in (
        "csynth.xml", "csynth.rpt", "vivado_synth.rpt", RESULTS_FILE,
    )


def has_reports(folder: Path) -> bool:
    """Whether any report lies under `folder` (a project not yet synthesized has none)."""
    return any(is_report_file(f) for f in walk(folder))


def project_folders(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(name, folder) of each project in a folder of results synthesized elsewhere: the folder
    itself when it is one project (hls4ml's project files, a report or a `*_prj` folder at its
    top), else each subfolder with a report somewhere below, named after the subfolder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such folder")
    entries = sorted(e for e in folder.iterdir() if not e.name.startswith("."))
    if any((e.is_file() and (e.name in _PROJECT_FILES or is_report_file(e)))
           or (e.is_dir() and e.name.endswith("_prj")) for e in entries):
        return [(folder.resolve().name, folder)]
    projects = [(e.name, e) for e in entries if e.is_dir() and has_reports(e)]
    if not projects:
        raise PipelineError(
            f"{folder}: no project with reports in it or its subfolders (looked for "
            f"*_csynth.xml, *_csynth.rpt, csynth.xml, csynth.rpt, vivado_synth.rpt and {RESULTS_FILE})"
        )
    return projects


def classify(path: Path) -> str:
    """'xml' | 'rpt' | 'vivado' | 'catapult' from the file's content (copied files get
    renamed)."""
    head = read_text(path)[:20000]
    if not head.strip():
        raise PipelineError(f"{path}: empty file, not a report")
    if head.lstrip().startswith("<"):
        return "xml"
    if RPT_HEADER.search(head):
        return "rpt"
    if is_vivado_utilization(head):
        return "vivado"
    if is_catapult_layer_table(head):
        return "catapult"
    raise PipelineError(
        f"{path}: not a recognised report (expected an HLS <top>_csynth.xml/.rpt, "
        f"a Vivado report_utilization file or Catapult's {RESULTS_FILE})"
    )
