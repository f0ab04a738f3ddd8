"""Items held until a due time, one per key: a later item for the key replaces the held one."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Debounce(Generic[Item]):
    """What arrives for one key within its window is coalesced; the loop takes it when due."""

    def __init__(self) -> None:
        self._held: dict[Hashable, tuple[float, Item]] = {}

    def held(self, key: Hashable) -> tuple[float, Item] | None:
        """(due time, item) held for `key`, if any."""
        return self._held.get(key)

    def hold(self, key: Hashable, due: float, item: Item) -> None:
        self._held[key] = (due, item)

    def deadlines(self) -> list[float]:
        return [due for due, _ in self._held.values()]

    def due(self, now: float) -> Iterator[Item]:
        """The items whose time has come, each let go as it is handed on."""
        for key, (due, item) in list(self._held.items()):
            if due <= now:
                del self._held[key]
                yield item
