"""Evidently's data drift preset on the same data as bench/drift.py (run it with the
Python of a separate virtual environment that has Evidently; never a dependency here).
Prints the best wall time in ms of Report([DataDriftPreset()]).run(current, reference)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

ROWS, FEATURES = int(sys.argv[1]), int(sys.argv[2])
REPEAT = int(sys.argv[3]) if len(sys.argv) > 3 else 2
CATEGORICAL = int(sys.argv[4]) if len(sys.argv) > 4 else 0

rng = np.random.default_rng(0)
names = [f"f{j}" for j in range(FEATURES)]
reference = pd.DataFrame(rng.normal(size=(ROWS, FEATURES)), columns=names)
current = pd.DataFrame(rng.normal(0.1, 1.1, size=(ROWS, FEATURES)), columns=names)
levels = np.array([f"c{k}" for k in range(10)], dtype=object)
for j in range(CATEGORICAL):
    reference[f"g{j}"] = levels[rng.integers(0, 10, ROWS)]
    current[f"g{j}"] = levels[rng.integers(0, 11, ROWS) % 10]
best = float("inf")
for _ in range(REPEAT):
    t0 = time.perf_counter()
    Report([DataDriftPreset()]).run(current, reference)
    best = min(best, (time.perf_counter() - t0) * 1000)
print(f"{best:.1f}")
