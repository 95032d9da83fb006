"""`smartpix report [--from FOLDER]`: one row per configuration, from the artifacts the other
stages wrote, or one row per project synthesized elsewhere and copied into FOLDER.

Reads build/reports/csim.json (bit-exact verdicts), build/reports/synth.json (vendor and
open-flow synthesis), each project's reports when synthesized elsewhere and copied back, the
model directories (parameter counts) and build/reports/evaluation/resolution.json (physics
resolution). With --from, the vendor figures come from the projects in FOLDER; a project named
like a configuration also gets that configuration's verdicts, model and resolution. Every
number carries its source (tool, version, file). Writes summary.md, .csv, .json and PNG plots;
a configuration without numbers, and a plot left out, say why.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.config import HardwareConfig, add_selection_arguments, load_configs, selected_configs
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
    "LUT", "FF", "DSP", "BRAM_18K", "URAM", "area", "hls_source",
    "vivado_LUT", "vivado_FF", "vivado_DSP", "vivado_BRAM_tile", "vivado_source",
    "open_LUT", "open_FF", "open_DSP", "open_CARRY", "open_gates", "open_latency_cycles", "open_source",
    "x_res_um", "y_res_um", "cotA_res", "cotB_res", "project", "note",
)
# the columns whose numbers have a unit, as summary.json states them
UNITS = {
    "clock_ns": "ns", "latency_max_ns": "ns", "x_res_um": "um", "y_res_um": "um",
    "area": "the technology library's area unit, as Catapult reports it (um^2 for most ASIC libraries)",
    "open_gates": "Yosys generic gate cells",
}
AREA_LABEL = "area (library units)"
PLOTS = {
    "resources": "summary_resources.png",
    "latency": "summary_latency.png",
    "pareto": "summary_pareto.png",
}
_BACKENDS = {"Vivado HLS": "Vivado", "Vitis HLS": "Vitis", "Catapult": "Catapult"}
UNREADABLE = "vendor reports unreadable"  # the note that makes `smartpix report` exit 1


@dataclass(frozen=True)
class _Inputs:
    """What the other stages wrote into the reports folder, by configuration name."""

    csim: dict[str, dict[str, Any]]
    synth: dict[str, dict[str, Any]]
    evaluation: dict[str, Any] | None


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def _load_inputs(reports_dir: Path) -> _Inputs:
    csim = (_load_json(reports_dir / "csim.json") or {}).get("configs", [])
    synth = (_load_json(reports_dir / "synth.json") or {}).get("configs", [])
    return _Inputs(
        csim={c["config"]: c for c in csim},
        synth={c["config"]: c for c in synth},
        evaluation=_load_json(reports_dir / "evaluation" / "resolution.json"),
    )


def _resolution(evaluation: dict[str, Any] | None, model: str) -> dict[str, float | None]:
    rows = (evaluation or {}).get("resolution", [])
    found = {}
    for row in rows if isinstance(rows, list) else []:
        if row.get("model") == model:
            found[row.get("target")] = row.get("core_width_68")
    return {"x_res_um": found.get("x-midplane"), "y_res_um": found.get("y-midplane"),
            "cotA_res": found.get("cotAlpha"), "cotB_res": found.get("cotBeta")}


# ---------------------------------------------------------------------------------------------
# rows


def summary_rows(configs: list[HardwareConfig], reports_dir: Path = DEFAULT_REPORTS,
                 firmware_dir: Path = DEFAULT_FIRMWARE_DIR) -> list[dict[str, Any]]:
    """One row per configuration, its vendor figures from this machine's synthesis or from
    reports copied back into its project folder."""
    inputs = _load_inputs(reports_dir)
    rows = []
    for config in configs:
        notes: list[str] = []
        project = paths.hls_project(firmware_dir, config.name)
        reports = _project_reports(project, inputs.synth.get(config.name), notes)
        rows.append(_config_row(config, inputs, reports, project, notes))
    return rows


def rows_from_folder(folder: Path, configs: list[HardwareConfig], reports_dir: Path = DEFAULT_REPORTS,
                     names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per project synthesized elsewhere and copied into `folder` (each subfolder, or
    the folder itself when it is one project). A project named like one of `configs` gets that
    configuration's settings, verdicts, model and resolution beside the figures of its reports."""
    from firmware.hls.vendor_reports import project_folders, read_reports

    projects = project_folders(folder)
    if names:
        known = dict(projects)
        missing = [name for name in names if name not in known]
        if missing:
            raise PipelineError(
                f"{folder}: no project named {missing[0]!r}; found: {', '.join(sorted(known))}"
            )
        projects = [(name, known[name]) for name in names]
    inputs = _load_inputs(reports_dir)
    by_name = {config.name: config for config in configs}
    rows = []
    for name, project in projects:
        notes: list[str] = []
        try:
            reports = read_reports(project)
        except PipelineError as err:
            reports = None
            notes.append(f"{UNREADABLE}: {err}")
        config = by_name.get(name)
        if config is not None:
            rows.append(_config_row(config, inputs, reports, project, notes))
        else:
            rows.append(_report_row(name, reports, project, notes))
    return rows


def _config_row(config: HardwareConfig, inputs: _Inputs, reports: dict[str, Any] | None,
                project: Path, notes: list[str]) -> dict[str, Any]:
    model = Path(config.model)
    description = _load_json(model / "model.json") or {}
    row: dict[str, Any] = {
        "config": config.name, "backend": config.backend, "io_type": config.io_type,
        "strategy": config.strategy, "reuse_factor": config.reuse_factor, "part": config.part,
        "clock_ns": config.clock_period_ns, "model": model.name, "params": description.get("params"),
        "project": str(project),
    }
    row.update(_csim_figures(inputs.csim.get(config.name), notes))
    row.update(_hls_figures(reports, notes))
    row.update(_vivado_figures(reports))
    row.update(_open_figures(inputs.synth.get(config.name), notes))
    row.update(_resolution(inputs.evaluation, model.name))
    if row.get("latency_max_ns") is None and row.get("latency_max_cycles") is not None:
        # a report without the clock (Catapult's layer table): the configuration's clock
        row["latency_max_ns"] = round(row["latency_max_cycles"] * config.clock_period_ns, 6)
    if inputs.evaluation is None:
        notes.append("no physics evaluation (make evaluate)")
    return _finish(row, notes)


def _report_row(name: str, reports: dict[str, Any] | None, project: Path,
                notes: list[str]) -> dict[str, Any]:
    """A project that is none of this checkout's configurations: what its reports say."""
    hls = (reports or {}).get("hls") or {}
    vivado = (reports or {}).get("vivado_synth") or {}
    row: dict[str, Any] = {
        "config": name, "backend": _BACKENDS.get(hls.get("tool")) or ("Vivado" if vivado else None),
        "part": hls.get("part") or vivado.get("device"), "clock_ns": hls.get("clock_target_ns"),
        "project": str(project),
    }
    notes.insert(0, "reports only (no configuration of this name: no verdicts, model or resolution)")
    row.update(_hls_figures(reports, notes))
    row.update(_vivado_figures(reports))
    return _finish(row, notes)


def _finish(row: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    row["note"] = "; ".join(notes)
    return {k: row.get(k) for k in COLUMNS}


def _csim_figures(verdict: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    if verdict is None:
        notes.append("C simulation not run (make csim)")
        return {"csim": "not run"}
    status = "exact" if verdict["exact"] else ("error" if verdict.get("error") else "NOT EXACT")
    return {"csim": status, "csim_events": sum(v["events"] for v in verdict.get("verdicts", []))}


def _project_reports(project: Path, synth: dict[str, Any] | None,
                     notes: list[str]) -> dict[str, Any] | None:
    """Vendor reports: from this machine's synth run, or from report files copied back into
    the project folder after synthesis elsewhere."""
    from firmware.hls.vendor_reports import has_reports, read_reports

    vendor = (synth or {}).get("vendor") or {}
    if vendor.get("reports"):
        return vendor["reports"]
    if project.is_dir() and has_reports(project):
        try:
            return read_reports(project)
        except PipelineError as err:
            notes.append(f"{UNREADABLE}: {err}")
            return None
    if vendor.get("status") in ("tool missing", "failed") or vendor.get("message"):
        notes.append(f"no vendor figures: {vendor.get('message')}")
    else:
        notes.append("no vendor figures: synthesis not run (make synth)")
    return None


def _hls_figures(reports: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """The HLS tool's latency, interval and resources (FPGA) or area (Catapult)."""
    hls = (reports or {}).get("hls")
    if not hls:
        return {}
    version = f" {hls['tool_version']}" if hls.get("tool_version") else ""
    figures = {
        "latency_min_cycles": hls.get("latency_best_cycles"), "latency_max_cycles": hls.get("latency_worst_cycles"),
        "latency_max_ns": hls.get("latency_worst_ns"), "ii_min": hls.get("interval_min"), "ii_max": hls.get("interval_max"),
        "hls_source": f"{hls.get('tool')}{version}: {hls.get('source')}",
    }
    if hls.get("tool") == "Catapult":
        figures["area"] = hls.get("area_total")
        notes.append(_catapult_note(hls))
    else:
        resources = hls.get("resources", {})
        figures.update({k: resources.get(k) for k in ("LUT", "FF", "DSP", "BRAM_18K", "URAM")})
    return figures


def _catapult_note(hls: dict[str, Any]) -> str:
    """Where a Catapult design's area goes and what its latency figure means."""
    layers = hls.get("layers") or []
    text = (f"Catapult area {hls['area_total']:,} = {hls['area_layers']:,} in layers + "
            f"{hls['area_fifos']:,} in FIFOs ({hls['area_units']})")
    if layers and hls["area_layers"]:
        largest = max(layers, key=lambda layer: layer["area"])
        share = 100 * largest["area"] / hls["area_layers"]
        text += f", largest layer `{largest['name']}` {largest['area']:,} ({share:.0f}%)"
    return (text + f"; latency {hls['latency_worst_cycles']} cycles is the {hls['latency_basis']} "
            f"({hls['latency_layers_sum_cycles']:,} with the layers one after another)")


def _vivado_figures(reports: dict[str, Any] | None) -> dict[str, Any]:
    """Vivado's logic-synthesis utilization, when the project holds one."""
    vivado = (reports or {}).get("vivado_synth")
    if not vivado:
        return {}
    used = vivado.get("used", {})
    return {
        "vivado_LUT": used.get("LUT"), "vivado_FF": used.get("FF"), "vivado_DSP": used.get("DSP"),
        "vivado_BRAM_tile": used.get("BRAM_TILE"),
        "vivado_source": (f"Vivado {vivado.get('tool_version')} ({vivado.get('design_state')}): "
                          f"{vivado.get('source')}"),
    }


def _open_figures(synth: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    flow = (synth or {}).get("open_flow") or {}
    if not flow:
        return {}
    if flow.get("status") != "done":
        notes.append(f"open flow {flow.get('status')}: {flow.get('message', '')}".rstrip(": "))
        if flow.get("rtl_exact") is None:
            return {"rtlsim": flow.get("status")}
    figures = flow.get("yosys") or {}
    return {
        "rtlsim": "exact" if flow.get("rtl_exact") else "NOT EXACT",
        "open_LUT": figures.get("LUT"), "open_FF": figures.get("FF"), "open_DSP": figures.get("DSP"),
        "open_CARRY": figures.get("CARRY"), "open_gates": figures.get("GATES"),
        "open_latency_cycles": flow.get("latency_cycles"),
        "open_source": flow.get("source"),
    }


# ---------------------------------------------------------------------------------------------
# writing


def write_summary(rows: list[dict[str, Any]], out_dir: Path = DEFAULT_REPORTS,
                  origin: str | None = None) -> list[Path]:
    """summary.json, .csv, .md and the plots that have points; `origin` says where the
    figures come from when not from this checkout's build."""
    out_dir = Path(out_dir)
    written = [write_json(out_dir / "summary.json", {"columns": list(COLUMNS), "units": UNITS, "rows": rows})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    written.append(write_text(out_dir / "summary.csv", buffer.getvalue()))
    plots = _plots(rows, out_dir)
    written.append(write_text(out_dir / "summary.md", _markdown(rows, out_dir, plots, origin)))
    return written + [out_dir / name for name, plot in plots.items() if plot.figure is not None]


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        # counts read as floats (Vivado's BRAM tiles can be halves) print as the tool wrote them
        return str(int(value)) if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"
    return str(value)


def _span(low: Any, high: Any) -> str:
    """'32' when both ends agree, '4625-95949' when they do not, '-' when unknown."""
    if low is None:
        return "-"
    return _fmt(low) if low == high else f"{_fmt(low)}-{_fmt(high)}"


def _markdown(rows: list[dict[str, Any]], out_dir: Path, plots: dict[str, _Plot],
              origin: str | None) -> str:
    lines = [
        "# Summary: one row per hardware configuration",
        "",
        "Bit-exact status, latency, interval and resources, with the model's size and physics "
        "resolution (68% half-width of the residuals). Vendor figures come from the HLS tool's "
        "report (FPGA resources from Vivado/Vitis HLS, area from Catapult in its technology "
        "library's units); open-flow figures from Yosys (synth_xilinx) on the da4ml Verilog, "
        "labelled as such.",
        "",
    ]
    if origin:
        lines += [origin, ""]
    lines += _main_table(rows, out_dir)
    lines += _vivado_table(rows)
    lines += ["", "## Sources and notes", ""]
    for r in rows:
        sources = [s for s in (r["hls_source"], r["vivado_source"], r["open_source"]) if s]
        text = "; ".join(sources) if sources else "no synthesis figures"
        note = r["note"][:1].upper() + r["note"][1:] if r["note"] else ""
        lines.append(f"- **{r['config']}**: {text}" + (f". {note}" if note else ""))
    lines += ["", "## Plots", ""]
    for name, plot in plots.items():
        title = name.removeprefix("summary_").removesuffix(".png")
        if plot.figure is None:
            lines.append(f"- {title}: not drawn, {plot.note}")
        else:
            lines.append(f"- [{title}]({name})" + (f": {plot.note}" if plot.note else ""))
    return "\n".join(lines) + "\n"


def _main_table(rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    lines = [
        "| config | backend / io / strategy / RF | csim | RTL sim | latency (cycles) | latency (ns) | II "
        f"| LUT | FF | DSP | BRAM_18K | {AREA_LABEL} | open LUT / FF / DSP | open latency | params "
        "| x (um) | y (um) | cotA | cotB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        project = os.path.relpath(r["project"], out_dir) if r["project"] else None
        name = f"[{r['config']}]({project})" if project else r["config"]
        if r["open_LUT"] is not None:
            open_res = f"{_fmt(r['open_LUT'])} / {_fmt(r['open_FF'])} / {_fmt(r['open_DSP'])}"
        elif r["open_gates"] is not None:
            open_res = f"{_fmt(r['open_gates'])} gates / {_fmt(r['open_FF'])} FF"
        else:
            open_res = "-"
        settings = " / ".join(_fmt(r[k]) for k in ("backend", "io_type", "strategy", "reuse_factor"))
        lines.append(
            f"| {name} | {settings} | {_fmt(r['csim'])} | {_fmt(r['rtlsim'])} "
            f"| {_span(r['latency_min_cycles'], r['latency_max_cycles'])} | {_fmt(r['latency_max_ns'])} "
            f"| {_span(r['ii_min'], r['ii_max'])} | {_fmt(r['LUT'])} | {_fmt(r['FF'])} | {_fmt(r['DSP'])} "
            f"| {_fmt(r['BRAM_18K'])} | {_fmt(r['area'])} | {open_res} | {_fmt(r['open_latency_cycles'])} "
            f"| {_fmt(r['params'])} | {_fmt(r['x_res_um'])} | {_fmt(r['y_res_um'])} "
            f"| {_fmt(r['cotA_res'])} | {_fmt(r['cotB_res'])} |"
        )
    return lines


def _vivado_table(rows: list[dict[str, Any]]) -> list[str]:
    """Vivado's logic-synthesis figures, for the rows that have them: after synthesis, not
    estimates, so they stand apart from the HLS tool's."""
    with_vivado = [r for r in rows if r["vivado_source"]]
    if not with_vivado:
        return []
    lines = ["", "## Vivado logic synthesis", "",
             "| config | LUT | FF | DSP | BRAM tiles |", "|---|---:|---:|---:|---:|"]
    for r in with_vivado:
        lines.append(f"| {r['config']} | {_fmt(r['vivado_LUT'])} | {_fmt(r['vivado_FF'])} "
                     f"| {_fmt(r['vivado_DSP'])} | {_fmt(r['vivado_BRAM_tile'])} |")
    return lines


# ---------------------------------------------------------------------------------------------
# plots


@dataclass
class _Plot:
    """One plot: its figure when it has points, and what summary.md says about it (why it is
    not drawn, or which rows it leaves out)."""

    figure: Any | None
    note: str = ""


def _lut(row: dict[str, Any]) -> tuple[float | None, str]:
    """The row's LUT figure and its source: the vendor report's, else the open flow's."""
    if row["LUT"] is not None:
        return row["LUT"], "HLS"
    return row["open_LUT"], "Yosys"


def _latency_ns(row: dict[str, Any]) -> tuple[float | None, str]:
    """Worst-case latency in ns and its source: the vendor report's, else the open flow's
    cycles at the configuration's clock."""
    if row["latency_max_ns"] is not None:
        return row["latency_max_ns"], "HLS"
    if row["open_latency_cycles"] is not None and row["clock_ns"] is not None:
        return row["open_latency_cycles"] * row["clock_ns"], "Yosys"
    return None, ""


def _left_out(rows: list[dict[str, Any]], kept: list[dict[str, Any]], why: str) -> str:
    names = [r["config"] for r in rows if all(r is not k for k in kept)]
    return f"leaves out {', '.join(names)} ({why})" if names else ""


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, _Plot]:
    """Plot file -> its _Plot, the drawn ones saved. A plot without points is not drawn, and a
    stale one from an earlier run is removed, so no file contradicts summary.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {
        PLOTS["resources"]: _resources_plot(plt, rows),
        PLOTS["latency"]: _latency_plot(plt, rows),
        PLOTS["pareto"]: _pareto_plot(plt, rows),
    }
    for name, plot in plots.items():
        path = out_dir / name
        if plot.figure is None:
            path.unlink(missing_ok=True)
            continue
        with atomic_path(path) as tmp:
            plot.figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None},
                                bbox_inches="tight")
        plt.close(plot.figure)
    return plots


def _bar_labels(ax, rows: list[dict[str, Any]], sources: list[str]) -> None:
    labels = [r["config"] + (f" [{s}]" if s == "Yosys" else "") for r, s in zip(rows, sources)]
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    # at least two slots wide, centred, so a lone bar does not fill its panel
    centre, half = (len(rows) - 1) / 2, max(len(rows), 2) / 2
    ax.set_xlim(centre - half - 0.2, centre + half + 0.2)


def _thousands(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _resources_plot(plt, rows: list[dict[str, Any]]) -> _Plot:
    """One panel per kind of figure, which share nothing but the configuration: FPGA LUT / FF /
    DSP, Catapult's area in library units, and Yosys' generic gate cells of ASIC parts."""
    fpga = [r for r in rows if _lut(r)[0] is not None]
    asic = [r for r in rows if r["area"] is not None]
    gates = [r for r in rows if r["open_gates"] is not None and _lut(r)[0] is None]
    panels = [(kind, chosen) for kind, chosen in (("fpga", fpga), ("area", asic), ("gates", gates)) if chosen]
    if not panels:
        return _Plot(None, "no configuration has resource figures (LUT, FF, DSP, area or gates)")
    widths = [max(len(chosen), 2) for _, chosen in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.5 + 1.1 * sum(widths) + 1.2 * len(panels), 5),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (kind, chosen) in zip(axes[0], panels):
        if kind == "fpga":
            _fpga_panel(ax, chosen)
        elif kind == "area":
            _single_panel(ax, chosen, [r["area"] for r in chosen], ["HLS"] * len(chosen),
                          AREA_LABEL, "Catapult area (layers + FIFOs)", "tab:purple")
        else:
            _single_panel(ax, chosen, [r["open_gates"] for r in chosen], ["Yosys"] * len(chosen),
                          "Yosys generic gate cells", "ASIC parts, open flow", "tab:gray")
    fig.tight_layout()
    shown = [r for _, chosen in panels for r in chosen]
    return _Plot(fig, _left_out(rows, shown, "no HLS or open-flow resource figures"))


def _single_panel(ax, rows: list[dict[str, Any]], values: list[float], sources: list[str],
                  ylabel: str, title: str, color: str) -> None:
    bars = ax.bar(range(len(rows)), values, width=0.5, color=color)
    ax.bar_label(bars, [f"{v:,.0f}" for v in values], fontsize=8, padding=2)
    _bar_labels(ax, rows, sources)
    _thousands(ax)
    ax.margins(y=0.12)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _fpga_panel(ax, fpga: list[dict[str, Any]]) -> None:
    sources = [_lut(r)[1] for r in fpga]
    top = 1.0
    for k, key in enumerate(("LUT", "FF", "DSP")):
        values = [(r[key] if s == "HLS" else r[f"open_{key}"]) or 0 for r, s in zip(fpga, sources)]
        ax.bar([i + (k - 1) * 0.27 for i in range(len(fpga))], values, width=0.27, label=key)
        top = max(top, *values)
    _bar_labels(ax, fpga, sources)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(0, top * 4)  # headroom on a log axis, so the tallest bar is not cut by the frame
    ax.set_ylabel("count (HLS report; [Yosys] where marked)")
    ax.set_title("FPGA resources")
    ax.legend(fontsize=8, ncols=3, loc="upper right")


def _latency_plot(plt, rows: list[dict[str, Any]]) -> _Plot:
    points = [(r, *_latency_ns(r)) for r in rows]
    points = [(r, ns, source) for r, ns, source in points if ns is not None]
    if not points:
        return _Plot(None, "no configuration has a latency in ns (cycles and a clock period)")
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * max(len(points), 3), 5))
    values = [ns for _, ns, _ in points]
    bars = ax.bar(range(len(points)), values, width=0.6)
    ax.bar_label(bars, [f"{v:,.0f}" for v in values], fontsize=8, padding=2)
    _bar_labels(ax, [r for r, _, _ in points], [s for _, _, s in points])
    if max(values) > 50 * min(values):
        ax.set_yscale("log")  # latencies spanning decades: 25 ns next to 0.5 ms
        ax.set_ylim(min(values) / 3, max(values) * 4)
    else:
        _thousands(ax)
        ax.margins(y=0.12)
    ax.set_ylabel("worst-case latency (ns)")
    ax.set_title("Latency per configuration")
    fig.tight_layout()
    return _Plot(fig, _left_out(rows, [r for r, _, _ in points], "no latency in cycles with a clock period"))


def _pareto_plot(plt, rows: list[dict[str, Any]]) -> _Plot:
    """x resolution against LUTs; configurations on the same point share one marker, and the
    names go to a legend beside the axes, where they can neither overlap nor be cut off."""
    points: dict[tuple[float, float, str], list[str]] = {}
    kept = []
    for r in rows:
        lut, source = _lut(r)
        if lut is not None and r["x_res_um"] is not None:
            points.setdefault((lut, r["x_res_um"], source), []).append(r["config"])
            kept.append(r)
    if not points:
        return _Plot(None, "no configuration has both a resolution and a LUT figure")
    fig, ax = plt.subplots(figsize=(7.5, 4.8 + 0.22 * len(points)))
    markers = "osD^vP*X"
    for k, ((lut, resolution, source), names) in enumerate(sorted(points.items())):
        ax.scatter(lut, resolution, s=50, marker=markers[k % len(markers)],
                   label=f"{', '.join(names)} [{source}]")
    ax.margins(x=0.15, y=0.15)
    _thousands_x(ax)
    ax.set_xlabel("LUT (HLS report, else Yosys)")
    ax.set_ylabel("x resolution, 68% half-width (um)")
    ax.set_title("Resolution against LUTs")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), borderaxespad=0)
    fig.tight_layout()
    return _Plot(fig, _left_out(rows, kept, "no resolution or no LUT figure"))


def _thousands_x(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, DEFAULT_FIRMWARE_DIR, DEFAULT_REPORTS)
    parser.add_argument(
        "--from", dest="from_dir", metavar="FOLDER", type=Path, default=None,
        help="read projects synthesized elsewhere and copied into FOLDER (each subfolder, or "
             "FOLDER itself, is one project) instead of this checkout's builds; a project named "
             "like a configuration also gets its verdicts and resolution; names, if given, select "
             "projects. The summary goes to --reports as usual",
    )


def _configs_if_any(config_dir: Path) -> list[HardwareConfig]:
    """The checkout's configurations, or none when the folder holds none (reports of projects
    synthesized elsewhere need no configuration)."""
    return load_configs(config_dir) if any(Path(config_dir).glob("*.yml")) else []


def run(args: argparse.Namespace) -> int:
    origin = None
    if args.from_dir is not None:
        rows = rows_from_folder(args.from_dir, _configs_if_any(args.config_dir), args.reports,
                                args.configs or None)
        origin = f"Vendor figures read from projects synthesized elsewhere, in `{args.from_dir}`."
    else:
        configs = selected_configs(args)
        rows = summary_rows(configs, args.reports, args.firmware_dir)
    written = write_summary(rows, args.reports, origin)
    print((Path(args.reports) / "summary.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    unreadable = [r["config"] for r in rows if UNREADABLE in (r["note"] or "")]
    if unreadable:
        log.error("reports of %s could not be read (see summary.md)", ", ".join(unreadable))
        return 1
    return 0
