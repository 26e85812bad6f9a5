"""Users' identities and areas on a real host's filesystem: the provisioner as the platform runs it.

One Debian host (hostlib, prefix ``hh``, net 10.254.6: its own systemd, its own root filesystem). On it:

* ``aiinfn_identity`` (the hub's table, in a sqlite file on the host) gives hub users their UID/GID and
  home name; two IAM accounts whose names collide once made portable get two identities;
* ``aiinfn-provisioner ensure`` runs as root with only CAP_SETUID and CAP_SETGID (``setpriv``; the
  pod's capabilities): it never needs CAP_CHOWN, CAP_FOWNER or CAP_DAC_OVERRIDE, which is what lets it
  work on an export that squashes root. Homes, group areas, the public area and the managed
  environments' directories are then checked by their owners, groups and modes, and by processes
  running as those users (``setpriv --reuid``) that may or may not write where they should.

Gap: the host serves no NFS (no kernel NFS in these containers), so root squashing itself is not
exercised; the capability set above is what shows the provisioner does not rely on root's powers.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiinfn.hub import identity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HUB = Path(__file__).resolve().parents[3] / "src" / "aiinfn" / "hub"
HOST = "homes"
AREAS = "/export/platform/areas"
PROVISION = ["setpriv", "--bounding-set=-all,+setuid,+setgid", "--inh-caps=-all", "python3",
             "/opt/aiinfn/provisioner.py", "ensure"]


@pytest.fixture(scope="module")
def host(host_image: Path) -> Iterator[Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support" / "hosts"))
    import hostlib

    with hostlib.running([HOST], prefix="hh", net="10.254.6") as hosts:
        opt = hosts.path(HOST, "/opt")
        (opt / "aiinfn").mkdir(parents=True, exist_ok=True)
        for src, dst in (("provisioner.py", "provisioner.py"), ("identity.py", "aiinfn_identity.py")):
            (opt / "aiinfn" / dst).write_text((HUB / src).read_text())
        hosts.exec(HOST, f"install -d -m 0755 /export/platform && install -d -o {identity.AREAS_UID} "
                         f"-g {identity.AREAS_UID} -m 0755 {AREAS} && chmod 0644 /opt/aiinfn/*.py", check=True)
        yield hosts


def _ensure(hosts: Any, request: dict[str, Any]) -> Any:
    hosts.path(HOST, "/opt/aiinfn/request.json").write_text(json.dumps(request))
    return hosts.exec(HOST, ["env", f"AIINFN_AREAS={AREAS}", *PROVISION, "/opt/aiinfn/request.json"])


def _stat(hosts: Any, path: str) -> tuple[int, int, str]:
    out = hosts.exec(HOST, ["stat", "-c", "%u %g %a", path], check=True).stdout.split()
    return int(out[0]), int(out[1]), out[2]


def _as(hosts: Any, uid: int, gids: list[int], cmd: str) -> int:
    groups = ",".join(str(g) for g in gids) if gids else ""
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gids[0] if gids else uid}",
            *(["--groups", groups] if groups else ["--clear-groups"]), "sh", "-c", cmd]
    return int(hosts.exec(HOST, argv).returncode)


def _identities(hosts: Any) -> dict[str, Any]:
    """Bind three hub users (two collide once portable) and their groups in the hub's table, on the host."""
    script = """
import json, sys
sys.path.insert(0, "/opt/aiinfn")
from aiinfn_identity import Identities
ids = Identities("/opt/aiinfn/identities.sqlite")
out = {}
for sub, name in [("sub-anna", "anna"), ("sub-mr1", "mario.rossi@cern"), ("sub-mr2", "mario.rossi+cern")]:
    assert ids.bind(sub, name)
    p = ids.posix(name)
    out[name] = {"uid": p.uid, "gid": p.gid, "home": p.home}
for g in ("ai-infn/lhc", "ai-infn/admins", "ai-infn/ml-ops"):
    out[g] = dict(zip(("gid", "area"), ids.group_gid(g)))
again = Identities("/opt/aiinfn/identities.sqlite").posix("anna")
out["again"] = {"uid": again.uid, "home": again.home}
print(json.dumps(out))
"""
    return dict(json.loads(hosts.exec(HOST, ["python3", "-c", script], check=True).stdout))


def test_identities_are_stable_collision_free_and_recorded(host: Any) -> None:
    ids = _identities(host)
    anna, m1, m2 = ids["anna"], ids["mario.rossi@cern"], ids["mario.rossi+cern"]
    assert anna["home"] == "anna" and anna["uid"] == anna["gid"] == ids["again"]["uid"]
    assert anna["uid"] == identity.derived("aiinfn-uid:sub-anna", identity.UID_BASE, identity.UID_SPAN)
    # the two Marios reduce to the same portable name: they still get two UIDs and two homes
    assert identity.portable("mario.rossi@cern") == identity.portable("mario.rossi+cern") == "mario.rossi-cern"
    assert m1["uid"] != m2["uid"] and m1["home"] != m2["home"]
    assert m1["home"] == f"mario.rossi-cern-{m1['uid']}" and m2["home"] == f"mario.rossi-cern-{m2['uid']}"
    assert ids["ai-infn/lhc"]["area"] == "ai-infn.lhc" and ids["ai-infn/lhc"]["gid"] >= identity.GID_BASE
    db = host.path(HOST, "/opt/aiinfn/identities.sqlite")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM posix").fetchone()[0] == 3


def test_homes_group_areas_public_and_environments_on_the_filesystem(host: Any) -> None:
    ids = _identities(host)
    anna, mario, lhc = ids["anna"], ids["mario.rossi@cern"], ids["ai-infn/lhc"]
    admins, mlops = ids["ai-infn/admins"], ids["ai-infn/ml-ops"]
    platform = {"public_gid": admins["gid"], "envs": [{"name": "torch", "gid": mlops["gid"]}]}
    for user in (anna, mario):
        r = _ensure(host, {"user": {"home": user["home"], "uid": user["uid"], "gid": user["gid"]},
                           "groups": [{"area": lhc["area"], "gid": lhc["gid"]}] if user is anna else [], **platform})
        assert r.returncode == 0, r.stderr
    assert _stat(host, f"{AREAS}/home/anna") == (anna["uid"], anna["uid"], "700")
    assert _stat(host, f"{AREAS}/home/{mario['home']}") == (mario["uid"], mario["uid"], "700")
    assert _stat(host, f"{AREAS}/shared/ai-infn.lhc") == (identity.AREAS_UID, lhc["gid"], "2770")
    assert _stat(host, f"{AREAS}/public") == (identity.AREAS_UID, admins["gid"], "2775")
    assert _stat(host, f"{AREAS}/envs/torch") == (identity.AREAS_UID, mlops["gid"], "2775")
    home, shared = f"{AREAS}/home/anna", f"{AREAS}/shared/ai-infn.lhc"
    # anna writes her home and her group's area; mario (not in the group) reads neither
    assert _as(host, anna["uid"], [anna["uid"], lhc["gid"]], f"echo x > {home}/a && echo y > {shared}/f") == 0
    assert _as(host, mario["uid"], [mario["uid"]], f"cat {home}/a") != 0
    assert _as(host, mario["uid"], [mario["uid"]], f"ls {shared}") != 0
    # a file made in the group area stays the group's (setgid), so the next member can change it
    assert _stat(host, f"{shared}/f")[1] == lhc["gid"]
    # the public area: everyone reads, only the admins' group writes; environments: only maintainers
    assert _as(host, anna["uid"], [anna["uid"]], f"touch {AREAS}/public/p") != 0
    assert _as(host, 300_000, [300_000, admins["gid"]], f"touch {AREAS}/public/p && cat {AREAS}/public/p") == 0
    assert _as(host, anna["uid"], [anna["uid"]], f"ls {AREAS}/public && touch {AREAS}/envs/torch/x") != 0
    assert _as(host, 300_001, [300_001, mlops["gid"]], f"mkdir {AREAS}/envs/torch/2026") == 0


def test_provisioning_is_idempotent_and_refuses_what_it_must_not_fix(host: Any) -> None:
    ids = _identities(host)
    anna, lhc = ids["anna"], ids["ai-infn/lhc"]
    request = {"user": {"home": "anna", "uid": anna["uid"], "gid": anna["uid"]},
               "groups": [{"area": lhc["area"], "gid": lhc["gid"]}], "public_gid": ids["ai-infn/admins"]["gid"]}
    assert _ensure(host, request).returncode == 0
    host.exec(HOST, f"chmod 0755 {AREAS}/home/anna && echo keep > {AREAS}/home/anna/notes", check=True)
    before = host.exec(HOST, f"find {AREAS} -printf '%p %u %g %m %s\\n' | sort", check=True).stdout
    assert _ensure(host, request).returncode == 0
    after = host.exec(HOST, f"find {AREAS} -printf '%p %u %g %m %s\\n' | sort", check=True).stdout
    assert after == before.replace(f"{AREAS}/home/anna {anna['uid']} {anna['uid']} 755",
                                   f"{AREAS}/home/anna {anna['uid']} {anna['uid']} 700"), "only the mode is put back"
    assert host.read(HOST, f"{AREAS}/home/anna/notes") == b"keep\n", "contents are never touched"
    # a home that belongs to someone else is refused, in one line, and left as it is
    host.exec(HOST, f"install -d -o 250000 -g 250000 -m 0700 {AREAS}/home/squatted", check=True)
    bad = _ensure(host, {"user": {"home": "squatted", "uid": anna["uid"], "gid": anna["uid"]}})
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "belongs to uid 250000" in bad.stderr
    assert _stat(host, f"{AREAS}/home/squatted") == (250000, 250000, "700")
    # values that are not data are refused before anything is made
    for req, msg in (({"user": {"home": "../etc", "uid": anna["uid"], "gid": anna["uid"]}}, "not a portable name"),
                     ({"user": {"home": "root", "uid": 0, "gid": 0}}, "outside the users' range"),
                     ({"groups": [{"area": "x", "gid": 100}]}, "outside the groups' range")):
        r = _ensure(host, req)
        assert r.returncode == 1 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not host.exists(HOST, f"{AREAS}/etc") and not host.exists(HOST, f"{AREAS}/home/root")
