"""Endpoint uids and result names, computed exactly as MLRun does."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

NAME_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
NOT_AVAILABLE = "N/A"


@dataclass(frozen=True)
class FunctionUri:
    project: str
    function: str
    tag: str | None
    hash_key: str | None = None

    @property
    def ref(self) -> str | None:
        """What MLRun's endpoint uid takes of the function: its tag, else its hash."""
        return self.tag or self.hash_key

    @classmethod
    def parse(cls, text: str) -> FunctionUri:
        """`project/function[:tag][@hash]` (optionally after a `scheme://`), split as
        MLRun's parse_versioned_object_uri does: everything after the first ':' is the
        tag, and a hash is read only from a function name without a tag."""
        rest = text.split("://", 1)[-1]
        if "/" not in rest:
            raise ValueError(f"function_uri {text!r} is not of the form project/function[:tag]")
        project, function = rest.split("/", 1)
        tag = hash_key = ""
        if ":" in function:
            function, tag = function.split(":", 1)
        if "@" in function:
            function, hash_key = function.split("@", 1)
        if not project or not function:
            raise ValueError(f"function_uri {text!r} is not of the form project/function[:tag]")
        return cls(project, function, tag or None, hash_key or None)


def endpoint_uid(
    project: str, function: str, tag: str | None, model: str, version: str | None
) -> str:
    """sha1("{project}_{function}_{tag}_{model}_{version}"), missing parts N/A; `tag`
    is the function's tag, or its hash when it has none (FunctionUri.ref)."""
    key = "_".join(
        [
            project or NOT_AVAILABLE,
            function or NOT_AVAILABLE,
            tag or NOT_AVAILABLE,
            model or NOT_AVAILABLE,
            version or "latest",
        ]
    )
    return hashlib.sha1(key.encode()).hexdigest()


def split_versioned_model(model: str, version: str | None) -> tuple[str, str | None]:
    """MLRun sends `model` as `name` or `name:version`; an explicit version wins."""
    if ":" in model:
        name, embedded = model.split(":", 1)
        return name, version or embedded or None
    return model, version


_GOOD_NAMES: set[str] = set()  # names already checked (a few per application)


def check_result_name(name: str) -> str:
    if name in _GOOD_NAMES:
        return name
    if not NAME_PATTERN.match(name):
        raise ValueError(f"result name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
    if len(_GOOD_NAMES) < 4096:
        _GOOD_NAMES.add(name)
    return name


MAX_MODEL_LABELS = 64


def model_labels(value: Any) -> dict[str, str] | None:
    """MLRun's model labels (`{"framework": "sklearn", ...}`, sent with every serving
    event and kept on the endpoint) as strings; None unless `value` is an object of at
    most 64 names (1-128 characters) to strings, numbers or booleans (up to 256
    characters)."""
    if not isinstance(value, dict) or len(value) > MAX_MODEL_LABELS:
        return None
    labels: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            return None
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, str | int | float):
            text = str(item)
        else:
            return None
        if len(text) > 256:
            return None
        labels[name] = text
    return labels
