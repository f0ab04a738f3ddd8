"""A bounded pool of worker threads that runs each guest's actions in order.

A guest's actions run one at a time, in the order they came; different guests'
actions run side by side, on at most `THREADS` threads (made when needed, ended
after `IDLE_EXIT` s without work), however many guests the host has. Guests with
work take turns, one action each, so a guest with a long queue does not hold up
the others. An unplug waiting (up to a minute) for its guest to let go holds one
thread; the other guests' actions go on on the others.
Queues are bounded: a guest with `QUEUE_SIZE` actions pending gets no more (the
caller is told, and reconciles later).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

QUEUE_SIZE = 256
THREADS = 16
IDLE_EXIT = 30.0


class GuestWorkers:
    """Runs `runner(guest, action, *args)` for each submitted action: per guest in order,
    across guests on at most `threads` threads."""

    def __init__(self, runner: Callable[..., None], threads: int = THREADS) -> None:
        self._runner = runner
        self._max_threads = threads
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, deque[tuple[Callable[..., None], tuple]]] = {}
        self._ready: deque[str] = deque()  # guests with pending actions, none running
        self._running: set[str] = set()
        self._threads = 0
        self._waiting_threads = 0
        self._busy = 0  # actions queued or running

    @property
    def threads(self) -> int:
        """Worker threads alive now."""
        return self._threads

    def submit(self, guest: str, action: Callable[..., None], *args: object) -> bool:
        """Queue an action of `guest`; False when its queue is full (the action is dropped)."""
        with self._lock:
            pending = self._pending.setdefault(guest, deque())
            if len(pending) >= QUEUE_SIZE:
                return False
            pending.append((action, args))
            self._busy += 1
            if len(pending) == 1 and guest not in self._running:
                self._ready.append(guest)
            if self._waiting_threads == 0 and self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(target=self._work, name="guest-worker", daemon=True).start()
            else:
                self._has_work.notify()
        return True

    def _next(self) -> tuple[str, Callable[..., None], tuple] | None:
        """The next guest's next action (None: no work for IDLE_EXIT s, the thread ends)."""
        with self._lock:
            while not self._ready:
                self._waiting_threads += 1
                woken = self._has_work.wait(IDLE_EXIT)
                self._waiting_threads -= 1
                if not woken and not self._ready:
                    self._threads -= 1
                    return None
            guest = self._ready.popleft()
            action, args = self._pending[guest].popleft()
            self._running.add(guest)
            return guest, action, args

    def _done(self, guest: str) -> None:
        with self._lock:
            self._running.discard(guest)
            self._busy -= 1
            if self._pending[guest]:
                self._ready.append(guest)  # its next action, after the other guests' turns
                self._has_work.notify()
            else:
                del self._pending[guest]
            self._idle.notify_all()

    def _work(self) -> None:
        while (item := self._next()) is not None:
            guest, action, args = item
            try:
                self._runner(guest, action, *args)
            except Exception:  # the runner logs its failures; the worker goes on
                pass
            finally:
                self._done(guest)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no action is queued or running (for --once)."""
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)
