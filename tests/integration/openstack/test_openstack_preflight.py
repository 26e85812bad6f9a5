"""`aiinfn preflight` against a real OpenStack: it passes on a cloud prepared for the plan, and each thing
an operator can get wrong (a quota one unit short, a missing or malformed flavor, a missing image,
network or zone, someone else's keypair, no right to make flavors, a service that died, bad credentials,
an endpoint that is closed or silent) fails with its own one-line reason and remedy, in bounded time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openstack_fixture import ControlPlane
from openstack_world import (
    ADMIN_IN_PROJECT_CLOUD,
    CLOSED_PORT_CLOUD,
    ENV_FILE,
    MEMBER_CLOUD,
    OTHER_PUBLIC_KEY,
    SILENT_CLOUD,
    WRONG_PASSWORD_CLOUD,
    World,
    make_flavor,
    set_extra_spec,
)

from aiinfn import preview
from aiinfn.openstack import connect as osconnect
from aiinfn.openstack import preflight as pf
from aiinfn.openstack.connect import find

pytestmark = pytest.mark.integration

#: Seconds within which a refused or silent endpoint must be reported (the timeout is 2 s per request).
BOUND = 20


def aiinfn(world: World, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the live-cloud commands as an operator would (a process, clouds.yaml from the environment)."""
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(world.clouds_yaml), "COLUMNS": "200"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True,
                         env=env, timeout=300)
    return res, time.monotonic() - start


def run_checks(world: World, needs: pf.Needs | None = None, cloud: str = MEMBER_CLOUD) -> list[pf.Check]:
    conn = osconnect.connect(cloud, timeout=10)
    try:
        return pf.run(conn, needs or world.needs, timeout=10)
    finally:
        conn.close()


def failed(checks: list[pf.Check]) -> dict[str, pf.Check]:
    return {c.name: c for c in checks if not c.ok}


def variant(tmp_path: Path, name: str, overrides: dict[str, Any]) -> Path:
    """The fixture environment with ``overrides`` layered on top, through `extends`."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"extends": str(ENV_FILE), **overrides}))  # JSON is YAML
    return path


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    return lines[0]


# --------------------------------------------------------------------------- a prepared cloud passes


def test_preflight_passes_on_a_cloud_prepared_for_the_plan(prepared: World) -> None:
    res, _ = aiinfn(prepared, "preflight", str(ENV_FILE), "--output", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["cloud"] == MEMBER_CLOUD
    assert [c for c in doc["checks"] if c["status"] != "ok"] == []
    names = {c["name"] for c in doc["checks"]}
    needs = prepared.needs
    zone = f"availability zone {needs.availability_zone}"
    expected = {"authentication", "compute microversion", f"image {needs.image}", f"network {needs.external_network}",
                zone, f"{zone} (volumes)", "volume types", f"keypair {needs.keypair[0]}"}
    expected |= {f"flavor {f.name}" for f in needs.flavors}
    expected |= {f"quota {label}" for name, (_, label) in pf.QUOTAS.items() if needs.quotas[name]}
    assert names == expected
    # every quota sits exactly at usage + what the plan adds: the plan's figures are the ones checked
    details = {c["name"]: c["detail"] for c in doc["checks"]}
    for name, (_, label) in pf.QUOTAS.items():
        if needs.quotas[name]:
            assert details[f"quota {label}"].endswith(f"plan adds {needs.quotas[name]}")
    gpu = next(f for f in needs.flavors if f.aliases)
    assert details[f"flavor {gpu.name}"].endswith("a100:2")


def test_preflight_table_says_pulumi_up_may_proceed(prepared: World) -> None:
    res, _ = aiinfn(prepared, "preflight", str(ENV_FILE))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "preflight openstack-fixture on cloud aiinfn-it" in res.stdout
    assert "checks passed" in res.stdout and "FAIL" not in res.stdout


# --------------------------------------------------------------------------- quotas


@pytest.mark.parametrize("quota", [q for q in pf.QUOTAS])
def test_a_quota_one_unit_short_fails_alone_with_its_remedy(prepared: World, quota: str) -> None:
    need = prepared.needs.quotas[quota]
    if need == 0:
        pytest.fail(f"the fixture environment adds no {quota}: extend fixture-env.yaml so every quota is exercised")
    exact = prepared.exact_quotas()
    prepared.set_quotas({quota: exact[quota] - 1})
    checks = run_checks(prepared)
    label = pf.QUOTAS[quota][1]
    bad = failed(checks)
    assert list(bad) == [f"quota {label}"], bad
    used = exact[quota] - need
    assert bad[f"quota {label}"].detail == f"{used}/{exact[quota] - 1} used, plan adds {need}: 1 short"
    assert bad[f"quota {label}"].remedy.startswith(f"ask the cloud admins to raise {quota} to at least {exact[quota]}")


def test_a_quota_lowered_by_the_admin_fails_the_command_with_exit_1(prepared: World) -> None:
    used = prepared.usage()["cores"]
    prepared.set_quotas({"cores": used + 3})
    res, _ = aiinfn(prepared, "preflight", str(ENV_FILE), "-o", "json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    bad = [c for c in doc["checks"] if c["status"] == "fail"]
    need = prepared.needs.quotas["cores"]
    assert [c["name"] for c in bad] == ["quota cores"]
    assert bad[0]["detail"] == f"{used}/{used + 3} used, plan adds {need}: {need - 3} short"
    assert f"raise cores to at least {used + need}" in bad[0]["remedy"]
    table, _ = aiinfn(prepared, "preflight", str(ENV_FILE))
    assert table.returncode == 1 and "1 of" in table.stdout and "checks failed" in table.stdout


def test_usage_counts_against_the_quota(prepared: World) -> None:
    """A server already running in the project uses part of the quota the plan needs."""
    member = prepared.member()
    small = next(f for f in prepared.needs.flavors if not f.aliases)
    image = find(member.image.find_image, prepared.needs.image)
    flavor = find(member.compute.find_flavor, small.name)
    server = member.compute.create_server(name="already-here", flavor_id=flavor.id, image_id=image.id,
                                          networks="none")
    try:
        member.compute.wait_for_server(server, wait=120)
        bad = failed(run_checks(prepared))
        assert set(bad) == {"quota instances", "quota cores", "quota RAM (MB)"}
        assert bad["quota cores"].detail.endswith(f"{small.vcpus} short")
        assert bad["quota RAM (MB)"].detail.endswith(f"{small.ram_mb} short")
    finally:
        member.compute.delete_server(server)
        member.compute.wait_for_delete(server, wait=120)
        member.close()


# --------------------------------------------------------------------------- flavors


def gpu_flavor(world: World) -> pf.FlavorSpec:
    return next(f for f in world.needs.flavors if f.aliases)


def test_a_missing_flavor_fails_with_what_to_ask_for(prepared: World) -> None:
    spec = gpu_flavor(prepared)
    prepared.admin.compute.delete_flavor(find(prepared.admin.compute.find_flavor, spec.name))
    bad = failed(run_checks(prepared))
    assert list(bad) == [f"flavor {spec.name}"]
    assert bad[f"flavor {spec.name}"].detail.startswith("not found")
    assert f"ask the cloud admins for flavor {spec.name!r} with 4 vCPUs, 8192 MB, pci_passthrough:alias=a100:2" \
        in bad[f"flavor {spec.name}"].remedy


def test_an_alias_without_count_is_caught_although_old_microversions_accept_it(prepared: World) -> None:
    spec = gpu_flavor(prepared)
    admin = prepared.admin
    flavor = make_flavor(admin, spec, alias="a100", microversion="2.85")  # accepted before 2.86 ...
    refused = set_extra_spec(admin, flavor, "pci_passthrough:alias", "a100", microversion="2.86")
    assert refused.status_code == 400  # ... refused from 2.86 on, the microversion preflight requires
    image = find(admin.image.find_image, prepared.needs.image)
    boot = admin.compute.post("/servers", microversion="2.86", json={"server": {
        "name": "bad-alias", "flavorRef": flavor.id, "imageRef": image.id, "networks": "none"}})
    assert boot.status_code >= 400, "Nova booted a server whose flavor has an alias without a count"
    bad = failed(run_checks(prepared))
    assert list(bad) == [f"flavor {spec.name}"]
    detail = bad[f"flavor {spec.name}"].detail
    assert "pci_passthrough:alias 'a100': alias 'a100' has no count" in detail
    assert "every boot with it fails" in detail and "(plan: 'a100:2')" in detail


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"alias": "a100:1"}, "pci_passthrough:alias 'a100:1' (plan: 'a100:2')"),
        ({"alias": "t4:2"}, "pci_passthrough:alias 't4:2' (plan: 'a100:2')"),
        ({"vcpus": 8}, "8 vCPUs (plan: 4)"),
    ],
)
def test_a_flavor_unlike_the_plans_fails_naming_the_difference(
    prepared: World, change: dict[str, Any], expected: str
) -> None:
    spec = gpu_flavor(prepared)
    shaped = pf.FlavorSpec(spec.name, change.get("vcpus", spec.vcpus), spec.ram_mb, spec.ephemeral_gb,
                           spec.aliases, spec.extra_specs, spec.managed)
    make_flavor(prepared.admin, shaped, alias=change.get("alias"))
    bad = failed(run_checks(prepared))
    assert list(bad) == [f"flavor {spec.name}"]
    assert bad[f"flavor {spec.name}"].detail == expected


def test_flavors_the_plan_creates_need_the_right_to_create_them(prepared: World, tmp_path: Path) -> None:
    env = variant(tmp_path, "managed", {"site": {"manage_flavors": True}})
    needs = pf.needs(preview.build(env))
    for spec in needs.flavors:  # the plan makes them: none may exist yet
        prepared.admin.compute.delete_flavor(find(prepared.admin.compute.find_flavor, spec.name))
    as_member = failed(run_checks(prepared, needs))
    assert list(as_member) == ["flavor management"]
    assert "may not create flavors (HTTP 403)" in as_member["flavor management"].detail
    assert "set site.manage_flavors: false" in as_member["flavor management"].remedy
    as_admin = run_checks(prepared, needs, cloud=ADMIN_IN_PROJECT_CLOUD)
    assert failed(as_admin) == {}
    assert {c.name: c.detail for c in as_admin}[f"flavor {needs.flavors[0].name}"] == "absent: the plan creates it"
    # nothing was created or deleted by the permission probe
    assert all(find(prepared.admin.compute.find_flavor, s.name) is None for s in needs.flavors)


# --------------------------------------------------------------------------- names the plan expects


@pytest.mark.parametrize(
    ("overrides", "check", "detail", "remedy"),
    [
        ({"site": {"image": "no-such-image"}}, "image no-such-image", "not found", "upload image 'no-such-image'"),
        ({"site": {"external_network": "no-such-net"}}, "network no-such-net", "not found",
         "fix site.external_network"),
        ({"site": {"availability_zone": "elsewhere"}}, "availability zone elsewhere",
         "not a compute zone (zones: nova)", "fix site.availability_zone"),
        ({"site": {"volume_type": "ssd-nvme"}}, "volume types", "ssd-nvme not found", "fix site.volume_type"),
    ],
)
def test_a_name_the_cloud_lacks_fails_with_its_remedy(
    prepared: World, tmp_path: Path, overrides: dict[str, Any], check: str, detail: str, remedy: str
) -> None:
    needs = pf.needs(preview.build(variant(tmp_path, "broken", overrides)))
    bad = failed(run_checks(prepared, needs))
    assert check in bad, bad
    assert bad[check].detail.startswith(detail) and remedy in bad[check].remedy
    extra = set(bad) - {check, f"{check} (volumes)"}  # a zone is checked for servers and for volumes
    assert extra == set()


def test_a_missing_image_fails_the_command(prepared: World, tmp_path: Path) -> None:
    env = variant(tmp_path, "no-image", {"site": {"image": "no-such-image"}})
    res, _ = aiinfn(prepared, "preflight", str(env), "-o", "json")
    assert res.returncode == 1
    bad = [c for c in json.loads(res.stdout)["checks"] if c["status"] == "fail"]
    assert [(c["name"], c["detail"]) for c in bad] == [("image no-such-image",
                                                        "not found (or not visible to this project)")]


def test_a_network_that_is_not_external_is_refused(prepared: World, tmp_path: Path) -> None:
    # shared by the admin: visible to the project without using its network quota
    net = prepared.admin.network.create_network(name="internal-only", is_shared=True)
    try:
        needs = pf.needs(preview.build(variant(tmp_path, "internal", {"site": {"external_network": "internal-only"}})))
        bad = failed(run_checks(prepared, needs))
        assert list(bad) == ["network internal-only"]
        assert bad["network internal-only"].detail == "exists but is not external (router:external is false)"
    finally:
        prepared.admin.network.delete_network(net)


def test_a_keypair_holding_another_key_fails_and_the_same_key_passes(prepared: World) -> None:
    name, public = prepared.needs.keypair
    member = prepared.member()
    try:
        other = member.compute.create_keypair(name=name, public_key=OTHER_PUBLIC_KEY)
        bad = failed(run_checks(prepared))
        assert list(bad) == [f"keypair {name}"]
        assert bad[f"keypair {name}"].detail == "exists with another public key"
        member.compute.delete_keypair(other)
        member.compute.create_keypair(name=name, public_key=public)
        checks = {c.name: c for c in run_checks(prepared)}
        assert checks[f"keypair {name}"].ok and checks[f"keypair {name}"].detail == "exists with the same public key"
    finally:
        kp = find(member.compute.find_keypair, name)
        if kp is not None:
            member.compute.delete_keypair(kp)
        member.close()


def test_a_dead_service_fails_only_the_checks_that_need_it(prepared: World, control_plane: ControlPlane) -> None:
    """Cinder's API is down after authentication: the volume checks fail with the reason, the rest still run."""
    control_plane.stop_service("cinder-api")
    try:
        start = time.monotonic()
        checks = run_checks(prepared)
        took = time.monotonic() - start
    finally:
        control_plane.start_service("cinder-api")
    bad = failed(checks)
    zone = prepared.needs.availability_zone
    assert set(bad) == {f"availability zone {zone} (volumes)", "volume types", "quotas (volume)"}
    assert bad["volume types"].detail == "cannot reach the service while reading volume types (connection failed)"
    assert all(c.detail.startswith("cannot reach the service") and "catalog endpoint" in c.remedy for c in bad.values())
    names = {c.name for c in checks}
    assert {"quota instances", "quota ports", f"flavor {gpu_flavor(prepared).name}"} <= names
    assert took < BOUND


# --------------------------------------------------------------------------- credentials and endpoints


def test_a_wrong_password_is_one_line(world: World) -> None:
    res, took = aiinfn(world, "preflight", str(ENV_FILE), "--cloud", WRONG_PASSWORD_CLOUD, "--timeout", "2")
    assert res.returncode == 1 and took < BOUND
    line = one_line(res)
    assert f"cloud '{WRONG_PASSWORD_CLOUD}': authentication refused (HTTP 401)" in line
    assert "check the user, password" in line


def test_a_closed_port_is_one_line_within_bounded_time(world: World) -> None:
    res, took = aiinfn(world, "preflight", str(ENV_FILE), "--cloud", CLOSED_PORT_CLOUD, "--timeout", "2")
    assert res.returncode == 1 and took < BOUND
    line = one_line(res)
    assert f"cannot reach the identity endpoint http://127.0.0.1:{world.closed_port}/v3" in line
    assert "check auth_url" in line


def test_a_silent_endpoint_is_one_line_within_bounded_time(world: World) -> None:
    """An endpoint that accepts connections and never answers: only the request timeout ends the wait."""
    res, took = aiinfn(world, "preflight", str(ENV_FILE), "--cloud", SILENT_CLOUD, "--timeout", "2")
    assert res.returncode == 1 and took < BOUND
    line = one_line(res)
    assert f"the identity endpoint http://127.0.0.1:{world.silent_port}/v3 did not answer within 2 s" in line


def test_a_cloud_missing_from_clouds_yaml_is_one_line(world: World) -> None:
    res, took = aiinfn(world, "preflight", str(ENV_FILE), "--cloud", "nowhere")
    assert res.returncode == 1 and took < BOUND
    line = one_line(res)
    assert f"cloud 'nowhere': not found in clouds.yaml (read {world.clouds_yaml})" in line


def test_the_inventory_command_fails_the_same_way(world: World) -> None:
    res, took = aiinfn(world, "inventory", str(ENV_FILE), "--cloud", WRONG_PASSWORD_CLOUD, "--timeout", "2")
    assert res.returncode == 1 and took < BOUND
    assert "authentication refused" in one_line(res)
