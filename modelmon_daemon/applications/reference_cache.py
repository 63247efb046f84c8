"""Values derived from an endpoint's reference (padded edges, reference probabilities,
bounds, PCA arrays), computed once per reference object instead of once per window.

An application actor keeps an endpoint's record, this very dict, across ticks until its
version changes (then a new dict comes). Entries are keyed by the object's identity and
hold the object itself, so an identity can never be reused for another reference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

REFERENCE_CACHE_SIZE = 32_768  # entries kept (several per endpoint), least recently used out


class IdentityCache:
    def __init__(self, size: int = REFERENCE_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, Hashable], tuple[Any, Any]] = OrderedDict()

    def get(self, source: Any, tag: Hashable, build: Callable[[], T]) -> T:
        """build(), derived from `source` (and `tag`: what of it), once per source object."""
        key = (id(source), tag)
        found = self._items.get(key)
        if found is not None and found[0] is source:
            self._items.move_to_end(key)
            value: T = found[1]
            return value
        value = build()
        self._items[key] = (source, value)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


REFERENCE_CACHE = IdentityCache()
