"""Hands places out and takes them back, so scaling never overlaps two replicas.

Places are handed out lowest first, which reproduces the static plan's
assignment (config order, then index order) at start and reuses the lowest
freed place after a scale-down. A heap of free indexes keeps each step
O(log n), so planning 1,024 replicas stays linear.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from topology import Place

from .errors import NoFreePlaceError


class PlaceAllocator:
    def __init__(self, places: Iterable[Place]) -> None:
        self._places = tuple(places)
        self._index = {place: i for i, place in enumerate(self._places)}
        self._free = list(range(len(self._places)))  # a heap, already ordered
        self._taken: dict[int, str] = {}  # index into _places -> holder

    @property
    def places(self) -> tuple[Place, ...]:
        return self._places

    def free_count(self) -> int:
        return len(self._places) - len(self._taken)

    def take(self, holder: str) -> Place:
        while self._free:
            i = heapq.heappop(self._free)
            if i not in self._taken:
                self._taken[i] = holder
                return self._places[i]
        raise NoFreePlaceError(
            f"no free place for {holder}: all {len(self._places)} places are taken"
        )

    def claim(self, place: Place, holder: str) -> bool:
        """Mark ``place`` taken by ``holder`` (a kept replica after a reload)."""
        i = self._index.get(place)
        if i is None or i in self._taken:
            return False
        self._taken[i] = holder  # its stale heap entry is skipped by take()
        return True

    def give(self, place: Place) -> None:
        i = self._index.get(place)
        if i is not None and self._taken.pop(i, None) is not None:
            heapq.heappush(self._free, i)

    def holder(self, place: Place) -> str | None:
        i = self._index.get(place)
        return None if i is None else self._taken.get(i)
