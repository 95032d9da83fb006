"""`smartpix report`: one row per configuration, from the artifacts the other stages wrote.

Reads build/reports/csim.json (bit-exact verdicts), build/reports/synth.json (vendor and
open-flow synthesis), each project's reports when synthesized elsewhere and copied back, the
model directories (parameter counts) and build/reports/evaluation/resolution.json (physics
resolution). Every number carries its source (tool, version, file). Writes summary.md, .csv,
.json and PNG plots; a configuration without numbers says why.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from firmware.config import add_selection_arguments, HardwareConfig, load_configs
from firmware.hls.project import DEFAULT_FIRMWARE_DIR
from smartpix import paths
from smartpix.artifacts import atomic_path, write_json, write_text
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_REPORTS = paths.REPORTS
COLUMNS = (
    "config", "backend", "io_type", "strategy", "reuse_factor", "part", "clock_ns", "model", "params",
    "csim", "csim_events", "rtlsim",
    "latency_min_cycles", "latency_max_cycles", "latency_max_ns", "ii_min", "ii_max",
    "LUT", "FF", "DSP", "BRAM_18K", "URAM", "hls_source",
    "open_LUT", "open_FF", "open_DSP", "open_CARRY", "open_gates", "open_latency_cycles", "open_source",
    "x_res_um", "y_res_um", "cotA_res", "cotB_res", "note",
)


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _resolution(evaluation: dict[str, Any] | None, model: str) -> dict[str, float | None]:
    rows = (evaluation or {}).get("resolution", [])
    found = {}
    for row in rows if isinstance(rows, list) else []:
        if row.get("model") == model:
            found[row.get("target")] = row.get("core_width_68")
    return {"x_res_um": found.get("x-midplane"), "y_res_um": found.get("y-midplane"),
            "cotA_res": found.get("cotAlpha"), "cotB_res": found.get("cotBeta")}


def summary_rows(configs: list[HardwareConfig], reports_dir: Path = DEFAULT_REPORTS,
                 firmware_dir: Path = DEFAULT_FIRMWARE_DIR) -> list[dict[str, Any]]:
    csim = {c["config"]: c for c in (_load_json(reports_dir / "csim.json") or {}).get("configs", [])}
    synth = {c["config"]: c for c in (_load_json(reports_dir / "synth.json") or {}).get("configs", [])}
    evaluation = _load_json(reports_dir / "evaluation" / "resolution.json")
    rows = []
    for config in configs:
        notes = []
        model = Path(config.model)
        description = _load_json(model / "model.json") or {}
        row: dict[str, Any] = {
            "config": config.name, "backend": config.backend, "io_type": config.io_type,
            "strategy": config.strategy, "reuse_factor": config.reuse_factor, "part": config.part,
            "clock_ns": config.clock_period_ns, "model": model.name, "params": description.get("params"),
        }
        verdict = csim.get(config.name)
        if verdict is None:
            row["csim"] = "not run"
            notes.append("C simulation not run (make csim)")
        else:
            row["csim"] = "exact" if verdict["exact"] else ("error" if verdict.get("error") else "NOT EXACT")
            row["csim_events"] = sum(v["events"] for v in verdict.get("verdicts", []))
        hls = _hls_figures(config, synth.get(config.name), firmware_dir, notes)
        row.update(hls)
        row.update(_open_figures(synth.get(config.name), notes))
        row.update(_resolution(evaluation, model.name))
        if evaluation is None:
            notes.append("no physics evaluation (make evaluate)")
        row["note"] = "; ".join(notes)
        rows.append({k: row.get(k) for k in COLUMNS})
    return rows


def _hls_figures(config: HardwareConfig, synth: dict[str, Any] | None, firmware_dir: Path,
                 notes: list[str]) -> dict[str, Any]:
    """Vendor C-synthesis figures: from this machine's synth run, or from report files copied
    back into the project folder after synthesis elsewhere."""
    from firmware.hls.vendor_reports import read_reports

    reports = None
    vendor = (synth or {}).get("vendor") or {}
    if vendor.get("reports"):
        reports = vendor["reports"]
    else:
        project = paths.hls_project(firmware_dir, config.name)
        try:
            reports = read_reports(project) if project.is_dir() else None
        except PipelineError:
            reports = None
        if reports is None:
            if vendor.get("status") in ("tool missing", "failed"):
                notes.append(f"no vendor figures: {vendor.get('message')}")
            else:
                notes.append("no vendor figures: synthesis not run (make synth)")
    hls = (reports or {}).get("hls")
    if not hls:
        return {}
    resources = hls.get("resources", {})
    return {
        "latency_min_cycles": hls.get("latency_best_cycles"), "latency_max_cycles": hls.get("latency_worst_cycles"),
        "latency_max_ns": hls.get("latency_worst_ns"), "ii_min": hls.get("interval_min"), "ii_max": hls.get("interval_max"),
        **{k: resources.get(k) for k in ("LUT", "FF", "DSP", "BRAM_18K", "URAM")},
        "hls_source": f"{hls.get('tool')} {hls.get('tool_version')}: {hls.get('source')}",
    }


def _open_figures(synth: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    flow = (synth or {}).get("open_flow") or {}
    if not flow:
        return {}
    if flow.get("status") != "done":
        notes.append(f"open flow {flow.get('status')}: {flow.get('message', '')}".rstrip(": "))
        return {"rtlsim": flow.get("status")}
    figures = flow.get("yosys", {})
    return {
        "rtlsim": "exact" if flow.get("rtl_exact") else "NOT EXACT",
        "open_LUT": figures.get("LUT"), "open_FF": figures.get("FF"), "open_DSP": figures.get("DSP"),
        "open_CARRY": figures.get("CARRY"), "open_gates": figures.get("GATES"),
        "open_latency_cycles": flow.get("latency_cycles"),
        "open_source": flow.get("source"),
    }


def write_summary(rows: list[dict[str, Any]], out_dir: Path = DEFAULT_REPORTS,
                  firmware_dir: Path = DEFAULT_FIRMWARE_DIR) -> list[Path]:
    out_dir = Path(out_dir)
    written = [write_json(out_dir / "summary.json", {"columns": list(COLUMNS), "rows": rows})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    written.append(write_text(out_dir / "summary.csv", buffer.getvalue()))
    written.append(write_text(out_dir / "summary.md", _markdown(rows, out_dir, Path(firmware_dir))))
    written += _plots(rows, out_dir)
    return written


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown(rows: list[dict[str, Any]], out_dir: Path, firmware_dir: Path) -> str:
    import os

    lines = [
        "# Summary: one row per hardware configuration",
        "",
        "Bit-exact status, latency, interval and resources, with the model's size and physics "
        "resolution (68% half-width of the residuals). Vendor figures come from the HLS tool's "
        "report; open-flow figures from Yosys (synth_xilinx) on the da4ml Verilog, labelled as such.",
        "",
        "| config | backend / io / strategy / RF | csim | RTL sim | latency (cycles) | latency (ns) | II | LUT | FF | DSP | BRAM_18K "
        "| open LUT / FF / DSP | open latency | params | x (um) | y (um) | cotA | cotB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        project = os.path.relpath(paths.hls_project(firmware_dir, r["config"]), out_dir)
        latency = (f"{_fmt(r['latency_min_cycles'])}-{_fmt(r['latency_max_cycles'])}"
                   if r["latency_min_cycles"] is not None else "-")
        ii = f"{_fmt(r['ii_min'])}-{_fmt(r['ii_max'])}" if r["ii_min"] is not None else "-"
        if r["open_LUT"] is not None:
            open_res = f"{_fmt(r['open_LUT'])} / {_fmt(r['open_FF'])} / {_fmt(r['open_DSP'])}"
        elif r["open_gates"] is not None:
            open_res = f"{_fmt(r['open_gates'])} gates / {_fmt(r['open_FF'])} FF"
        else:
            open_res = "-"
        lines.append(
            f"| [{r['config']}]({project}) | {r['backend']} / {r['io_type']} / {r['strategy']} / {r['reuse_factor']} "
            f"| {_fmt(r['csim'])} | {_fmt(r['rtlsim'])} | {latency} | {_fmt(r['latency_max_ns'])} | {ii} "
            f"| {_fmt(r['LUT'])} | {_fmt(r['FF'])} | {_fmt(r['DSP'])} | {_fmt(r['BRAM_18K'])} | {open_res} "
            f"| {_fmt(r['open_latency_cycles'])} | {_fmt(r['params'])} | {_fmt(r['x_res_um'])} | {_fmt(r['y_res_um'])} "
            f"| {_fmt(r['cotA_res'])} | {_fmt(r['cotB_res'])} |"
        )
    lines += ["", "## Sources and notes", ""]
    for r in rows:
        sources = [s for s in (r["hls_source"], r["open_source"]) if s]
        text = "; ".join(sources) if sources else "no synthesis figures"
        lines.append(f"- **{r['config']}**: {text}" + (f". {r['note']}" if r["note"] else ""))
    lines += ["", "Plots: [resources](summary_resources.png), [latency](summary_latency.png), "
              "[resolution vs LUTs](summary_pareto.png)."]
    return "\n".join(lines) + "\n"


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["config"] for r in rows]
    paths = []

    def lut(r):
        return r["LUT"] if r["LUT"] is not None else r["open_LUT"]

    def save(fig, name):
        path = out_dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(rows))
    for k, (key, label) in enumerate((("LUT", "LUT"), ("FF", "FF"), ("DSP", "DSP"))):
        values = [r[key] if r[key] is not None else (r[f"open_{key}"] or 0) for r in rows]
        ax.bar(x + (k - 1) * 0.27, values, width=0.27, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_yscale("symlog")
    ax.set_ylabel("count (vendor report, else open flow)")
    ax.set_title("Resources per configuration")
    ax.legend()
    fig.tight_layout()
    save(fig, "summary_resources.png")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    cycles = [r["latency_max_cycles"] if r["latency_max_cycles"] is not None else (r["open_latency_cycles"] or 0)
              for r in rows]
    ns = [c * r["clock_ns"] for c, r in zip(cycles, rows)]
    ax.bar(x, ns)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("worst-case latency (ns)")
    ax.set_title("Latency per configuration")
    fig.tight_layout()
    save(fig, "summary_latency.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        if lut(r) is not None and r["x_res_um"] is not None:
            ax.scatter(lut(r), r["x_res_um"])
            ax.annotate(r["config"], (lut(r), r["x_res_um"]), fontsize=7)
    ax.set_xlabel("LUT")
    ax.set_ylabel("x resolution, 68% half-width (um)")
    ax.set_title("Resolution against LUTs")
    fig.tight_layout()
    save(fig, "summary_pareto.png")
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, DEFAULT_FIRMWARE_DIR, DEFAULT_REPORTS)


def run(args: argparse.Namespace) -> int:
    configs = load_configs(args.config_dir, args.configs or None)
    rows = summary_rows(configs, args.reports, args.firmware_dir)
    written = write_summary(rows, args.reports, args.firmware_dir)
    print(written[2].read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
