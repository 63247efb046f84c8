"""Endpoint registration: the request body -> an EndpointSpec with padded reference stats."""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelmon_daemon.analytics.categorical import category_counts
from modelmon_daemon.analytics.estimation import POSITIVE_CLASS, fit_estimator
from modelmon_daemon.analytics.multivariate import fit_pca
from modelmon_daemon.analytics.performance import classification_keys
from modelmon_daemon.analytics.stats import STAT_KEYS, pad_feature_stats, reference_feature_stats
from modelmon_daemon.applications.prediction_drift import prediction_stats
from modelmon_daemon.core.errors import ApiError, Forbidden
from modelmon_daemon.core.identity import (
    UID_PATTERN,
    FunctionUri,
    endpoint_uid,
    model_labels,
    split_versioned_model,
)
from modelmon_daemon.core.records import EndpointSpec
from modelmon_daemon.core.uris import is_uri
from modelmon_daemon.storage import remote_files
from modelmon_daemon.storage.reference import (
    reference_columns,
    reference_file_column,
    reference_predictions,
    reference_values,
)


def _bad(field: str, message: str) -> ApiError:
    return ApiError(f"{field}: {message}", {"field": field}, code="invalid_endpoint")


def _string_list(body: dict[str, Any], key: str, required: bool) -> list[str]:
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(key, "missing")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(key, "must be a list of non-empty strings")
    if len(set(value)) != len(value):
        raise _bad(key, "names must be unique")
    if required and not value:
        raise _bad(key, "must not be empty")
    return list(value)


def _check_feature_stats(
    stats: Any,
    feature_names: list[str],
    labels: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any]:
    """MLRun-format stats of the features. MLRun's model artifacts also carry the label
    column's stats: those (any of `labels`) are ignored, as MLRun does."""
    if not isinstance(stats, dict):
        raise _bad("feature_stats", "must be an object of feature -> stats (MLRun format)")
    stats = {name: feature for name, feature in stats.items() if name not in labels}
    for name, feature in stats.items():
        field = f"feature_stats.{name}"
        if name not in feature_names:
            raise _bad(field, "not one of feature_names (nor label_names / label_column)")
        if not isinstance(feature, dict):
            raise _bad(field, "must be an object")
        hist = feature.get("hist")
        if hist is None:  # MLRun's stats of a text or time column: strings, no histogram
            continue
        for key in STAT_KEYS:  # a numeric feature's, read as numbers every window
            v = feature.get(key)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            ):
                raise _bad(f"{field}.{key}", f"must be a finite number or null, got {v!r:.40}")
        if not (
            isinstance(hist, list) and len(hist) == 2 and all(isinstance(h, list) for h in hist)
        ):
            raise _bad(f"{field}.hist", "must be [counts, edges]")
        counts, edges = hist
        if len(edges) != len(counts) + 1 or len(counts) < 1:
            raise _bad(
                f"{field}.hist",
                f"{len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}",
            )
        for v in counts:
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or v < 0
                or not math.isfinite(v)
            ):
                raise _bad(f"{field}.hist", "counts must be non-negative numbers")
        for v in edges:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise _bad(f"{field}.hist", "edges must be finite numbers")
        if any(b < a for a, b in itertools.pairwise(edges)):
            raise _bad(f"{field}.hist", "edges must be increasing")
        if sum(counts) <= 0:
            raise _bad(f"{field}.hist", "counts are all zero")
        if not math.isfinite(sum(counts)):
            raise _bad(f"{field}.hist", "counts must add up to a finite number")
    return pad_feature_stats(stats)


ReferenceSummary = tuple[dict[str, Any], set[str], dict[str, Any], dict[str, Any]]
_FILE_SUMMARIES: OrderedDict[tuple[Any, ...], ReferenceSummary] = OrderedDict()
FILE_SUMMARY_CACHE = 16  # reference files whose stats are kept (a fleet shares a few)


def _reference_summary(
    reference: Any, feature_names: list[str], declared: set[str]
) -> ReferenceSummary:
    """(feature stats, categorical features found, PCA model, prediction stats) of a
    reference. A file's summary is computed once per (file version, features): a fleet
    registered against one reference file reads it once, not once per endpoint."""
    key = None
    if isinstance(reference, dict) and isinstance(reference.get("path"), str):
        try:
            info = os.stat(reference["path"])
        except OSError:
            info = None  # reading it reports the error
        if info is not None:
            key = (
                reference["path"],
                info.st_mtime_ns,
                info.st_size,
                tuple(feature_names),
                tuple(sorted(declared)),
                str(reference.get("prediction_column")),
            )
            if key in _FILE_SUMMARIES:
                _FILE_SUMMARIES.move_to_end(key)
                return copy.deepcopy(_FILE_SUMMARIES[key])
    summary = _summarize(reference, feature_names, declared)
    if key is not None:
        _FILE_SUMMARIES[key] = copy.deepcopy(summary)
        while len(_FILE_SUMMARIES) > FILE_SUMMARY_CACHE:
            _FILE_SUMMARIES.popitem(last=False)
    return summary


def _summarize(reference: Any, feature_names: list[str], declared: set[str]) -> ReferenceSummary:
    matrix, values, found = reference_columns(reference, feature_names, declared)
    categorical = set(declared) | found
    numeric = [j for j, n in enumerate(feature_names) if n not in categorical]
    try:
        computed = reference_feature_stats(matrix[:, numeric], [feature_names[j] for j in numeric])
    except ValueError as exc:
        raise _bad("reference", str(exc)) from None
    for name in categorical:
        counts = category_counts(values.get(name, []))
        computed[name] = {"kind": "categorical", "count": sum(counts.values()), "counts": counts}
    model = fit_pca(matrix[:, numeric]) if numeric else None
    multivariate = {**model, "columns": numeric} if model else {}
    prediction: dict[str, Any] = {}
    predictions = reference_predictions(reference)
    if predictions is not None:
        try:
            prediction = prediction_stats(predictions)
        except ValueError as exc:
            raise _bad("reference.predictions", str(exc)) from None
    return computed, found, multivariate, prediction


def _score_outputs(body: dict[str, Any], label_names: list[str]) -> dict[str, str]:
    """class key -> output name: `score_output` (a binary model's positive-class score,
    class 1) or `score_outputs` (one output per class)."""
    single, many = body.get("score_output"), body.get("score_outputs")
    if single is not None and many is not None:
        raise _bad("score_outputs", "give score_output or score_outputs, not both")
    if single is not None:
        if not isinstance(single, str) or not single:
            raise _bad("score_output", "must be the name of an output")
        outputs = {POSITIVE_CLASS: single}
        field = "score_output"
    elif many is not None:
        if not isinstance(many, dict) or len(many) < 2:
            raise _bad("score_outputs", "must map two or more classes to output names")
        outputs = {}
        for cls, name in many.items():
            if not isinstance(name, str) or not name:
                raise _bad(f"score_outputs.{cls}", "must be the name of an output")
            outputs[classification_keys([cls])[0]] = name
        if len(outputs) != len(many):
            raise _bad("score_outputs", "two entries name the same class")
        field = "score_outputs"
    else:
        return {}
    for name in outputs.values():
        if name not in label_names:
            raise _bad(field, f"{name!r} is not one of label_names {label_names}")
    if len(set(outputs.values())) != len(outputs):
        raise _bad(field, "each class needs its own output")
    if not [n for n in label_names if n not in outputs.values()]:
        raise _bad("label_names", "needs an output for the prediction besides the scores")
    return outputs


def _fit_estimator(
    reference: Any,
    score_outputs: dict[str, str],
    label_names: list[str],
    max_calibration_error: float,
) -> dict[str, Any]:
    """The performance estimator from the labelled reference: `scores`, `labels` and
    `predictions` beside `rows`, or `score_column(s)`, `label_column` and
    `prediction_column` of its file."""
    if not isinstance(reference, dict):
        raise _bad("reference", "score_output needs a labelled reference (scores, labels)")
    classes = list(score_outputs)
    labels = reference_values(reference, "labels", "label_column")
    if labels is None:
        raise _bad("reference.labels", "needed to calibrate the scores (or label_column)")
    predictions = reference_values(reference, "predictions", "prediction_column")
    if predictions is None:
        raise _bad("reference.predictions", "needed with the scores (or prediction_column)")
    scores = _reference_scores(reference, classes)
    n = len(labels)
    for key, values in (("predictions", predictions), ("scores", scores)):
        if len(values) != n:
            raise _bad(f"reference.{key}", f"has {len(values)} entries for {n} labels")
    if any(v is None for v in labels):
        raise _bad("reference.labels", "must not contain nulls")
    try:
        estimator = fit_estimator(
            classes,
            np.asarray(scores, dtype=np.float64),
            classification_keys(labels),
            classification_keys(predictions),
            max_calibration_error,
        )
    except (TypeError, ValueError) as exc:
        raise _bad("reference.scores", str(exc)) from None
    prediction_output = next(n for n in label_names if n not in score_outputs.values())
    return {**estimator, "prediction_output": prediction_output}


def _reference_scores(reference: dict[str, Any], classes: list[str]) -> list[Any]:
    if "scores" in reference or "score_column" in reference:
        scores = reference_values(reference, "scores", "score_column")
        if scores is None:
            raise _bad("reference.score_column", "needs reference.path")
    elif "score_columns" in reference:
        columns = reference["score_columns"]
        if not isinstance(columns, dict) or set(map(str, columns)) != set(classes):
            raise _bad("reference.score_columns", f"must map each class {classes} to a column")
        if "path" not in reference:
            raise _bad("reference.score_columns", "needs reference.path")
        by_class = {str(k): v for k, v in columns.items()}
        per_class = [
            reference_file_column(
                str(reference["path"]), by_class[c], f"reference.score_columns.{c}"
            )
            for c in classes
        ]
        scores = [list(row) for row in zip(*per_class, strict=True)]
    else:
        raise _bad("reference.scores", "needed to calibrate the scores (or score_column(s))")
    if len(classes) > 1 and any(not isinstance(v, list) for v in scores):
        raise _bad("reference.scores", f"each entry must be a list of {len(classes)} scores")
    for i, value in enumerate(scores):
        width = 1 if len(classes) == 1 else len(classes)
        row = value if isinstance(value, list) else [value]
        if len(row) != width or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in row
        ):
            what = "a number" if width == 1 else f"a list of {width} numbers"
            raise _bad(f"reference.scores[{i}]", f"must be {what}")
    return scores


def allowed_reference_path(value: Any, reference_dirs: Sequence[Path]) -> str:
    """The resolved path if it lies under one of `reference_dirs`, else 403. Checked before
    the file is touched, so an answer never tells whether a path outside exists."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _bad("reference.path", "must be a file path")
    path = Path(value).expanduser()
    if not path.is_absolute() and not reference_dirs:
        resolved = path  # no local folder is configured (only object-store ones): refused
    else:
        resolved = path.resolve() if path.is_absolute() else (reference_dirs[0] / path).resolve()
    if not any(resolved.is_relative_to(d) for d in reference_dirs):
        raise Forbidden(
            "reference.path must lie under daemon.reference_dirs",
            {"field": "reference.path"},
        )
    return str(resolved)


# What a re-registration keeps of the stored record when its body does not name it: an
# update (reference stats for an endpoint MLRun's serving registered, say) changes what it
# says and nothing else. Stats and the performance estimator go with what made them.
_KEPT_WHEN_ABSENT = (
    "model",
    "function_uri",
    "label_names",
    "model_type",
    "reference_performance",
    "calibrate",
    "labels",
)


def _with_previous(body: dict[str, Any], previous: EndpointSpec) -> dict[str, Any]:
    """`body` with the stored record's values for the keys it leaves out."""
    kept = {k: getattr(previous, k) for k in _KEPT_WHEN_ABSENT if k not in body}
    model = body.get("model", previous.model)
    if "version" not in body and not (isinstance(model, str) and ":" in model):
        kept["version"] = previous.version
    if "reference" not in body and "categorical_features" not in body:
        kept["categorical_features"] = previous.categorical_features
    same_features = body.get("feature_names") == previous.feature_names  # else 409
    if "reference" not in body and "feature_stats" not in body and same_features:
        # the stored stats are padded already (padding twice changes nothing)
        kept["feature_stats"] = previous.feature_stats
    return {**kept, **body}


def _keep_fitted(spec: EndpointSpec, body: dict[str, Any], previous: EndpointSpec) -> None:
    """What the stored record fitted on its reference, when the update gives none."""
    if "reference" not in body:
        if "feature_stats" not in body:
            spec.multivariate = previous.multivariate
            spec.prediction_stats = previous.prediction_stats
        if "score_output" not in body and "score_outputs" not in body:
            spec.score_outputs = previous.score_outputs
            spec.performance_estimator = previous.performance_estimator
    spec.model_class = previous.model_class


def build_spec(
    body: Any,
    now: float,
    reference_dirs: Sequence[Path] | None = None,
    max_calibration_error: float = 0.1,
    stored: Callable[[str], dict[str, Any] | None] | None = None,
    reference_uris: Sequence[str] = (),
) -> EndpointSpec:
    """`reference_dirs`: where a reference.path may point (None: anywhere, for local use);
    `max_calibration_error`: performance.max_calibration_error; `stored`: uid -> the
    stored record, whose values a re-registration keeps for the keys it leaves out;
    `reference_uris`: the object-store folders a reference.path URI may point into."""
    if not isinstance(body, dict):
        raise ApiError("body must be a JSON object", {"field": "body"}, code="invalid_endpoint")
    uid = _uid(body)
    record = stored(uid) if stored is not None else None
    previous = EndpointSpec.from_dict(record) if record is not None else None
    given = body
    if previous is not None:
        given = {k: v for k, v in body.items() if v is not None}  # null: left out
        body = _with_previous(given, previous)
    spec = _build(body, uid, now, reference_dirs, max_calibration_error, reference_uris)
    if previous is not None:
        _keep_fitted(spec, given, previous)
    return spec


def _identity(body: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """(model, function_uri, model name, version) of a registration body, checked."""
    for key in ("project", "name"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _bad(key, "missing or not a string")
    model = body.get("model") or body["name"]
    if not isinstance(model, str):
        raise _bad("model", "must be a string")
    function_uri = body.get("function_uri") or ""
    if not isinstance(function_uri, str):
        raise _bad("function_uri", "must be a string")
    given_version = body.get("version")
    if given_version is not None and not isinstance(given_version, str | int | float):
        raise _bad("version", "must be a string")
    name, version = split_versioned_model(
        model, str(given_version) if given_version not in (None, "") else None
    )
    return model, function_uri, name, version


def _uid(body: dict[str, Any]) -> str:
    """The endpoint's uid: given, or MLRun's from function_uri (or project and name),
    model and version."""
    _, function_uri, name, version = _identity(body)
    uid = body.get("uid")
    if uid is not None:
        if not isinstance(uid, str) or not UID_PATTERN.match(uid):
            raise _bad("uid", "must be 1-128 letters, digits, '_', '.', '-'")
        return uid
    if function_uri:
        try:
            fn = FunctionUri.parse(function_uri)
        except ValueError as exc:
            raise _bad("function_uri", str(exc)) from None
        return endpoint_uid(fn.project, fn.function, fn.ref, name, version)
    return endpoint_uid(body["project"], body["name"], None, name, version)


def _build(
    body: dict[str, Any],
    uid: str,
    now: float,
    reference_dirs: Sequence[Path] | None,
    max_calibration_error: float,
    reference_uris: Sequence[str] = (),
) -> EndpointSpec:
    feature_names = _string_list(body, "feature_names", required=True)
    label_names = _string_list(body, "label_names", required=False) or ["output"]
    model, function_uri, _, version = _identity(body)
    stats: dict[str, Any] = {}
    multivariate: dict[str, Any] = {}
    prediction: dict[str, Any] = {}
    if body.get("feature_stats") is not None:
        label_column = body.get("label_column")
        if label_column is not None and not isinstance(label_column, str):
            raise _bad("label_column", "must be a string")
        labels = set(label_names) | ({label_column} if label_column else set())
        stats = _check_feature_stats(
            body["feature_stats"], feature_names, labels - set(feature_names)
        )
    declared = set(_string_list(body, "categorical_features", required=False))
    strangers = sorted(declared - set(feature_names))
    if strangers:
        raise _bad("categorical_features", f"{strangers[0]!r} is not one of feature_names")
    categorical = set(declared)
    reference = body.get("reference")
    if isinstance(reference, dict) and "path" in reference and reference_dirs is not None:
        value = reference["path"]
        if isinstance(value, str) and is_uri(value):  # on an object store: a local copy
            path = remote_files.local_copy(remote_files.find(value, reference_uris))
        else:
            path = allowed_reference_path(value, reference_dirs)
        body = {**body, "reference": {**reference, "path": path}}
    if body.get("reference") is not None:
        computed, found, multivariate, prediction = _reference_summary(
            body["reference"], feature_names, declared
        )
        categorical |= found
        stats = {**computed, **stats}
    model_type = body.get("model_type") or ""
    if model_type not in ("", "classification", "regression"):
        raise _bad("model_type", "classification or regression")
    reference_performance = body.get("reference_performance") or {}
    if not isinstance(reference_performance, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool)
        for v in reference_performance.values()
    ):
        raise _bad("reference_performance", "an object of metric -> number")
    known = {"accuracy", "precision", "recall", "f1", "mae", "rmse", "r2"}
    unknown = sorted(set(reference_performance) - known)
    if unknown:
        raise _bad(f"reference_performance.{unknown[0]}", f"one of {', '.join(sorted(known))}")
    calibrate = body.get("calibrate", False)
    if not isinstance(calibrate, bool):
        raise _bad("calibrate", "true or false")
    given_labels = body.get("labels")
    model_labels_given = {} if given_labels is None else model_labels(given_labels)
    if model_labels_given is None:
        raise _bad("labels", "an object of at most 64 names to strings (MLRun's model labels)")
    score_outputs = _score_outputs(body, label_names)
    estimator: dict[str, Any] = {}
    if score_outputs:
        if model_type == "regression":
            raise _bad("score_output", "performance estimation needs model_type classification")
        model_type = "classification"
        estimator = _fit_estimator(
            body.get("reference"), score_outputs, label_names, max_calibration_error
        )
    return EndpointSpec(
        score_outputs=score_outputs,
        performance_estimator=estimator,
        categorical_features=[n for n in feature_names if n in categorical],
        prediction_stats=prediction,
        multivariate=multivariate,
        calibrate=calibrate,
        labels=model_labels_given,
        model_type=model_type,
        reference_performance={k: float(v) for k, v in reference_performance.items()},
        uid=uid,
        project=body["project"],
        name=body["name"],
        model=model,
        function_uri=function_uri,
        version=version or "",
        feature_names=feature_names,
        label_names=label_names,
        feature_stats=stats,
        created=now,
    )
