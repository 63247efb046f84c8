"""Values derived from an endpoint's reference (padded edges, reference probabilities,
bounds, PCA arrays), computed once per reference object instead of once per window.

An application actor keeps an endpoint's record, this very dict, across ticks until its
version changes (then a new dict comes). Entries are keyed by the object's identity and
hold the object itself, so an identity can never be reused for another reference. The
actor discards a record's entries when it lets the record go (a new version, or evicted
from its spec cache), so this cache follows the actor's: its own limit is only a
backstop, large enough that a fleet the spec cache holds never cycles through it (a
least-recently-used cache smaller than a tick's working set would rebuild every entry
every tick).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

REFERENCE_CACHE_SIZE = 262_144  # entries kept (a few per endpoint), least recently used out


class IdentityCache:
    def __init__(self, size: int = REFERENCE_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, Hashable], tuple[Any, Any]] = OrderedDict()
        self._tags: dict[int, set[Hashable]] = {}  # id(source) -> its entries' tags

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
        self._tags.setdefault(key[0], set()).add(tag)
        while len(self._items) > self.size:
            (ident, old_tag), _ = self._items.popitem(last=False)
            self._forget_tag(ident, old_tag)
        return value

    def discard(self, *sources: Any) -> int:
        """Drop every entry derived from these objects (a record let go); returns how many."""
        dropped = 0
        for source in sources:
            for tag in self._tags.pop(id(source), set()):
                found = self._items.get((id(source), tag))
                if found is not None and found[0] is source:
                    del self._items[(id(source), tag)]
                    dropped += 1
        return dropped

    def _forget_tag(self, ident: int, tag: Hashable) -> None:
        tags = self._tags.get(ident)
        if tags is not None:
            tags.discard(tag)
            if not tags:
                del self._tags[ident]

    def __len__(self) -> int:
        return len(self._items)


REFERENCE_CACHE = IdentityCache()
