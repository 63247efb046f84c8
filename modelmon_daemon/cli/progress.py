"""Progress of long CLI work with tqdm, on stderr, only when stderr is a terminal (a log
file or a pipe gets no bars)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any


def terminal_progress(
    unit: str, stream: IO[str] | None = None
) -> Callable[[int, int], None] | None:
    """A `progress(done, total)` callback drawing a tqdm bar, or None when `stream`
    (default stderr) is not a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return None
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit=unit, file=out, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
