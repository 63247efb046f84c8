"""Batch evaluate gives the same numbers as the live daemon on the same data."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e
P = 30.0


def test_evaluate_matches_the_live_path(daemon, tmp_path):
    rng = np.random.default_rng(21)
    reference = pd.DataFrame(rng.normal(size=(1500, 3)), columns=["u", "v", "w"])
    ref_path = tmp_path / "ref.parquet"
    reference.to_parquet(ref_path)
    first = (math.floor(time.time() / P) - 4) * P
    ts = first + np.sort(rng.uniform(0, 3 * P - 0.01, size=450))
    data = pd.DataFrame(rng.normal(size=(450, 3)), columns=["u", "v", "w"])
    data.loc[ts >= first + 2 * P, ["u", "v", "w"]] += 3.0  # the last window drifts
    data["ts"] = pd.to_datetime(ts, unit="s", utc=True)
    data_path = tmp_path / "data.parquet"
    data.to_parquet(data_path)

    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "eval-live",
            "project": "p",
            "name": "eval",
            "feature_names": ["u", "v", "w"],
            "reference": {"path": str(ref_path)},
        },
    )
    assert status == 201
    status, _ = daemon.post(
        "/v1/endpoints/eval-live/events",
        {
            "inputs": data[["u", "v", "w"]].to_numpy().tolist(),
            "timestamps": ts.tolist(),
        },
    )
    assert status == 202

    def live():
        _, body = daemon.get("/v1/endpoints/eval-live/results?name=general_drift")
        return body["results"] if len(body["results"]) == 3 else None

    live_results = daemon.wait_for(live)
    out = cli(
        "evaluate",
        str(data_path),
        "--reference",
        str(ref_path),
        "--base-period",
        "30s",
        "--time-column",
        "ts",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    offline = [r for r in json.loads(out.stdout) if r["name"] == "general_drift"]
    assert [r["start"] for r in offline] == [r["start"] for r in live_results]
    for a, b in zip(offline, live_results, strict=True):
        assert a["value"] == pytest.approx(b["value"], abs=1e-12)
        assert a["status"] == b["status"] and a["sample_size"] == b["sample_size"]
    assert offline[-1]["status"] == 2

    written = cli(
        "evaluate",
        str(data_path),
        "--reference",
        str(ref_path),
        "--base-period",
        "30s",
        "--time-column",
        "ts",
        "--data-dir",
        str(tmp_path / "out"),
        "--endpoint",
        "offline",
    )
    assert written.returncode == 0, written.stderr
    # no progress bar into a pipe (tqdm draws only on a terminal)
    assert written.stderr == "" and "detected in 1 of 3 windows" in written.stdout
    frame = pd.read_parquet(
        tmp_path / "out" / "results", filters=[("endpoint_id", "==", "offline")]
    )
    gd = frame[frame["name"] == "general_drift"].sort_values("start")
    assert list(gd["value"]) == pytest.approx([r["value"] for r in live_results], abs=1e-12)


def test_evaluate_names_the_bad_file(tmp_path):
    bad = tmp_path / "ref.csv"
    bad.write_text("a,b\n1,2\n")
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    out = cli("evaluate", str(data), "--reference", str(bad))
    assert out.returncode == 2 and f"{data}: no column 'b'" in out.stderr
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n\n3,4,5\n")
    out = cli("evaluate", str(ragged), "--reference", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"modelmon-daemon: {ragged}:4: 3 values where the header has 2")
    word = tmp_path / "word.csv"
    word.write_text("a,b\n1,2\nNA,3\nabc,4\n")
    out = cli("evaluate", str(word), "--reference", str(bad))
    assert out.stderr.strip() == f"modelmon-daemon: {word}:4: column 'a': not a number"
