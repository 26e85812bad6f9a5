"""The hub-side decisions on their own (no hub started): registrations, availability, Workload states,
POSIX identities, the provisioner's checks, the size limits of a user's groups."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from aiinfn.hub import cluster, identity, provisioner, spawner
from aiinfn.planning.labels import (
    HUB_REGISTRATION_LABEL,
    RESERVED_FOR_LABEL,
    VIRTUAL_NODE_TAINT,
    VIRTUAL_NODE_TYPE_LABEL,
)

T4 = cluster.Kind("T4", "t4", "nvidia.com/gpu", {"aiinfn.infn.it/accelerator": "T4"}, "t4")


@pytest.fixture(autouse=True)
def labels() -> None:
    cluster.LABELS.update({"hub_registration": HUB_REGISTRATION_LABEL, "reserved_for": RESERVED_FOR_LABEL,
                           "virtual_taint": VIRTUAL_NODE_TAINT, "virtual_type": VIRTUAL_NODE_TYPE_LABEL})


def _reg(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": "h", "groups": ["g"], "admin_groups": ["t"], "starts": "2026-12-01",
                           "ends": "2026-12-03", "namespace": "event-h", "profiles": [{"slug": "h-t4"}]}
    return {**doc, **over}


def test_a_registration_window_is_inclusive_and_a_bad_one_is_ignored_whole() -> None:
    r = cluster.parse_registration(_reg())
    assert [r.open_on(dt.date(2026, 12, d)) for d in (1, 3, 4)] == [True, True, False]
    assert r.participants == "g"
    bad = [_reg(starts="tomorrow"), _reg(groups=[]), _reg(profiles=[{"no": "slug"}]), _reg(event=7)]
    items = [{"metadata": {"name": f"c{i}"}, "data": {"event.json": json.dumps(d)}} for i, d in enumerate(bad)]
    items.append({"metadata": {"name": "ok"}, "data": {"event.json": json.dumps(_reg())}})
    items.append({"metadata": {"name": "broken"}, "data": {"event.json": "{"}})
    assert [x.event for x in cluster.registrations_from(items)] == ["h"]


def _node(name: str, labels: dict[str, str], gpus: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"aiinfn.infn.it/accelerator": "T4", **labels}},
            "spec": spec, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


def test_availability_counts_only_nodes_the_user_may_use() -> None:
    nodes = [_node("a", {}, 4), _node("b", {RESERVED_FOR_LABEL: "ai-infn.lhc"}, 4),
             _node("c", {}, 4, unschedulable=True), _node("d", {}, 64, taints=[{"key": VIRTUAL_NODE_TAINT}]),
             _node("e", {VIRTUAL_NODE_TYPE_LABEL: "slurm"}, 8)]
    queues = [{"status": {"flavorsUsage": [{"name": "t4", "resources": [{"name": "nvidia.com/gpu", "total": "3"}]}]}}]
    assert cluster.availability([T4], nodes, queues, {"ai-infn/users"})["T4"] == cluster.Free(1, 4, 0, 3)
    assert cluster.availability([T4], nodes, queues, {"ai-infn/lhc"})["T4"] == cluster.Free(5, 8, 0, 3)
    full = [{"status": {"flavorsUsage": [{"name": "t4", "resources": [{"name": "nvidia.com/gpu", "total": "9"}]}]}}]
    assert cluster.availability([T4], nodes, full, {"ai-infn/lhc"})["T4"].free == 0


def _workload(uid: str, reserved: str, message: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"ownerReferences": [{"uid": uid}]},
            "spec": {"podSets": [{"template": {"spec": {"nodeSelector": selector or T4.node_labels, "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": reserved, "reason": "Pending",
                                       "message": message}]}}


def test_the_workload_state_and_who_waits() -> None:
    wl = [_workload("u1", "False", "insufficient unused quota"), _workload("u2", "True", "Quota reserved"),
          _workload("u3", "False", "x", {"other": "kind"})]
    assert cluster.workload_state(wl, "u1") == "waiting in the queue (Pending): insufficient unused quota"
    assert cluster.workload_state(wl, "u2") == "QuotaReserved: Quota reserved"
    assert cluster.workload_state(wl, "nobody") is None
    assert cluster.waiting([T4], wl) == {"T4": 1}


def _wl(name: str, admitted_at: float | None, created: float = 0.0) -> dict[str, Any]:
    def stamp(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cond = ([{"type": "Admitted", "status": "True", "lastTransitionTime": stamp(admitted_at)}]
            if admitted_at is not None else [{"type": "QuotaReserved", "status": "False", "reason": "Pending"}])
    return {"metadata": {"name": name, "creationTimestamp": stamp(created), "ownerReferences": [{"uid": name}]},
            "spec": {"podSets": [{"template": {"spec": {"nodeSelector": dict(T4.node_labels), "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}]},
            "status": {"conditions": cond}}


def test_the_expected_wait_is_the_kth_release_and_unknown_without_a_bound() -> None:
    now, bound = 1_800_000_000.0, 3600.0
    # two units, both held by notebooks admitted 50 and 20 min ago: released in 10 and 40 min
    wls = [_wl("a", now - 3000), _wl("b", now - 1200), _wl("w1", None, now - 60), _wl("w2", None, now - 30)]
    full = cluster.Free(0, 2, 2, 2)
    assert cluster.queue_position(T4, wls) == 3
    assert [cluster.queue_position(T4, wls, u) for u in ("w1", "w2")] == [1, 2]
    assert cluster.expected_wait(T4, full, wls, 1, now, bound) == pytest.approx(600)
    assert cluster.expected_wait(T4, full, wls, 2, now, bound) == pytest.approx(2400)
    # the third waits for the first unit's second release: 10 min + one session
    assert cluster.expected_wait(T4, full, wls, 3, now, bound) == pytest.approx(600 + 3600)
    assert cluster.describe_wait(600.0) == "expected wait at most ~10 min"
    # a unit used by something the hub cannot see has no known end: with 3 in use and 2 notebooks the
    # third waiter still gets the first unit's second release; with no notebook at all, nothing is known
    assert cluster.expected_wait(T4, cluster.Free(0, 3, 0, 3), wls[:2], 3, now, bound) == pytest.approx(4200)
    assert cluster.expected_wait(T4, cluster.Free(0, 1, 0, 1), [], 1, now, bound) is None
    assert cluster.expected_wait(T4, full, wls, 1, now, 0) is None, "no max age: no bound"
    assert cluster.expected_wait(T4, cluster.Free(1, 2, 0, 1), wls, 1, now, bound) == 0


def test_posix_identities_are_recorded_and_never_reused(tmp_path: Path) -> None:
    ids = identity.Identities(str(tmp_path / "ids.sqlite"))
    assert ids.bind("s1", "anna") and ids.bind("s2", "Anna.B") and not ids.bind("s3", "anna")
    a, b = ids.posix("anna"), ids.posix("Anna.B")
    assert a.home == "anna" and b.home == f"anna.b-{b.uid}" and a.uid != b.uid
    assert identity.Identities(str(tmp_path / "ids.sqlite")).posix("anna") == a
    # a forced collision: the next free number, recorded
    first = identity.derived("aiinfn-uid:s9", identity.UID_BASE, identity.UID_SPAN)
    with ids._connect() as db:
        db.execute("INSERT INTO identities VALUES ('taker', 'taker', 0)")
        db.execute("INSERT INTO posix VALUES ('taker', ?, 'taker', 0)", (first,))
    assert ids.bind("s9", "nine") and ids.posix("nine").uid == first + 1
    with pytest.raises(LookupError):
        ids.posix("unbound")
    gid, area = ids.group_gid("ai-infn/lhc")
    assert area == "ai-infn.lhc" and gid >= identity.GID_BASE and ids.group_gid("ai-infn/lhc") == (gid, area)


@pytest.mark.parametrize("request_, message", [
    ({"user": {"home": "a/../../etc", "uid": 200001, "gid": 200001}}, "not a portable name"),
    ({"user": {"home": "x", "uid": 0, "gid": 0}}, "outside the users' range"),
    ({"user": {"home": "x", "uid": 200001, "gid": 100}}, "the same number as their uid"),
    ({"groups": [{"area": "g", "gid": 27}]}, "outside the groups' range"),
    ({"user": {"home": "x", "uid": True, "gid": True}}, "outside the users' range"),
    ({"shell": "rm -rf /"}, "unknown fields"),
])
def test_the_provisioner_refuses_what_is_not_data(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(provisioner.Refused, match=message):
        provisioner.check(request_)


def test_a_user_gets_the_largest_limits_of_their_groups() -> None:
    spawner.configure({"sizing": {"default": {"max_cpu": 8, "max_memory_gb": 32, "max_shm_gb": 8},
                                  "groups": {"a": {"max_cpu": 32, "max_memory_gb": 16, "max_shm_gb": 4}}}})
    assert spawner._limits({"x"}) == {"max_cpu": 8, "max_memory_gb": 32, "max_shm_gb": 8}
    assert spawner._limits({"a", "x"}) == {"max_cpu": 32, "max_memory_gb": 32, "max_shm_gb": 8}
    choices = spawner._choices(spawner.CPU_LADDER, 8, 4, "")
    assert list(choices) == ["1", "2", "4", "8"] and choices["4"].get("default")
