"""Runs inside a virtual environment with NannyML (never a dependency of the daemon):
`python nannyml_cbpe.py data.parquet reference.parquet chunk_size` prints, as JSON, NannyML
CBPE's estimated accuracy per chunk of data.parquet and the seconds it took."""

from __future__ import annotations

import json
import sys
import time

import nannyml as nml
import pandas as pd


def main() -> None:
    analysis = pd.read_parquet(sys.argv[1])
    reference = pd.read_parquet(sys.argv[2])
    chunk_size = int(sys.argv[3])
    started = time.perf_counter()
    estimator = nml.CBPE(
        y_pred_proba="score",
        y_pred="prediction",
        y_true="label",
        problem_type="classification_binary",
        metrics=["accuracy"],
        chunk_size=chunk_size,
    )
    estimator.fit(reference)
    fitted = time.perf_counter()
    results = estimator.estimate(analysis.drop(columns=["label"]))
    done = time.perf_counter()
    frame = results.filter(period="analysis").to_df()
    values = frame[("accuracy", "value")].tolist()
    print(
        json.dumps(
            {"accuracy": values, "fit_seconds": fitted - started, "estimate_seconds": done - fitted}
        )
    )


if __name__ == "__main__":
    main()
