"""Hands places out and takes them back, so scaling never overlaps two replicas.

Places are handed out lowest first, which reproduces the static plan's
assignment (config order, then index order) at start and reuses the lowest
freed place after a scale-down.
"""

from __future__ import annotations

from collections.abc import Iterable

from topology import Place

from .errors import NoFreePlaceError


class PlaceAllocator:
    def __init__(self, places: Iterable[Place]) -> None:
        self._places = tuple(places)
        self._taken: dict[int, str] = {}  # index into _places -> holder

    @property
    def places(self) -> tuple[Place, ...]:
        return self._places

    def free_count(self) -> int:
        return len(self._places) - len(self._taken)

    def take(self, holder: str) -> Place:
        for i, place in enumerate(self._places):
            if i not in self._taken:
                self._taken[i] = holder
                return place
        raise NoFreePlaceError(
            f"no free place for {holder}: all {len(self._places)} places are taken"
        )

    def claim(self, place: Place, holder: str) -> bool:
        """Mark ``place`` taken by ``holder`` (a kept replica after a reload)."""
        for i, known in enumerate(self._places):
            if known == place and i not in self._taken:
                self._taken[i] = holder
                return True
        return False

    def give(self, place: Place) -> None:
        for i, known in enumerate(self._places):
            if known == place:
                self._taken.pop(i, None)
                return

    def holder(self, place: Place) -> str | None:
        for i, known in enumerate(self._places):
            if known == place:
                return self._taken.get(i)
        return None
