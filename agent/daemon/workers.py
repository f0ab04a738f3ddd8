"""One worker thread per guest: a guest's actions run in order, other guests' do not wait.

An unplug waits (up to 30 s) for the guest to release the device; only that
guest's later actions wait behind it. A worker ends when its guest has been
idle for a while. Queues are bounded: a guest with `QUEUE_SIZE` actions
pending gets no more (the caller is told, and reconciles later).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

QUEUE_SIZE = 256
IDLE_EXIT = 30.0


class GuestWorkers:
    """Runs `runner(guest, action, *args)` for each submitted action, in a thread per guest."""

    def __init__(self, runner: Callable[..., None]) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue] = {}
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    def submit(self, guest: str, action: Callable[..., None], *args: object) -> bool:
        """Queue an action of `guest`; False when its queue is full (the action is dropped)."""
        with self._lock:
            pending = self._queues.get(guest)
            if pending is None:
                pending = self._queues[guest] = queue.Queue(QUEUE_SIZE)
                threading.Thread(
                    target=self._work, args=(guest, pending), name=f"guest:{guest}", daemon=True
                ).start()
            try:
                pending.put_nowait((action, args))
            except queue.Full:
                return False
            self._busy += 1
            return True

    def _work(self, guest: str, pending: queue.Queue) -> None:
        while True:
            try:
                action, args = pending.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if pending.empty():
                        del self._queues[guest]
                        return
                continue
            try:
                self._runner(guest, action, *args)
            except Exception:  # the runner logs its failures; the worker goes on
                pass
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no action is queued or running (for --once)."""
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)
