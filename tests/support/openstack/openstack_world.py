"""The integration tests' view of the local cloud: their project, its clouds.yaml entries, and how the cloud
is prepared to match tests/support/openstack/fixture-env.yaml (image, external network, flavors made
by the admin with ``pci_passthrough:alias`` for the fixture's A100s, and quotas at exactly current usage
plus what the plan adds, so that one unit less of anything fails).
"""

from __future__ import annotations

import contextlib
import io
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openstack_fixture import KEYSTONE, PASSWORD, REGION

from aiinfn import preview
from aiinfn.openstack import preflight as pf
from aiinfn.openstack.connect import find

HERE = Path(__file__).resolve().parent
ENV_FILE = HERE / "fixture-env.yaml"
PROJECT_PREFIX = "aiinfn-it-"
#: The clouds.yaml entries the tests write (besides the fixture's admin).
MEMBER_CLOUD = "aiinfn-it"
ADMIN_IN_PROJECT_CLOUD = "aiinfn-it-admin"
WRONG_PASSWORD_CLOUD = "aiinfn-it-wrong-password"
CLOSED_PORT_CLOUD = "aiinfn-it-closed-port"
SILENT_CLOUD = "aiinfn-it-silent"
EXTERNAL_CIDR = "203.0.113.0/24"
INSTANCE = "openstack:compute/instance:Instance"
#: A valid public key that is not the environment's (Nova no longer generates keypairs from 2.92 on).
OTHER_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDLG7ZDRrt1jEhez1MkXACLLAlx/vIOyOMERsTZszQhk someone-else"

def connect(clouds_yaml: Path, cloud: str) -> Any:
    """A connection to ``cloud`` of ``clouds_yaml`` (whatever OS_CLIENT_CONFIG_FILE says)."""
    from openstack import config, connection

    loader = config.OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
    region = loader.get_one(cloud=cloud, api_timeout=30)
    return connection.Connection(config=region)


# --------------------------------------------------------------------------- the test world


def member_project(admin: Any, prefix: str) -> tuple[Any, Any, str, str]:
    """A fresh project ``<prefix><hex>`` with its own user (roles member and reader, as a site's operators
    have), the stale projects of ``prefix`` an earlier crashed run left purged first: (project, user, name,
    password); the user's name is the project's."""
    for stale in list(admin.identity.projects()):
        if stale.name.startswith(prefix):
            purge_project(admin, stale)
    name, password = prefix + secrets.token_hex(3), secrets.token_urlsafe(12)
    ident = admin.identity
    project = ident.create_project(name=name, domain_id="default")
    user = ident.create_user(name=name, password=password, domain_id="default", default_project_id=project.id)
    for role in ("member", "reader"):
        ident.assign_project_role_to_user(project, user, ident.find_role(role, ignore_missing=False))
    return project, user, name, password


def purge_project(admin: Any, project: Any) -> None:
    """Delete everything a test project holds, then the project and its users."""
    pid = project.id
    servers = list(admin.compute.servers(all_projects=True, project_id=pid))
    for s in servers:
        admin.compute.delete_server(s, force=True)
    for s in servers:
        admin.compute.wait_for_delete(s, wait=120)
    net = admin.network
    for fip in net.ips(project_id=pid):
        net.delete_ip(fip)
    for router in net.routers(project_id=pid):
        for port in net.ports(device_id=router.id, device_owner="network:router_interface"):
            net.remove_interface_from_router(router, port_id=port.id)
        net.delete_router(router)
    for port in net.ports(project_id=pid):
        net.delete_port(port)
    for network in net.networks(project_id=pid):
        net.delete_network(network)
    for group in net.security_groups(project_id=pid):
        net.delete_security_group(group)
    for volume in admin.block_storage.volumes(all_projects=True, project_id=pid):
        admin.block_storage.delete_volume(volume, force=True)
    for quota in (admin.compute.revert_quota_set, admin.network.delete_quota, admin.block_storage.revert_quota_set):
        with contextlib.suppress(Exception):
            quota(pid)
    for user in admin.identity.users(name=project.name):  # each test project has one user of its name
        admin.identity.delete_user(user)
    admin.identity.delete_project(project)


def ensure_image(admin: Any, name: str) -> Any:
    image = next((i for i in admin.image.images(name=name) if i.status == "active"), None)
    if image is None:
        image = admin.image.create_image(name=name, data=io.BytesIO(b"\0" * 1024 * 1024), disk_format="raw",
                                         container_format="bare", visibility="public", allow_duplicates=False)
    return image


def ensure_external_network(admin: Any, name: str) -> Any:
    net = find(admin.network.find_network, name) or admin.network.create_network(
        name=name, is_router_external=True, provider_network_type="flat", provider_physical_network="public")
    if not list(admin.network.subnets(network_id=net.id)):
        admin.network.create_subnet(network_id=net.id, name=f"{name}-subnet", ip_version=4, cidr=EXTERNAL_CIDR,
                                    enable_dhcp=False, gateway_ip="203.0.113.1")
    return net


def set_extra_spec(admin: Any, flavor: Any, key: str, value: str, microversion: str = "2.86") -> Any:
    """Set one extra spec at ``microversion`` (Nova validates values only from 2.86 on); the response."""
    return admin.compute.post(f"/flavors/{flavor.id}/os-extra_specs", microversion=microversion,
                              json={"extra_specs": {key: value}})


def make_flavor(admin: Any, spec: pf.FlavorSpec, *, alias: str | None = None, microversion: str = "2.86") -> Any:
    """(Re)create flavor ``spec`` as the cloud's admins would, with ``alias`` instead of the plan's if given."""
    old = find(admin.compute.find_flavor, spec.name)
    if old is not None:
        admin.compute.delete_flavor(old)
    flavor = admin.compute.create_flavor(name=spec.name, vcpus=spec.vcpus, ram=spec.ram_mb, disk=10,
                                         ephemeral=spec.ephemeral_gb, is_public=True)
    value = alias if alias is not None else spec.alias_spec
    if value:
        resp = set_extra_spec(admin, flavor, "pci_passthrough:alias", value, microversion)
        assert resp.status_code == 200, resp.text
    for key, v in spec.extra_specs.items():
        assert set_extra_spec(admin, flavor, key, v).status_code == 200
    return flavor


@dataclass
class World:
    """The session's project as the tests see it."""

    admin: Any
    project: Any
    user: Any
    clouds_yaml: Path
    report: preview.Preview
    needs: pf.Needs
    silent_port: int
    closed_port: int

    def member(self) -> Any:
        return connect(self.clouds_yaml, MEMBER_CLOUD)

    def usage(self) -> dict[str, int]:
        """Current usage of every quota preflight checks (the admin's view of the project)."""
        pid = self.project.id
        compute = self.admin.compute.get_quota_set(pid, usage=True).usage or {}
        net = self.admin.network.get_quota(pid, details=True)
        volume = self.admin.block_storage.get_quota_set(pid, usage=True).usage or {}
        out = {k: int(compute.get(k, 0)) for k in ("instances", "cores", "ram", "server_groups")}
        out["server_group_members"] = 0
        for name, (svc, _) in pf.QUOTAS.items():
            if svc == "network":
                d = getattr(net, name)
                out[name] = int(d["used"]) + int(d["reserved"])
        out.update({k: int(volume.get(k, 0)) for k in ("volumes", "gigabytes")})
        return out

    def set_quotas(self, values: dict[str, int]) -> None:
        pid = self.project.id
        compute = {k: v for k, v in values.items() if pf.QUOTAS[k][0] == "compute"}
        network = {k: v for k, v in values.items() if pf.QUOTAS[k][0] == "network"}
        volume = {k: v for k, v in values.items() if pf.QUOTAS[k][0] == "volume"}
        if compute:
            self.admin.compute.update_quota_set(pid, **compute)
        if network:
            self.admin.network.update_quota(pid, **network)
        if volume:
            self.admin.block_storage.update_quota_set(pid, **volume)

    def exact_quotas(self) -> dict[str, int]:
        """Every quota at current usage plus what the plan adds: the tightest cloud preflight accepts."""
        used = self.usage()
        return {name: used[name] + need for name, need in self.needs.quotas.items() if need}

    def prepare(self) -> None:
        """Image, external network and flavors as the environment expects, the keypair name free, and exact
        quotas."""
        ensure_image(self.admin, self.needs.image)
        ensure_external_network(self.admin, self.needs.external_network)
        for spec in self.needs.flavors:
            flavor = find(self.admin.compute.find_flavor, spec.name, get_extra_specs=True)
            if flavor is None or pf.flavor_problems(spec, flavor.vcpus, flavor.ram, flavor.ephemeral or 0,
                                                    dict(flavor.extra_specs or {})):
                make_flavor(self.admin, spec)
        if self.needs.keypair is not None:  # the plan's keypair name is free again
            conn = self.member()
            kp = find(conn.compute.find_keypair, self.needs.keypair[0])
            if kp is not None:
                conn.compute.delete_keypair(kp)
            conn.close()
        self.set_quotas(self.exact_quotas())


def write_clouds(path: Path, admin_clouds: Path, project: str, user: str, password: str,
                  closed_port: int, silent_port: int) -> None:
    def entry(name: str, auth_url: str, username: str, pw: str) -> str:
        return (f"  {name}:\n    auth:\n      auth_url: {auth_url}\n      username: {username}\n"
                f"      password: {pw}\n      project_name: {project}\n      user_domain_name: Default\n"
                f"      project_domain_name: Default\n    region_name: {REGION}\n    identity_api_version: 3\n")

    text = admin_clouds.read_text()
    text += entry(MEMBER_CLOUD, KEYSTONE, user, password)
    text += entry(ADMIN_IN_PROJECT_CLOUD, KEYSTONE, "admin", PASSWORD)
    text += entry(WRONG_PASSWORD_CLOUD, KEYSTONE, user, password + "-wrong")
    text += entry(CLOSED_PORT_CLOUD, f"http://127.0.0.1:{closed_port}/v3", user, password)
    text += entry(SILENT_CLOUD, f"http://127.0.0.1:{silent_port}/v3", user, password)
    path.write_text(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_endpoint() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung or firewalled-by-drop endpoint)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for s in held:
            s.close()
        server.close()




def wait_active(conn: Any, servers: list[Any], timeout: float = 300) -> dict[str, Any]:
    """Poll until every server is ACTIVE (ports stay DOWN here: never waited for). Fails on ERROR."""
    ids = {s.id for s in servers}
    end = time.monotonic() + timeout
    while True:
        now = {s.id: s for s in conn.compute.servers(details=True) if s.id in ids}
        errors = {s.name: (s.fault or {}).get("message") for s in now.values() if s.status == "ERROR"}
        assert not errors, f"servers went to ERROR: {errors}"
        if len(now) == len(ids) and all(s.status == "ACTIVE" for s in now.values()):
            return {s.name: s for s in now.values()}
        assert time.monotonic() < end, f"not ACTIVE after {timeout:g} s: {[s.status for s in now.values()]}"
        time.sleep(0.5)


def delete_servers(conn: Any, servers: list[Any]) -> None:
    for s in servers:
        conn.compute.delete_server(s, ignore_missing=True)
    for s in servers:
        conn.compute.wait_for_delete(s, wait=300)


@contextlib.contextmanager
def boot_plan(conn: Any, report: preview.Preview) -> Iterator[dict[str, Any]]:
    """Make the plan's compute part from its registrations, as `pulumi up` would, and remove it afterwards.

    Network and subnet, one port per node (Neutron assigns its address from the subnet, as for the
    stacks' ports, which name only the subnet), the keypair, the server group and every instance with
    its name, metadata, zone, key and scheduler hint. One difference the fixture forces: servers boot
    from the image, not from a volume (Cinder's fake driver cannot fill a volume from an image).
    Security groups, floating IPs and volumes are left out: the inventory needs none.
    """
    runs = report.run
    made: dict[str, list[Any]] = {"servers": [], "ports": [], "groups": [], "keypairs": [], "networks": []}
    try:
        (net_reg,) = runs.by_type("openstack:networking/network:Network")
        (subnet_reg,) = runs.by_type("openstack:networking/subnet:Subnet")
        network = conn.network.create_network(name=net_reg.inputs["name"])
        made["networks"].append(network)
        subnet = conn.network.create_subnet(network_id=network.id, name=subnet_reg.inputs["name"], ip_version=4,
                                            cidr=subnet_reg.inputs["cidr"], enable_dhcp=subnet_reg.inputs["enableDhcp"])
        ports = {}
        for reg in runs.by_type("openstack:networking/port:Port"):
            assert all(set(f) == {"subnetId"} for f in reg.inputs["fixedIps"]), reg.inputs["fixedIps"]
            port = conn.network.create_port(network_id=network.id, name=reg.inputs["name"],
                                            fixed_ips=[{"subnet_id": subnet.id}])
            made["ports"].append(port)
            ports[reg.id] = port  # the plan's instances name their port by its (mocked) ID
        for reg in runs.by_type("openstack:compute/keypair:Keypair"):
            made["keypairs"].append(conn.compute.create_keypair(name=reg.inputs["name"],
                                                                public_key=reg.inputs["publicKey"]))
        groups = {}
        for reg in runs.by_type("openstack:compute/serverGroup:ServerGroup"):
            group = conn.compute.create_server_group(name=reg.inputs["name"], policy=reg.inputs["policies"])
            made["groups"].append(group)
            groups[reg.id] = group
        image = find(conn.image.find_image, report.env.site.image)
        flavors = {f: find(conn.compute.find_flavor, f) for f in {n.flavor for n in report.plan.nodes}}
        for reg in runs.by_type(INSTANCE):
            node = report.plan.node(reg.inputs["name"])
            group_ids = [groups[h["group"]].id for h in reg.inputs.get("schedulerHints") or [] if h.get("group")]
            extra = {"scheduler_hints": {"group": group_ids[0]}} if group_ids else {}
            made["servers"].append(conn.compute.create_server(
                name=reg.inputs["name"],
                flavor_id=flavors[node.flavor].id,
                image_id=image.id,
                networks=[{"port": ports[n["port"]].id} for n in reg.inputs["networks"]],
                metadata=dict(reg.inputs["metadata"]),
                availability_zone=reg.inputs["availabilityZone"],
                key_name=reg.inputs["keyPair"],
                **extra,
            ))
        active = wait_active(conn, made["servers"])
        yield {"servers": active, "network": network, "subnet": subnet, "image": image}
    finally:
        delete_servers(conn, made["servers"])
        for port in made["ports"]:
            conn.network.delete_port(port, ignore_missing=True)
        for group in made["groups"]:
            conn.compute.delete_server_group(group, ignore_missing=True)
        for kp in made["keypairs"]:
            conn.compute.delete_keypair(kp, ignore_missing=True)
        for network in made["networks"]:
            conn.network.delete_network(network, ignore_missing=True)


# --------------------------------------------------------------------------- the whole plan, for quotas


class QuotaRefused(AssertionError):
    """A service refused to create one of the plan's resources for want of quota."""

    def __init__(self, what: str, status: int, text: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {text[:300]}")
        self.what, self.status, self.text = what, status, text


def _made(what: str, resp: Any, key: str) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise QuotaRefused(what, resp.status_code, resp.text)
    return dict(resp.json()[key])


def create_whole_plan(conn: Any, report: preview.Preview, made: dict[str, list[Any]]) -> None:
    """Every resource the plan registers that any quota counts, through the services' own APIs.

    From the registrations: keypair, server group, network, subnet, router (gateway on the external
    network) and its interface, security groups and their rules, ports with their groups, floating IPs
    on their ports, volumes (each instance's boot volume and the stateful ones, size and type as
    registered) and the instances (flavor, ports, key, group hint, zone, metadata), waited for until
    ACTIVE. The first refusal raises ``QuotaRefused`` (everything made so far is in ``made``, for
    ``delete_whole_plan``). Differences the fixture forces: instances boot from the image, beside
    their boot volumes (Cinder's fake driver cannot fill a volume from an image; no quota counts the
    difference), and the data volume is not attached (no quota counts an attachment).
    """
    runs = report.run
    ids: dict[str, str] = {}  # the plan's mocked IDs -> the cloud's

    def one(t: str) -> list[Any]:
        return runs.by_type(f"openstack:{t}")

    for reg in one("compute/keypair:Keypair"):
        kp = _made(f"keypair {reg.inputs['name']}", conn.compute.post(
            "/os-keypairs", microversion="2.92", json={"keypair": {
                "name": reg.inputs["name"], "public_key": reg.inputs["publicKey"]}}), "keypair")
        made["keypairs"].append(kp["name"])
    for reg in one("compute/serverGroup:ServerGroup"):
        g = _made(f"server group {reg.inputs['name']}", conn.compute.post(
            "/os-server-groups", microversion="2.64", json={"server_group": {
                "name": reg.inputs["name"], "policy": reg.inputs["policies"]}}), "server_group")
        made["server_groups"].append(g["id"])
        ids[reg.id] = g["id"]
    net = conn.network
    for reg in one("networking/network:Network"):
        n = _made("network", net.post("/networks", json={"network": {"name": reg.inputs["name"]}}), "network")
        made["networks"].append(n["id"])
        ids[reg.id] = n["id"]
    for reg in one("networking/subnet:Subnet"):
        sn = _made("subnet", net.post("/subnets", json={"subnet": {
            "network_id": ids[reg.inputs["networkId"]], "name": reg.inputs["name"], "ip_version": 4,
            "cidr": reg.inputs["cidr"], "enable_dhcp": reg.inputs.get("enableDhcp", True)}}), "subnet")
        ids[reg.id] = sn["id"]
    external = find(net.find_network, report.env.site.external_network)
    for reg in one("networking/router:Router"):
        r = _made("router", net.post("/routers", json={"router": {
            "name": reg.inputs["name"], "external_gateway_info": {"network_id": external.id}}}), "router")
        made["routers"].append(r["id"])
        ids[reg.id] = r["id"]
    for reg in one("networking/routerInterface:RouterInterface"):
        resp = net.put(f"/routers/{ids[reg.inputs['routerId']]}/add_router_interface",
                       json={"subnet_id": ids[reg.inputs["subnetId"]]})
        if resp.status_code >= 400:
            raise QuotaRefused("router interface", resp.status_code, resp.text)
    for reg in one("networking/secGroup:SecGroup"):
        g = _made(f"security group {reg.inputs['name']}", net.post("/security-groups", json={"security_group": {
            "name": reg.inputs["name"], "description": reg.inputs.get("description", "")}}), "security_group")
        made["security_groups"].append(g["id"])
        ids[reg.id] = g["id"]
    for reg in one("networking/secGroupRule:SecGroupRule"):
        i = reg.inputs
        rule = {"security_group_id": ids[i["securityGroupId"]], "direction": i["direction"],
                "ethertype": i.get("ethertype", "IPv4")}
        for src, dst in (("protocol", "protocol"), ("remoteIpPrefix", "remote_ip_prefix")):
            if i.get(src):
                rule[dst] = i[src]
        if i.get("remoteGroupId"):
            rule["remote_group_id"] = ids[i["remoteGroupId"]]
        for src, dst in (("portRangeMin", "port_range_min"), ("portRangeMax", "port_range_max")):
            if i.get(src) is not None:
                rule[dst] = int(i[src])
        _made(f"security group rule {reg.name}", net.post("/security-group-rules",
                                                           json={"security_group_rule": rule}), "security_group_rule")
    for reg in one("networking/port:Port"):
        p = _made(f"port {reg.inputs['name']}", net.post("/ports", json={"port": {
            "name": reg.inputs["name"], "network_id": ids[reg.inputs["networkId"]],
            "fixed_ips": [{"subnet_id": ids[f["subnetId"]]} for f in reg.inputs["fixedIps"]],
            "security_groups": [ids[g] for g in reg.inputs.get("securityGroupIds") or []]}}), "port")
        made["ports"].append(p["id"])
        ids[reg.id] = p["id"]
    # each floating IP on the port its association names (which one goes where counts for no quota)
    fips, assocs = one("networking/floatingIp:FloatingIp"), one("networking/floatingIpAssociate:FloatingIpAssociate")
    assert len(fips) == len(assocs), "every floating IP of the plan is associated with a port"
    for reg, assoc in zip(fips, assocs, strict=True):
        f = _made(f"floating IP {reg.name}", net.post("/floatingips", json={"floatingip": {
            "floating_network_id": external.id, "port_id": ids[assoc.inputs["portId"]]}}), "floatingip")
        made["floating_ips"].append(f["id"])
    volumes: list[tuple[str, int, str | None]] = []
    for reg in one("compute/instance:Instance"):
        for bd in reg.inputs.get("blockDevices") or []:
            if bd.get("destinationType") == "volume":
                volumes.append((f"{reg.inputs['name']}-boot", int(bd["volumeSize"]), bd.get("volumeType")))
    for reg in one("blockstorage/volume:Volume"):
        volumes.append((reg.inputs["name"], int(reg.inputs["size"]), reg.inputs.get("volumeType")))
    for name, size, vtype in volumes:
        body: dict[str, Any] = {"name": name, "size": size}
        if vtype:
            body["volume_type"] = vtype
        v = _made(f"volume {name}", conn.block_storage.post("/volumes", json={"volume": body}), "volume")
        made["volumes"].append(v["id"])
    image = find(conn.image.find_image, report.env.site.image)
    for reg in one("compute/instance:Instance"):
        node = report.plan.node(reg.inputs["name"])
        flavor = find(conn.compute.find_flavor, node.flavor)
        server: dict[str, Any] = {
            "name": reg.inputs["name"], "flavorRef": flavor.id, "imageRef": image.id,
            "networks": [{"port": ids[n["port"]]} for n in reg.inputs["networks"]],
            "metadata": dict(reg.inputs["metadata"]), "availability_zone": reg.inputs["availabilityZone"],
            "key_name": reg.inputs["keyPair"]}
        body = {"server": server}
        hints = [h["group"] for h in reg.inputs.get("schedulerHints") or [] if h.get("group")]
        if hints:
            body["os:scheduler_hints"] = {"group": ids[hints[0]]}
        s = _made(f"server {reg.inputs['name']}", conn.compute.post("/servers", microversion="2.86", json=body),
                  "server")
        made["servers"].append(s["id"])
    wait_active(conn, [conn.compute.get_server(i) for i in made["servers"]])


def delete_whole_plan(conn: Any, made: dict[str, list[Any]]) -> None:
    """Remove what ``create_whole_plan`` made (whatever it got to), newest first."""
    for sid in made["servers"]:
        conn.compute.delete_server(sid, ignore_missing=True)
    end = time.monotonic() + 300
    while any(conn.compute.find_server(sid, ignore_missing=True) for sid in made["servers"]):
        assert time.monotonic() < end, "the plan's servers were not deleted within 300 s"
        time.sleep(0.5)
    for vid in made["volumes"]:
        conn.block_storage.delete_volume(vid, ignore_missing=True)
    for fid in made["floating_ips"]:
        conn.network.delete_ip(fid, ignore_missing=True)
    for pid in made["ports"]:
        conn.network.delete_port(pid, ignore_missing=True)
    for rid in made["routers"]:
        for port in conn.network.ports(device_id=rid, device_owner="network:router_interface"):
            conn.network.remove_interface_from_router(rid, port_id=port.id)
        conn.network.delete_router(rid, ignore_missing=True)
    for nid in made["networks"]:
        for port in conn.network.ports(network_id=nid):
            conn.network.delete_port(port, ignore_missing=True)
        conn.network.delete_network(nid, ignore_missing=True)
    for gid in made["security_groups"]:
        conn.network.delete_security_group(gid, ignore_missing=True)
    for gid in made["server_groups"]:
        conn.compute.delete_server_group(gid, ignore_missing=True)
    for name in made["keypairs"]:
        conn.compute.delete_keypair(name, ignore_missing=True)
    for vid in made["volumes"]:
        with contextlib.suppress(Exception):
            conn.block_storage.wait_for_delete(conn.block_storage.get_volume(vid), wait=120)


def empty_made() -> dict[str, list[Any]]:
    return {k: [] for k in ("keypairs", "server_groups", "networks", "routers", "security_groups", "ports",
                            "floating_ips", "volumes", "servers")}
