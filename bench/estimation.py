"""Performance estimation: estimated vs realized accuracy per window, against NannyML's CBPE
on the same chunks.

Two datasets: seeded synthetic data (a known logistic model whose scores are
overconfident, covariate shift towards the decision boundary over 20 windows of 1000 rows)
and a real one (US census employment, Massachusetts, as NannyML ships it: 68,785 reference
rows, 208,892 analysis rows in windows of 5000). Ours runs the application's per-window
function (calibration, the five estimates and their 95% bands); NannyML's CBPE (isotonic
calibration, batch) runs in its own virtual environment: point NANNYML_PYTHON at its python
(`python -m venv nm && nm/bin/pip install nannyml statsmodels`). Without it, only our side
is printed.

    .venv/bin/python bench/estimation.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from modelmon_daemon.analytics.estimation import fit_estimator
from modelmon_daemon.applications.performance_estimation import estimate_window, window_seed

HERE = Path(__file__).resolve().parent


def synthetic() -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Reference of 20,000 rows; 20 windows of 1000 drifting towards the boundary."""
    rng = np.random.default_rng(2026)

    def draw(x: np.ndarray) -> pd.DataFrame:
        logit = 2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.3
        truth = 1.0 / (1.0 + np.exp(-logit))
        score = 1.0 / (1.0 + np.exp(-1.6 * logit))  # overconfident model
        label = (rng.random(len(x)) < truth).astype(int)
        return pd.DataFrame(
            {"score": score, "prediction": (score >= 0.5).astype(int), "label": label}
        )

    reference = draw(rng.normal(0.0, 1.0, (20_000, 2)))
    boundary = np.array([-0.15, 0.0])
    windows = []
    for k in range(20):
        scale = 1.0 - 0.75 * k / 19
        windows.append(draw(boundary + scale * rng.normal(0.0, 1.0, (1000, 2))))
    return reference, pd.concat(windows, ignore_index=True), 1000


def census(nannyml_python: str) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """NannyML's bundled US census employment data (real), read from its package."""
    try:
        out = subprocess.run(
            [
                nannyml_python,
                "-c",
                "import nannyml, os; print(os.path.join(os.path.dirname(nannyml.__file__),"
                " 'datasets', 'data'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    data = Path(out.stdout.strip().splitlines()[-1])
    ref = pd.read_parquet(data / "employment_MA_reference.pq")
    ana = pd.read_parquet(data / "employment_MA_analysis.pq")
    target = pd.read_parquet(data / "employment_MA_analysis_target.pq")
    ana = ana.merge(target, on="id")

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "score": df["predicted_probability"].astype(float),
                "prediction": df["prediction"].astype(int),
                "label": df["employed"].astype(int),
            }
        )

    return frame(ref), frame(ana), 5000


def ours(reference: pd.DataFrame, analysis: pd.DataFrame, chunk: int) -> dict[str, list[float]]:
    estimator = fit_estimator(
        ["1"],
        reference["score"].to_numpy(),
        [str(v) for v in reference["label"]],
        [str(v) for v in reference["prediction"]],
        0.1,
    )
    estimator["prediction_output"] = "prediction"
    out: dict[str, list[float]] = {
        "estimate": [],
        "lower": [],
        "upper": [],
        "realized": [],
        "ms": [],
    }
    for k in range(len(analysis) // chunk):
        part = analysis.iloc[k * chunk : (k + 1) * chunk]
        outputs = [part["prediction"].to_numpy(dtype=float), part["score"].to_numpy()]
        started = time.perf_counter()
        found = estimate_window(
            estimator,
            {"1": "score"},
            "prediction",
            ["prediction", "score"],
            outputs,
            window_seed("bench", float(k)),
        )
        out["ms"].append((time.perf_counter() - started) * 1000)
        assert found is not None
        acc = found[0]["accuracy"]
        out["estimate"].append(acc.value)
        out["lower"].append(acc.lower)
        out["upper"].append(acc.upper)
        out["realized"].append(float(np.mean(part["prediction"] == part["label"])))
    out["reference_ece"] = [estimator["reference_ece"]]
    return out


def nannyml(
    python: str, reference: pd.DataFrame, analysis: pd.DataFrame, chunk: int
) -> dict[str, object] | None:
    n = (len(analysis) // chunk) * chunk  # full chunks only, as ours
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, ana_path = Path(tmp, "ref.parquet"), Path(tmp, "ana.parquet")
        reference.to_parquet(ref_path)
        analysis.iloc[:n].to_parquet(ana_path)
        run = subprocess.run(
            [python, str(HERE / "nannyml_cbpe.py"), str(ana_path), str(ref_path), str(chunk)],
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
        return None
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    python = os.environ.get("NANNYML_PYTHON", "")
    datasets = {"synthetic (logistic, shift to boundary)": synthetic()}
    real = census(python) if python else None
    if real is not None:
        datasets["US census employment MA (real)"] = real
    print(
        "| dataset | windows | realized accuracy (min-max) | our MAE | NannyML CBPE MAE | "
        "our band coverage | our ms/window | NannyML ms/window |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (reference, analysis, chunk) in datasets.items():
        mine = ours(reference, analysis, chunk)
        est, real_acc = np.array(mine["estimate"]), np.array(mine["realized"])
        mae = float(np.mean(np.abs(est - real_acc)))
        covered = np.mean(
            (np.array(mine["lower"]) <= real_acc) & (real_acc <= np.array(mine["upper"]))
        )
        theirs = nannyml(python, reference, analysis, chunk) if python else None
        their_mae, their_ms = "n/a", "n/a"
        if theirs is not None:
            values = np.array(theirs["accuracy"], dtype=float)
            their_mae = f"{np.mean(np.abs(values - real_acc)):.4f}"
            seconds = float(theirs["estimate_seconds"])  # type: ignore[arg-type]
            their_ms = f"{seconds * 1000 / len(values):.1f}"
            if name.startswith("synthetic"):
                print("\nwindow, realized, ours [lower, upper], NannyML", file=sys.stderr)
                for k, (r, e, v) in enumerate(zip(real_acc, est, values, strict=True)):
                    lo, hi = mine["lower"][k], mine["upper"][k]
                    print(f"{k:2d} {r:.4f} {e:.4f} [{lo:.4f}, {hi:.4f}] {v:.4f}", file=sys.stderr)
        print(
            f"| {name} | {len(est)} x {chunk} | {real_acc.min():.3f}-{real_acc.max():.3f} | "
            f"{mae:.4f} | {their_mae} | {covered:.0%} | {np.median(mine['ms']):.1f} | {their_ms} |"
        )


if __name__ == "__main__":
    main()
