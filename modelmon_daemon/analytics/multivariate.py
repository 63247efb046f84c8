"""Multivariate drift by PCA reconstruction error (pure).

Fitted on the reference: standardize, keep the principal components that explain 95% of
the variance (at most features - 1), and record the mean and spread of the per-row
reconstruction error. A window whose rows break the reference's correlations
reconstructs worse; its mean error is compared with the reference's own variation as
z = (mean - mu) / (sigma / sqrt(n)), which stays meaningful at any window size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fit_pca(matrix: np.ndarray, variance: float = 0.95) -> dict[str, Any] | None:
    rows = matrix[~np.isnan(matrix).any(axis=1)]
    n, f = rows.shape
    if f < 2 or n < 10:
        return None
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0, ddof=1)
    scale = np.where(scale > 0, scale, 1.0)
    z = (rows - mean) / scale
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    k = int(min(np.searchsorted(share, variance) + 1, f - 1))
    components = vt[:k]
    errors = _errors(z, components)
    return {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "components": components.tolist(),
        "explained_variance": float(share[k - 1]),
        "row_error_mean": float(errors.mean()),
        "row_error_std": float(errors.std(ddof=1)),
    }


def _errors(z: np.ndarray, components: np.ndarray) -> np.ndarray:
    projected = (z @ components.T) @ components
    return np.asarray(np.sum((z - projected) ** 2, axis=1))


ModelArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def model_arrays(model: dict[str, Any]) -> ModelArrays:
    """(mean, scale, components) of a fitted model as arrays (stored as lists)."""
    return (
        np.asarray(model["mean"], dtype=np.float64),
        np.asarray(model["scale"], dtype=np.float64),
        np.asarray(model["components"], dtype=np.float64),
    )


def reconstruction_errors(
    matrix: np.ndarray, model: dict[str, Any], arrays: ModelArrays | None = None
) -> np.ndarray:
    """Per-row error; a missing value is taken as the reference mean (0 once standardized).
    `arrays`: model_arrays(model), if the caller keeps them."""
    mean, scale, components = arrays or model_arrays(model)
    z = (matrix - mean) / scale
    z = np.where(np.isnan(z), 0.0, z)
    return _errors(z, components)


def window_z(errors: np.ndarray, model: dict[str, Any]) -> float:
    n = errors.shape[0]
    sigma = model["row_error_std"] / math.sqrt(n) if n else math.inf
    return float((errors.mean() - model["row_error_mean"]) / sigma) if sigma > 0 else 0.0
