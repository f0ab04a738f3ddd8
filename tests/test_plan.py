"""hpvmmodify planning: which device changes a modify makes, without a host."""

from __future__ import annotations

import pytest

from translators.allocate import complete
from translators.errors import HpvmError
from translators.grammar import parse_statement
from translators.options import parse_config_text
from translators.plan import Action, plan_modify


def guest():
    text = """-O linux
disk:avio_stor:0,0,3:disk:/dev/loop0
dvd:avio_stor:0,0,4:null:
network:avio_lan:0,1,2a-2e-5a-05-0a-ba:vswitch:swlan1:portid:5
"""
    return complete(parse_config_text(text, "g").guest)


def stmts(*texts):
    return [parse_statement(t) for t in texts]


def test_add_disk_goes_behind_the_existing_hba():
    after, changes = plan_modify(guest(), stmts("disk:avio_stor::disk:/dev/loop1"), [], [])
    (change,) = changes
    assert change.action is Action.ATTACH and not change.new_controller
    assert (change.device.bus, change.device.slot, change.device.target) == (0, 0, 0)
    assert len(after.storage) == 3


def test_add_on_a_new_hba_attaches_the_controller_first():
    _, changes = plan_modify(guest(), stmts("disk:avio_stor:0,5,0:disk:/dev/loop1"), [], [])
    assert changes[0].new_controller


def test_add_nic_gets_next_slot_mac_and_port():
    _, (change,) = plan_modify(guest(), stmts("network:avio_lan::vswitch:swlan1"), [], [])
    nic = change.device
    assert (nic.bus, nic.slot, nic.portid) == (0, 2, 1) and nic.mac


@pytest.mark.parametrize(
    "text",
    [
        "disk:avio_stor::disk:/dev/loop0",
        "disk:avio_stor:0,0,3:disk:/dev/loop0",
        "network:avio_lan::vswitch:swlan1",
        "network:avio_lan:0,1:vswitch:swlan1:portid:5",
    ],
)
def test_delete_by_any_given_fields(text):
    after, (change,) = plan_modify(guest(), [], stmts(text), [])
    assert change.action is Action.DETACH
    assert change.device not in after.devices


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("disk:avio_stor::disk:/dev/loop9", "no such device"),
        ("network:avio_lan::vswitch:swlan2", "no such device"),
        ("disk:scsi::disk:/dev/loop0", "no such device"),
    ],
)
def test_delete_of_a_missing_device(text, words):
    with pytest.raises(HpvmError, match=words):
        plan_modify(guest(), [], stmts(text), [])


def test_dvd_insert_is_an_update():
    after, (change,) = plan_modify(guest(), [], [], stmts("dvd:avio_stor:0,0,4:file:/iso/a.iso"))
    assert change.action is Action.UPDATE and change.device.location == "/iso/a.iso"
    eject = plan_modify(after, [], [], stmts("dvd:avio_stor:0,0,4:null:"))[1][0]
    assert eject.action is Action.UPDATE and eject.device.location == ""


def test_disk_backing_change_is_detach_then_attach():
    _, changes = plan_modify(guest(), [], [], stmts("disk:avio_stor:0,0,3:disk:/dev/loop7"))
    assert [c.action for c in changes] == [Action.DETACH, Action.ATTACH]


def test_nic_vswitch_change_is_an_update():
    _, (change,) = plan_modify(guest(), [], [], stmts("network:avio_lan:0,1:vswitch:swlan2"))
    assert change.action is Action.UPDATE and change.device.vswitch == "swlan2"
    assert change.device.mac == "2a:2e:5a:05:0a:ba"


@pytest.mark.parametrize(
    ("add", "words"),
    [
        (["disk:avio_stor:0,0,3:disk:/dev/loop1"], "already used"),
        (["disk:avio_stor::disk:/dev/loop0"], "already used in this guest"),
        (["network:avio_lan:,,2a-2e-5a-05-0a-ba:vswitch:swlan1"], "already used"),
        (["tape:avio_stor::disk:/dev/st0"], "not supported for a tape"),
    ],
)
def test_refused_additions(add, words):
    with pytest.raises(HpvmError, match=words):
        plan_modify(guest(), stmts(*add), [], [])


def test_129th_avio_device_is_refused():
    g = guest()
    add = stmts(*[f"disk:avio_stor::file:/f/{i}" for i in range(125)])
    plan_modify(g, add, [], [])
    with pytest.raises(HpvmError, match="more than 128 AVIO"):
        plan_modify(g, [*add, *stmts("disk:avio_stor::file:/f/x")], [], [])


def test_same_storage_keys_overlap_for_a_disk_and_its_partitions():
    from translators.validate import same_storage

    assert same_storage("blk:7:0", "blk:7:0")
    assert same_storage("blk:7:0", "blk:7:0#259:1") and same_storage("file:1:2#259:1", "file:1:2")
    assert not same_storage("blk:7:0#259:1", "blk:7:0#259:2")
    assert not same_storage("blk:7:1", "blk:7:10") and not same_storage("/x", "/x#y")
