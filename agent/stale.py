"""Which guests changed since a cache last looked: what the agent's caches read again."""

from __future__ import annotations

import threading


class StaleNames:
    """Names said to have changed (or "everything") since the last `take`; any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._everything = True  # nothing read yet

    def mark(self, name: str | None = None) -> None:
        """`name` changed (with None: anything may have)."""
        with self._lock:
            if name is None:
                self._everything = True
            else:
                self._names.add(name)

    def take(self) -> tuple[bool, set[str]]:
        """(everything?, the names) marked since the last take; both cleared."""
        with self._lock:
            taken = self._everything, self._names
            self._everything, self._names = False, set()
        return taken
