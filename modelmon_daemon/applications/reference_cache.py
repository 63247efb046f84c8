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

REFERENCE_CACHE_SIZE = 131_072  # source objects kept (two per record at most), LRU out


class IdentityCache:
    def __init__(self, size: int = REFERENCE_CACHE_SIZE) -> None:
        self.size = size
        # id(source) -> (source, tag -> derived value): a source and what came of it
        # are kept, used and let go together
        self._sources: OrderedDict[int, tuple[Any, dict[Hashable, Any]]] = OrderedDict()

    def get(self, source: Any, tag: Hashable, build: Callable[[], T]) -> T:
        """build(), derived from `source` (and `tag`: what of it), once per source object."""
        found = self._sources.get(id(source))
        if found is None or found[0] is not source:
            found = self._sources[id(source)] = (source, {})
            while len(self._sources) > self.size:
                self._sources.popitem(last=False)
        self._sources.move_to_end(id(source))
        derived = found[1]
        if tag not in derived:
            derived[tag] = build()
        value: T = derived[tag]
        return value

    def discard(self, *sources: Any) -> int:
        """Drop every entry derived from these objects (a record let go); returns how many."""
        dropped = 0
        for source in sources:
            found = self._sources.get(id(source))
            if found is not None and found[0] is source:
                dropped += len(self._sources.pop(id(source))[1])
        return dropped

    def __len__(self) -> int:
        """Derived values held."""
        return sum(len(derived) for _, derived in self._sources.values())


REFERENCE_CACHE = IdentityCache()
