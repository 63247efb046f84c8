"""Endpoint uids and result names, computed exactly as MLRun does."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
NOT_AVAILABLE = "N/A"


@dataclass(frozen=True)
class FunctionUri:
    project: str
    function: str
    tag: str | None

    @classmethod
    def parse(cls, text: str) -> FunctionUri:
        """`project/function[:tag]`, optionally with a `scheme://` prefix or `@hash`."""
        rest = text.split("://", 1)[-1]
        if "/" not in rest:
            raise ValueError(f"function_uri {text!r} is not of the form project/function[:tag]")
        project, function = rest.split("/", 1)
        function = function.split("@", 1)[0]
        tag: str | None = None
        if ":" in function:
            function, tag = function.split(":", 1)
        if not project or not function:
            raise ValueError(f"function_uri {text!r} is not of the form project/function[:tag]")
        return cls(project, function, tag or None)


def endpoint_uid(
    project: str, function: str, tag: str | None, model: str, version: str | None
) -> str:
    """sha1("{project}_{function}_{tag}_{model}_{version}"), missing parts N/A."""
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


def check_result_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"result name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
    return name
