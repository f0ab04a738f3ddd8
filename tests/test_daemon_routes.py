"""The agent's routing table and debounce windows (no host, no libvirt connection)."""

from __future__ import annotations

import pytest

from agent.daemon import work
from agent.daemon.debounce import Debounce
from agent.daemon.service import Agent, AgentOptions


def work_types() -> set[type]:
    found = {
        value
        for value in vars(work).values()
        if isinstance(value, type) and issubclass(value, work.Work) and value is not work.Work
    }
    assert found
    return found


def test_every_work_item_has_a_handler(tmp_path):
    agent = Agent(AgentOptions(guests_dir=tmp_path))
    assert work_types() <= set(agent.routes)


def test_an_unknown_item_fails_loudly(tmp_path):
    agent = Agent(AgentOptions(guests_dir=tmp_path))
    with pytest.raises(KeyError):
        agent._dispatch(object())


def test_debounce_keeps_the_last_item_and_its_due_time():
    window: Debounce[str] = Debounce()
    window.hold("a", 1.0, "first")
    window.hold("b", 3.0, "other")
    due, _ = window.held("a")
    window.hold("a", due, "last")
    assert sorted(window.deadlines()) == [1.0, 3.0]
    assert list(window.due(0.5)) == []
    assert list(window.due(2.0)) == ["last"]
    assert window.held("a") is None and window.deadlines() == [3.0]
    assert list(window.due(3.0)) == ["other"]
