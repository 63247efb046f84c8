"""`modelmon-daemon report UID --out report.html`: one self-contained HTML page (images
inlined as PNG) with per-feature reference vs current histograms, drift over time with the
thresholds, result statuses per window and the operational metrics. Built from the HTTP
API, so it works against any running daemon."""

from __future__ import annotations

import base64
import html
import io
import itertools
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from modelmon_daemon.core.enums import ResultStatus

STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse} "
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px} img{margin:4px}"
)
STATUS_COLORS = {-1: "#9e9e9e", 0: "#2e7d32", 1: "#f9a825", 2: "#c62828"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _inner(hist: list[list[float]]) -> tuple[list[float], list[float]]:
    counts, edges = hist
    if len(edges) > 3 and abs(edges[0]) > 1e300:  # padded: show the inner bins and
        return [counts[0] + counts[1], *counts[2:-2], counts[-2] + counts[-1]], edges[1:-1]
    return list(counts), list(edges)


def feature_plot(name: str, reference: dict[str, Any], current: dict[str, Any] | None) -> bytes:
    """Reference vs current distribution on the reference's bins (outer bins folded in)."""
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ref_counts, edges = _inner(reference["hist"])
    widths = [b - a for a, b in itertools.pairwise(edges)]
    series = [(ref_counts, "reference", "#1565c0")]
    if current and current.get("hist"):
        series.append((_inner(current["hist"])[0], "current window", "#ef6c00"))
    for counts, label, color in series:
        total = sum(counts) or 1
        ax.bar(
            edges[:-1],
            [c / total for c in counts],
            width=widths,
            align="edge",
            alpha=0.5,
            label=label,
            color=color,
        )
    ax.set_title(name.replace("$", r"\$"))  # a name is text, never mathtext ("$$" raised)
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    return _png(fig)


def _times(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["start"].rstrip("Z") for r in rows], dtype="datetime64[s]")


def drift_plot(results: list[dict[str, Any]], potential: float, detected: float) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for name, style in (("general_drift", "-o"), ("tvd_mean", "--"), ("hellinger_mean", ":")):
        rows = [
            r for r in results if r["application"] == "histogram-data-drift" and r["name"] == name
        ]
        if rows:
            ax.plot(_times(rows), [r["value"] for r in rows], style, label=name, markersize=3)
    ax.axhline(potential, color="#f9a825", linewidth=1, label=f"potential ({potential})")
    ax.axhline(detected, color="#c62828", linewidth=1, label=f"detected ({detected})")
    ax.set_ylim(0, 1.05)
    ax.set_title("Histogram drift per window")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def operations_plot(results: list[dict[str, Any]]) -> bytes:
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    for ax, name, label in zip(
        axes,
        ("predictions", "latency_avg", "error_rate"),
        ("predictions per window", "average latency (us)", "error rate"),
        strict=True,
    ):
        rows = [
            r for r in results if r["application"] == "operational-health" and r["name"] == name
        ]
        if rows:
            ax.plot(_times(rows), [r["value"] for r in rows], "-o", markersize=3)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def plots(
    record: dict[str, Any], results: list[dict[str, Any]], potential: float, detected: float
) -> dict[str, bytes]:
    """Every plot of the report by name: drift, operations, feature:<name>."""
    out = {
        "drift": drift_plot(results, potential, detected),
        "operations": operations_plot(results),
    }
    current = record.get("current_stats") or {}
    for name, stats in (record.get("feature_stats") or {}).items():
        if stats.get("hist"):
            out[f"feature:{name}"] = feature_plot(name, stats, current.get(name))
    return out


def build_report(
    record: dict[str, Any],
    results: list[dict[str, Any]],
    potential: float = 0.5,
    detected: float = 0.7,
) -> str:
    images = plots(record, results, potential, detected)
    esc = html.escape
    ops_keys = [
        "latency_avg_5m",
        "latency_avg_1h",
        "predictions_count_5m",
        "predictions_count_1h",
        "predictions_per_second",
        "error_count",
        "late_events",
        "events_total",
        "first_request",
        "last_request",
    ]
    ops_rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(record.get(k)))}</td></tr>" for k in ops_keys
    )
    result_rows = []
    for r in [r for r in results if r["type"] == "result"][-200:]:
        status = r["status"]
        color = STATUS_COLORS.get(status if status is not None else -1, "#9e9e9e")
        name = ResultStatus(status).name if status is not None else "-"
        value = "-" if r["value"] is None else f"{r['value']:.6g}"
        result_rows.append(
            f"<tr><td>{esc(r['start'])}</td><td>{esc(r['application'])}</td><td>{esc(r['name'])}</td>"
            f"<td>{value}</td><td style='background:{color};color:white'>{esc(name)}</td></tr>"
        )
    features = "".join(_img(png, key) for key, png in images.items() if key.startswith("feature:"))
    measures = record.get("drift_measures") or {}
    title = f"Endpoint {esc(record['name'])}"
    who = f"({esc(record['uid'])}, project {esc(record['project'])})"
    summary = (
        f"Drift status: <b>{esc(str(record.get('drift_status')))}</b>; general_drift "
        f"{esc(str(measures.get('general_drift')))}; "
        f"last analyzed {esc(str(record.get('last_analyzed')))}."
    )
    header = "".join(
        f"<th>{h}</th>" for h in ("window start", "application", "result", "value", "status")
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>modelmon report: {esc(record["uid"])}</title>
<style>{STYLE}</style>
</head><body>
<h1>{title} <small>{who}</small></h1>
<p>{summary}</p>
<h2>Drift over time</h2>{_img(images["drift"], "drift")}
<h2>Features: reference vs current window</h2><div>{features}</div>
<h2>Operational metrics</h2><table>{ops_rows}</table>{_img(images["operations"], "operations")}
<h2>Result statuses per window</h2>
<table><tr>{header}</tr>
{"".join(result_rows)}</table>
</body></html>
"""
