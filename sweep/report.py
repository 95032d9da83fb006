"""A sweep's report: the points table (Markdown, CSV, JSON) with each point's bit-exact verdict
and front membership, the Pareto fronts, and one plot per front with its points labelled.

Only bit-exact points can be on a front: a design whose firmware does not reproduce the model is
not a design. Non-exact and failed points are listed (and drawn as red crosses) all the same.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smartpix.artifacts import atomic_path, write_json, write_text
from sweep.pareto import FRONTS, agreement, non_dominated

log = logging.getLogger(__name__)

COLUMNS = ("label", "verdict", "pareto", "x_um", "y_um", "cotAlpha", "cotBeta", "pull_x", "pull_y",
           "pull_cotAlpha", "pull_cotBeta", "params", "est_luts", "latency_cycles", "clock_ns", "latency_ns",
           "largest_layer", "yosys_luts", "yosys_ffs", "yosys_gates", "seconds", "key", "error")
AXIS_TITLES = {"x_um": "x resolution, 68% half-width (um)", "y_um": "y resolution, 68% half-width (um)",
               "est_luts": "LUT estimate (da4ml adder graph)", "latency_ns": "latency (ns, at the clock)"}


def point_row(label: str, key: str, record: dict[str, Any] | None, error: str | None,
              coordinates: dict[str, Any], yosys: dict[str, Any] | None = None) -> dict[str, Any]:
    """One table row of a point: its numbers, or its error."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(label=label, key=key, pareto="", layers=[], **{f"axis:{k}": v for k, v in coordinates.items()})
    if record is None:
        row.update(verdict="error", error=error or "did not run")
        return row
    res, est = record["resolution"], record["estimate"]
    row.update(
        verdict=record["verdict"], x_um=res["x"]["width_68"], y_um=res["y"]["width_68"],
        cotAlpha=res["cotAlpha"]["width_68"], cotBeta=res["cotBeta"]["width_68"],
        pull_x=res["x"]["pull_width_68"], pull_y=res["y"]["pull_width_68"],
        pull_cotAlpha=res["cotAlpha"]["pull_width_68"], pull_cotBeta=res["cotBeta"]["pull_width_68"],
        params=record["params"], est_luts=round(est["luts"]), latency_cycles=est["latency_cycles"],
        clock_ns=est["clock_period_ns"], latency_ns=est["latency_ns"], seconds=record["seconds"]["total"],
        error=record["csim"].get("error") or _mismatch(record),
    )
    row["layers"] = layer_shares(est.get("layers", []))
    if row["layers"]:
        largest = max(row["layers"], key=lambda layer: layer["estimated_luts"])
        row["largest_layer"] = f"{largest['name']} {100 * largest['share']:.0f}%"
    if yosys:
        row.update(yosys_luts=yosys.get("luts"), yosys_ffs=yosys.get("ffs"), yosys_gates=yosys.get("gates"))
    return row


def layer_shares(layers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The layers that cost anything, as {name, estimated_luts, share}, in graph order."""
    return [{"name": layer["name"], "estimated_luts": layer["estimated_luts"], "share": layer["share"]}
            for layer in layers if layer.get("estimated_luts")]


def _mismatch(record: dict[str, Any]) -> str | None:
    bad = {name: s for name, s in record["csim"]["sets"].items() if s["mismatching_events"] or s["error"]}
    if not bad:
        return None
    name, s = next(iter(bad.items()))
    layer = (s.get("first_differing_layer") or {}).get("layer")
    return s["error"] or f"{s['mismatching_events']} events differ on {name}" + (f", first at {layer}" if layer else "")


def mark_fronts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Set each row's `pareto` to the fronts it is on; return {front: labels on it, best first}."""
    eligible = [r for r in rows if r["verdict"] == "exact"]
    fronts = {}
    for name, a, b in FRONTS:
        members = [eligible[i] for i in non_dominated([(_num(r[a]), _num(r[b])) for r in eligible])]
        members.sort(key=lambda r: (r[b], r[a]))
        fronts[name] = [r["label"] for r in members]
        for r in members:
            r["pareto"] = ", ".join(filter(None, [r["pareto"], name]))
    return fronts


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def write_report(rows: list[dict[str, Any]], out_dir: Path, sweep: str, notes: Sequence[str] = (),
                 plots: bool = True) -> dict[str, Any]:
    """Write points.{md,csv,json} and front_<name>.png to `out_dir`; return points.json's content."""
    out_dir = Path(out_dir)
    fronts = mark_fronts(rows)
    # an ASIC part has Yosys' generic gate count instead of LUTs: still a size to rank against
    measured = {r["label"]: r["yosys_luts"] if r["yosys_luts"] is not None else r["yosys_gates"] for r in rows}
    with_yosys = [r for r in rows if r["verdict"] == "exact" and measured[r["label"]] is not None]
    agree = agreement([r["est_luts"] for r in with_yosys], [measured[r["label"]] for r in with_yosys])
    axes = list(dict.fromkeys(k for r in rows for k in r if k.startswith("axis:")))
    columns = list(COLUMNS[:3]) + axes + list(COLUMNS[3:])
    by_layer = _front_members(rows, fronts, "x-LUT")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("exact", "NOT EXACT", "error")}
    content = {"sweep": sweep, "points": rows, "fronts": fronts, "verdicts": counts,
               "estimate_vs_yosys": agree.to_dict(), "notes": list(notes)}
    write_json(out_dir / "points.json", content)
    write_text(out_dir / "points.csv", _csv(rows, columns))
    write_text(out_dir / "points.md", _markdown(rows, columns, sweep, fronts, counts, agree, notes)
               + _layer_table(by_layer))
    if plots:
        for name, a, b in FRONTS:
            plot_front(rows, fronts[name], a, b, out_dir / f"front_{name}.png", f"{sweep}: {name} front")
        if any(r.get("layers") for r in by_layer):
            plot_layer_costs(by_layer, out_dir / "layer_costs.png", f"{sweep}: where the LUT estimate goes")
    return content


def _front_members(rows: list[dict[str, Any]], fronts: dict[str, list[str]], front: str) -> list[dict[str, Any]]:
    by_label = {r["label"]: r for r in rows}
    return [by_label[label] for label in fronts.get(front, [])]


def _layer_table(members: list[dict[str, Any]]) -> str:
    """Per-layer shares of the estimate of the (x resolution, LUT) front's points: what a designer
    shrinks next."""
    members = [r for r in members if r.get("layers")]
    if not members:
        return ""
    lines = ["", "## Where the LUT estimate goes (x-LUT front)", "",
             "Each layer's share of da4ml's cost of the point's adder graph; layers costing nothing "
             "(inputs, reshapes) are left out. A quantized activation's share is its rounding and "
             "saturation logic.", "", "| point | est_luts | layers, largest first |", "|---|---|---|"]
    for r in members:
        ranked = sorted(r["layers"], key=lambda layer: -layer["estimated_luts"])
        shares = ", ".join(f"{layer['name']} {100 * layer['share']:.0f}%" for layer in ranked)
        lines.append(f"| {r['label']} | {_cell(r['est_luts'])} | {shares} |")
    return "\n".join(lines) + "\n"


def plot_layer_costs(members: list[dict[str, Any]], path: Path, title: str) -> Path:
    """One horizontal bar per point, split into its layers' LUT estimates (one colour per layer name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = [r for r in members if r.get("layers")]
    names = list(dict.fromkeys(layer["name"] for r in members for layer in r["layers"]))
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * len(members)), dpi=110)
    for i, r in enumerate(members):
        left = 0.0
        for layer in r["layers"]:
            colour = colours(names.index(layer["name"]) % 20)
            ax.barh(i, layer["estimated_luts"], left=left, color=colour, edgecolor="white", linewidth=0.5,
                    label=layer["name"])
            left += layer["estimated_luts"]
    ax.set_yticks(range(len(members)), [r["label"] for r in members], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(AXIS_TITLES["est_luts"])
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title="layer", title_fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.removeprefix("axis:") for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _markdown(rows, columns, sweep, fronts, counts, agree, notes) -> str:
    shown = [c for c in columns if c not in ("key", "error")] + ["error"]
    lines = [f"# Sweep `{sweep}`", "",
             f"{len(rows)} points: {counts['exact']} bit-exact, {counts['NOT EXACT']} not exact, "
             f"{counts['error']} failed. Resolutions are 68% half-widths; `est_luts` is da4ml's cost of the "
             "solved adder graph; `latency_ns` the pipeline at the point's clock.", ""]
    for name, labels in fronts.items():
        lines.append(f"- front {name}: {', '.join(labels) or '(none)'}")
    if agree.points:
        rho = "n/a" if agree.spearman is None else f"{agree.spearman:.3f}"
        lines.append(f"- estimate vs Yosys LUTs (generic gate cells for an ASIC part) over {agree.points} points: "
                     f"Spearman {rho}, median ratio "
                     f"{agree.median_ratio:.3g}, worst ratio {agree.worst_ratio:.3g}")
    lines += [f"- {note}" for note in notes]
    lines += ["", "| " + " | ".join(c.removeprefix("axis:") for c in shown) + " |",
              "|" + "|".join("---" for _ in shown) + "|"]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "/").replace("\n", " ") for c in shown]
        if row["verdict"] != "exact":
            cells[1] = f"**{cells[1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_front(rows: list[dict[str, Any]], front: list[str], x_key: str, y_key: str, path: Path, title: str) -> Path:
    """Resolution against cost: every exact point grey, the front's points joined and labelled,
    non-exact points as red crosses (at their numbers, when they have any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # cost on the horizontal axis, resolution on the vertical: lower left is better
    cost, resolution = y_key, x_key
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    by_label = {r["label"]: r for r in rows}
    exact = [r for r in rows if r["verdict"] == "exact" and _plottable(r, cost, resolution)]
    bad = [r for r in rows if r["verdict"] != "exact" and _plottable(r, cost, resolution)]
    ax.scatter([r[cost] for r in exact], [r[resolution] for r in exact], s=18, color="0.65", label="bit-exact point")
    if bad:
        ax.scatter([r[cost] for r in bad], [r[resolution] for r in bad], s=60, marker="x", color="tab:red",
                   label="NOT bit-exact (off the front)")
        for r in bad:
            ax.annotate(f"{r['label']} ({r['verdict']})", (r[cost], r[resolution]), textcoords="offset points",
                        xytext=(6, -12), fontsize=8, color="tab:red")
    members = [by_label[label] for label in front]
    if members:
        ax.step([r[cost] for r in members], [r[resolution] for r in members], where="post", color="tab:blue",
                linewidth=1.2)
        ax.scatter([r[cost] for r in members], [r[resolution] for r in members], s=36, color="tab:blue",
                   zorder=3, label="Pareto front")
        for i, r in enumerate(members):
            ax.annotate(r["label"], (r[cost], r[resolution]), textcoords="offset points",
                        xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8, color="tab:blue")
    values = [r[cost] for r in exact + bad]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(AXIS_TITLES.get(cost, cost))
    ax.set_ylabel(AXIS_TITLES.get(resolution, resolution))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _plottable(row: dict[str, Any], *keys: str) -> bool:
    return all(not math.isnan(_num(row[k])) for k in keys)
