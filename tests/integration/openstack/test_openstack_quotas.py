"""Quota needs against a real OpenStack: the whole plan, made through the services' own APIs, fits in
exactly the quotas preflight computes and fails at one less of any of them.

The quota names come from the services' own listings (Nova's ``os-quota-sets/<project>/detail``,
Neutron's ``quotas/<project>/details``, Cinder's ``os-quota-sets/<project>?usage=True``), not from
the product. Each is a counter (a limit on how many of something the project holds), except the
per-request limits named in ``LIMITS`` and Cinder's per-volume-type quotas (``<name>___<type>``),
which this cloud leaves unlimited and preflight does not check (a gap of preflight, asserted below
so it cannot change unseen). Neutron's API names its quotas in the singular; ``API_NAMES`` maps them
to preflight's (a fact of the two APIs).

What the plan makes (openstack_world.create_whole_plan): keypair, server group, network, subnet,
router and interface, security groups and rules, ports, floating IPs, boot and data volumes,
instances until ACTIVE. Differences the fixture forces, named: instances boot from the image beside
their boot volumes, and no DHCP agent runs here, so Neutron makes no DHCP port (``ports`` is checked
at one less than what this cloud makes: the plan's need minus its DHCP subnets).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from openstack_world import QuotaRefused, World, create_whole_plan, delete_whole_plan, empty_made

pytestmark = pytest.mark.integration

#: Neutron's quota names -> preflight's (Nova's and Cinder's are the same in both).
API_NAMES = {"floatingip": "floating_ips", "port": "ports", "network": "networks", "subnet": "subnets",
             "router": "routers", "security_group": "security_groups",
             "security_group_rule": "security_group_rules"}
#: Limits on one request or one object, not counters of what a project holds.
LIMITS = {("compute", "metadata_items"), ("volume", "per_volume_gigabytes")}
#: Counters the plan uses that preflight does not check: a ratchet, only ever shrinking.
NOT_IN_PREFLIGHT = {("compute", "key_pairs")}
#: Counted per user, not per project (Nova lists the project's in_use as 0): the member's own count.
PER_USER = {("compute", "key_pairs")}


def listing(world: World) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, quota) -> (limit, used + reserved), as the services list them for the project (per-user
    counters: the member's own use)."""
    pid, admin = world.project.id, world.admin
    out: dict[tuple[str, str], tuple[int, int]] = {}
    nova = admin.compute.get(f"/os-quota-sets/{pid}/detail", microversion="2.90").json()["quota_set"]
    neutron = admin.network.get(f"/quotas/{pid}/details").json()["quota"]
    cinder = admin.block_storage.get(f"/os-quota-sets/{pid}?usage=True").json()["quota_set"]
    for service, doc, used in (("compute", nova, "in_use"), ("network", neutron, "used"),
                               ("volume", cinder, "in_use")):
        for name, q in doc.items():
            if isinstance(q, dict):
                out[(service, name)] = (int(q["limit"]), int(q[used]) + int(q.get("reserved", 0)))
    member = world.member()
    try:
        for key in PER_USER:
            out[key] = (out[key][0], len(list(member.compute.keypairs())))
    finally:
        member.close()
    return out


def set_limits(world: World, limits: dict[tuple[str, str], int]) -> None:
    pid, admin = world.project.id, world.admin
    by = {s: {n: v for (svc, n), v in limits.items() if svc == s} for s in ("compute", "network", "volume")}
    for service, resp in (
        ("compute", lambda b: admin.compute.put(f"/os-quota-sets/{pid}", microversion="2.90", json={"quota_set": b})),
        ("network", lambda b: admin.network.put(f"/quotas/{pid}", json={"quota": b})),
        ("volume", lambda b: admin.block_storage.put(f"/os-quota-sets/{pid}", json={"quota_set": b})),
    ):
        if by[service]:
            r = resp(by[service])
            assert r.status_code == 200, f"{service} quotas {by[service]}: HTTP {r.status_code} {r.text[:200]}"


def preflight_name(key: tuple[str, str]) -> str:
    return API_NAMES.get(key[1], key[1]) if key[0] == "network" else key[1]


def counters(found: dict[tuple[str, str], tuple[int, int]]) -> list[tuple[str, str]]:
    return sorted(k for k in found if k not in LIMITS and "___" not in k[1])


def _plan_counts(world: World) -> dict[tuple[str, str], int]:
    """What the plan makes of the per-user counters, counted here from its registrations."""
    return {("compute", "key_pairs"): len(world.report.run.by_type("openstack:compute/keypair:Keypair"))}


def _dhcp_ports(world: World) -> int:
    return sum(1 for r in world.report.run.by_type("openstack:networking/subnet:Subnet")
               if r.inputs.get("enableDhcp", True))


def _exact(world: World, now: dict[tuple[str, str], tuple[int, int]]) -> dict[tuple[str, str], int]:
    """Every counter at current usage plus what preflight says the plan adds (nothing, for a counter it
    does not name; for the ratchet's, what the registrations hold)."""
    need = world.needs.quotas
    per_user = _plan_counts(world)
    return {k: now[k][1] + (per_user[k] if k in NOT_IN_PREFLIGHT else need.get(preflight_name(k), 0))
            for k in counters(now)}


@pytest.fixture(scope="module")
def quotas(world: World) -> Iterator[dict[str, Any]]:
    """The project prepared for the plan (image, networks, flavors), every counter the services list set
    to exactly what preflight computes, and the whole plan made once: whether it fitted, and what it
    used of every counter."""
    world.prepare()
    before = listing(world)
    set_limits(world, _exact(world, before))
    conn = world.member()
    made = empty_made()
    refused: QuotaRefused | None = None
    during = before
    try:
        create_whole_plan(conn, world.report, made)
        during = listing(world)
    except QuotaRefused as e:
        refused = e
    finally:
        servers = len(made["servers"])
        delete_whole_plan(conn, made)
        conn.close()
    used = {k: during[k][1] - before[k][1] for k in counters(before)}
    try:
        yield {"before": before, "used": used, "refused": refused, "servers": servers}
    finally:
        pid = world.project.id
        world.admin.compute.delete(f"/os-quota-sets/{pid}")
        world.admin.network.delete(f"/quotas/{pid}")
        world.admin.block_storage.delete(f"/os-quota-sets/{pid}")


def test_the_services_list_every_quota_preflight_checks(quotas: dict[str, Any], world: World) -> None:
    names = {preflight_name(k) for k in counters(quotas["before"])}
    assert set(world.needs.quotas) <= names, set(world.needs.quotas) - names
    # per-type and per-request limits: unlimited here, so nothing the plan does can meet them
    per_type = {k: v for k, v in quotas["before"].items() if "___" in k[1]}
    assert per_type and all(limit == -1 for limit, _ in per_type.values()), per_type


def test_preflight_counts_what_the_plan_uses(quotas: dict[str, Any], world: World) -> None:
    """Every counter the plan uses is one preflight checks (but the ratchet's), by exactly what it uses
    (ports: the DHCP port this cloud cannot make aside)."""
    need = world.needs.quotas
    used = {k: v for k, v in quotas["used"].items() if v}
    assert set(used) - {k for k in used if preflight_name(k) in need} == NOT_IN_PREFLIGHT, used
    for key, amount in used.items():
        if key in NOT_IN_PREFLIGHT:
            continue
        expected = need[preflight_name(key)] - (_dhcp_ports(world) if preflight_name(key) == "ports" else 0)
        assert amount == expected, f"{key}: the plan uses {amount}, preflight counts {need[preflight_name(key)]}"


def test_the_plan_boots_at_exactly_the_quotas_preflight_computes(quotas: dict[str, Any], world: World) -> None:
    assert quotas["refused"] is None, f"the plan does not fit the quotas preflight computes: {quotas['refused']}"
    assert quotas["servers"] == len(world.report.plan.nodes)


def test_one_less_of_any_quota_the_plan_needs_fails(
    quotas: dict[str, Any], world: World, timings: dict[str, float]
) -> None:
    """For each counter the plan uses, the same exact quotas with that one a unit lower: some service
    refuses one of the plan's resources for want of it."""
    now = listing(world)
    exact = _exact(world, now)
    tight = [k for k in counters(quotas["before"]) if quotas["used"][k]]
    assert len(tight) >= 10, tight
    survived = []
    for key in tight:
        started = time.monotonic()
        limits = dict(exact)
        if preflight_name(key) == "ports":  # one less than what this cloud makes (no DHCP port here)
            limits[key] = now[key][1] + quotas["used"][key] - 1
        else:
            limits[key] -= 1
        set_limits(world, limits)
        conn = world.member()
        made = empty_made()
        try:
            create_whole_plan(conn, world.report, made)
            survived.append(key)
        except QuotaRefused as e:
            assert e.status in (403, 409, 413) and ("quota" in e.text.lower() or "exceeded" in e.text.lower()), e
        finally:
            delete_whole_plan(conn, made)
            conn.close()
        took = time.monotonic() - started
        timings["quota boots at one less (slowest)"] = max(timings.get("quota boots at one less (slowest)", 0), took)
        timings["quota boots at one less (all)"] = timings.get("quota boots at one less (all)", 0) + took
    assert survived == [], f"the plan booted with one less of {survived}"
