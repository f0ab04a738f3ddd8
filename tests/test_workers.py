"""The agent's guest workers: per-guest order, guests side by side, a bounded pool."""

from __future__ import annotations

import threading

from agent.daemon import workers
from agent.daemon.workers import GuestWorkers


def run(guest: str, action, *args) -> None:
    action(guest, *args)


def test_a_guests_actions_run_in_order():
    done: list[tuple[str, int]] = []
    pool = GuestWorkers(run, threads=4)
    for n in range(50):
        for guest in ("a", "b", "c"):
            assert pool.submit(guest, lambda g, n: done.append((g, n)), n)
    assert pool.wait_idle(10)
    for guest in ("a", "b", "c"):
        assert [n for g, n in done if g == guest] == list(range(50))


def test_a_thousand_guests_use_at_most_the_pool():
    peak = 0
    lock = threading.Lock()
    pool = GuestWorkers(run, threads=8)

    def action(_guest: str) -> None:
        nonlocal peak
        with lock:
            peak = max(peak, pool.threads)

    for n in range(1000):
        pool.submit(f"guest{n}", action)
    assert pool.wait_idle(20)
    assert 1 <= peak <= 8


def test_a_blocked_guest_does_not_hold_up_the_others():
    release = threading.Event()
    others_done = threading.Event()
    pool = GuestWorkers(run, threads=2)
    pool.submit("slow", lambda _g: release.wait(10))
    pool.submit("slow", lambda _g: None)  # behind the blocked one, in order
    for n in range(20):
        pool.submit(f"g{n}", lambda _g: None)
    pool.submit("last", lambda _g: others_done.set())
    assert others_done.wait(5), "the other guests waited for the blocked one"
    assert not pool.wait_idle(0)
    release.set()
    assert pool.wait_idle(5)


def test_a_full_queue_refuses_more():
    release = threading.Event()
    pool = GuestWorkers(run, threads=1)
    pool.submit("g", lambda _g: release.wait(10))
    accepted = [pool.submit("g", lambda _g: None) for _ in range(workers.QUEUE_SIZE + 5)]
    assert accepted.count(False) >= 5
    release.set()
    assert pool.wait_idle(10)


def test_idle_threads_end(monkeypatch):
    monkeypatch.setattr(workers, "IDLE_EXIT", 0.05)
    pool = GuestWorkers(run, threads=3)
    for n in range(10):
        pool.submit(f"g{n}", lambda _g: None)
    assert pool.wait_idle(5)
    deadline = threading.Event()
    for _ in range(100):
        if pool.threads == 0:
            break
        deadline.wait(0.05)
    assert pool.threads == 0
