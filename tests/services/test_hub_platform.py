"""The researcher's side of the real hub: live availability, a full kind, Kueue's queue, the project
charged, sizing, custom images, the user's UID and areas, and events' logins and profiles.

The cnaf site's hub (its values as the overlay deploys them, run by the chart's own
jupyterhub_config.py; tests/support/hub) with:

* the Kubernetes reads through a stand-in API (hub_kube): nodes, ClusterQueues and Workloads as the
  tests set them, event registration ConfigMaps as services/event.py writes them; the spawner's pod
  creation recorded (no API server here), a held pod kept Pending until the test admits it;
* the areas provisioner for real (aiinfn/hub/provisioner.py, CAP_SETUID/CAP_SETGID only) on a real
  directory: homes and group areas are checked on the filesystem.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import sqlite3
import stat
import time
from typing import Any

import hub_kube
import pytest
import requests

from aiinfn.hub import identity
from aiinfn.planning.labels import EVENT_LABEL, HUB_REGISTRATION_LABEL, PROJECT_LABEL
from aiinfn.services import jupyterhub

pytestmark = pytest.mark.integration

USERS = "ai-infn/users"
T4 = {"aiinfn.infn.it/accelerator": "T4"}
A100 = {"aiinfn.infn.it/accelerator": "A100-80GB", "aiinfn.infn.it/mig-profile": "1g.10gb"}
V70 = {"aiinfn.infn.it/accelerator": "V70"}
TEAM_IMAGE = "harbor.ai-infn.cloud.cnaf.infn.it/environments/lhc-lab:2026.11"


@pytest.fixture(scope="module")
def phub(hub_factory: Any, site_hub_values: Any, kube: hub_kube.Kube) -> Any:
    """cnaf, with larger sizes for the LHC group and custom images for it (environment overrides)."""
    values = site_hub_values("cnaf", {"services": {"jupyterhub": {
        "hostname": "hub.ai-infn.cloud.cnaf.infn.it",
        "default_image": "harbor.cloud.infn.it/ai-infn/ai-infn-lab:2026.11",
        "images": {"lab": "harbor.cloud.infn.it/ai-infn/ai-infn-lab:2026.11",
                   "torch": "harbor.cloud.infn.it/ai-infn/ai-infn-torch:2026.11"},
        "user_placeholders": 2,
        "sizing": {"default": {"max_cpu": 8, "max_memory_gb": 32, "max_shm_gb": 8},
                   "groups": {"ai-infn/lhc": {"max_cpu": 32, "max_memory_gb": 128, "max_shm_gb": 32}}},
        "custom_images": {"groups": ["ai-infn/lhc"], "projects": ["environments"]},
    }}})
    kube.nodes[:] = [
        hub_kube.node("gpu-t4-01", T4, {"nvidia.com/gpu": "4"}),
        hub_kube.node("gpu-t4-02", T4, {"nvidia.com/gpu": "4"}),
        # cordoned, and an interLink virtual node that says it has T4s: neither is a notebook's
        hub_kube.node("gpu-t4-03", T4, {"nvidia.com/gpu": "4"}, unschedulable=True),
        hub_kube.node("interlink-leonardo", T4, {"nvidia.com/gpu": "64"},
                      taints=[{"key": "virtual-node.interlink/no-schedule", "value": "true",
                               "effect": "NoSchedule"}]),
        hub_kube.node("gpu-a100-01", A100, {"nvidia.com/gpu": "28"}),
        *(hub_kube.node(f"fpga-v70-0{i}", {**V70, "aiinfn.infn.it/reserved-for": "ai-infn.fpga"},
                        {"amd.com/xilinx-v70": "1"}) for i in (1, 2)),
    ]
    kube.cluster_queues[:] = [hub_kube.cluster_queue("interactive", {"t4": 2, "a100-80gb-1g.10gb": 20}),
                              hub_kube.cluster_queue("lhc-ml", {"t4": 1})]
    return hub_factory(values)


def _login(hub: Any, iam: Any, name: str, groups: list[str]) -> tuple[Any, requests.Session, requests.Response]:
    user = iam.add_user(name, groups)
    session, r = hub.login(user.sub, iam.url)
    return user, session, r


def _form(hub: Any, session: requests.Session, name: str) -> str:
    return str(session.get(f"{hub.url}/hub/spawn/{name}", timeout=30).text)


def _post_form(hub: Any, session: requests.Session, name: str, form: dict[str, str]) -> requests.Response:
    session.get(f"{hub.url}/hub/spawn/{name}", timeout=30)
    data = {"_xsrf": session.cookies.get("_xsrf", ""), **form}
    return session.post(f"{hub.url}/hub/spawn/{name}", data=data, timeout=60, allow_redirects=False)


def _pod(hub: Any, name: str) -> dict[str, Any] | None:
    pods = [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == name]
    return pods[-1] if pods else None


def _option(slug: str, option: str, value: str) -> dict[str, str]:
    return {f"profile-option-{slug}--{option}": value}


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


# --------------------------------------------------------------------------- availability


def test_the_form_shows_free_and_total_units_from_the_cluster(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    _, session, r = _login(phub, iam, "anna", [USERS])
    assert r.status_code == 302
    text = _text(_form(phub, session, "anna"))
    # T4: 2 usable nodes of 4 (the cordoned and the virtual one are not counted), 3 in use (2 + 1)
    assert "one T4; 5 of 8 free now" in text
    assert "one 1g.10gb MIG slice of an A100-80GB; 8 of 28 free now" in text
    assert "V70" not in text, "nodes reserved for another group are not shown"
    _, fpga, _ = _login(phub, iam, "filo", [USERS, "ai-infn/fpga"])
    assert "one V70; 2 of 2 free now" in _text(_form(phub, fpga, "filo"))
    assert not kube.unknown, kube.unknown


def test_a_full_kind_is_answered_at_once_with_the_choices(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    _, session, _ = _login(phub, iam, "berto", [USERS])
    saved = list(kube.cluster_queues)
    kube.cluster_queues[:] = [hub_kube.cluster_queue("interactive", {"t4": 8, "a100-80gb-1g.10gb": 20})]
    try:
        assert "none free now (0 of 8)" in _text(_form(phub, session, "berto"))
        started = time.monotonic()
        r = _post_form(phub, session, "berto", {"profile": "t4"})
        answer = _text(r.text)
        assert time.monotonic() - started < 10
        assert "T4: none of the 8 is free now" in answer and "Wait in the queue" in answer
        assert "A100-80GB/1g.10gb (8 free)" in answer, "another kind with free units is offered"
        assert _pod(phub, "berto") is None, "nothing was created"
    finally:
        kube.cluster_queues[:] = saved


def test_a_spawn_waiting_on_kueue_shows_the_workload_state(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    _, session, _ = _login(phub, iam, "carlo", [USERS])
    saved = list(kube.cluster_queues)
    kube.cluster_queues[:] = [hub_kube.cluster_queue("interactive", {"t4": 8})]
    kube.hold(T4, "t4")
    try:
        r = _post_form(phub, session, "carlo", {"profile": "t4", **_option("t4", "queue", "wait")})
        assert r.status_code == 302, _text(r.text)[:400]
        messages: list[str] = []
        with session.get(f"{phub.url}/hub/api/users/carlo/server/progress", stream=True, timeout=60,
                         headers={"X-XSRFToken": session.cookies.get("_xsrf", "")}) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    messages.append(str(event.get("message", "")))
                    if "waiting in the queue" in messages[-1]:
                        pod = _pod(phub, "carlo")
                        assert pod is not None
                        kube.admit(pod["metadata"]["name"])
                    if event.get("ready") or event.get("failed"):
                        break
        assert any("Kueue (jupyterhub-users): waiting in the queue (Pending): couldn't assign flavors" in m
                   and "insufficient unused quota for nvidia.com/gpu in flavor t4" in m for m in messages), messages
        model = phub.wait_spawn(session, "carlo", timeout=60)
        assert model["servers"][""]["ready"]
    finally:
        kube.release_holds()
        kube.cluster_queues[:] = saved


# --------------------------------------------------------------------------- attribution


def test_the_notebook_carries_the_project_its_user_chose(phub: Any, iam: Any) -> None:
    _, session, _ = _login(phub, iam, "dora", [USERS, "ai-infn/lhc", "ai-infn/theory"])
    form = _form(phub, session, "dora")
    assert 'value="lhc-ml"' in form and 'value="theory"' in form and 'value="astro"' not in form
    model = phub.spawn(session, "dora", {"profile": "cpu", **_option("cpu", "project", "theory")})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, "dora")
    assert pod is not None and pod["metadata"]["labels"][PROJECT_LABEL] == "theory"
    assert pod["metadata"]["namespace"] == jupyterhub.USERS_NAMESPACE
    phub.api(session, "DELETE", "/users/dora/server")
    phub.wait_spawn(session, "dora")
    # default: the first of their projects
    phub.spawn(session, "dora", {"profile": "cpu"})
    pod = _pod(phub, "dora")
    assert pod is not None and pod["metadata"]["labels"][PROJECT_LABEL] == "lhc-ml"


def test_a_project_the_user_is_not_in_is_refused_before_the_pod(phub: Any, iam: Any) -> None:
    _, session, _ = _login(phub, iam, "enzo", [USERS, "ai-infn/lhc"])
    r = _post_form(phub, session, "enzo", {"profile": "cpu", **_option("cpu", "project", "astro")})
    assert "'astro' is not one of yours" in _text(r.text)
    # through the REST API too
    api = phub.api(session, "POST", "/users/enzo/server", json={"profile": "cpu", "project": "astro"})
    if api.status_code < 400:
        model = phub.wait_spawn(session, "enzo")
        assert not model["servers"]
    assert _pod(phub, "enzo") is None
    _, s2, _ = _login(phub, iam, "ferro", [USERS])
    phub.spawn(s2, "ferro", {"profile": "cpu"})
    pod = _pod(phub, "ferro")
    assert pod is not None and pod["metadata"]["labels"][PROJECT_LABEL] == jupyterhub.NO_PROJECT


# --------------------------------------------------------------------------- sizing and images


def _notebook(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def test_cpu_memory_and_shm_within_the_groups_limits(phub: Any, iam: Any) -> None:
    _, small, _ = _login(phub, iam, "gaia", [USERS])
    form = _form(phub, small, "gaia")
    assert 'value="8"' in form and 'value="16"' not in form.split("profile-option-cpu--cpu")[1].split("</select>")[0]
    r = _post_form(phub, small, "gaia", {"profile": "cpu", **_option("cpu", "cpu", "32")})
    assert "'32' is not one of yours" in _text(r.text) and _pod(phub, "gaia") is None
    r = _post_form(phub, small, "gaia", {"profile": "cpu", **_option("cpu", "memory", "4"),
                                         **_option("cpu", "shm", "8")})
    assert "/dev/shm (8 GB) cannot exceed the memory (4 GB)" in _text(r.text)
    _, big, _ = _login(phub, iam, "ivan", [USERS, "ai-infn/lhc"])
    model = phub.spawn(big, "ivan", {"profile": "cpu", **_option("cpu", "cpu", "32"), **_option("cpu", "memory", "128"),
                                      **_option("cpu", "shm", "16")})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, "ivan")
    assert pod is not None
    res = _notebook(pod)["resources"]
    assert res["limits"]["cpu"] == "32" or float(res["limits"]["cpu"]) == 32
    assert int(res["limits"]["memory"]) == int(res["requests"]["memory"]) == 128 * 2**30
    (shm,) = [v for v in pod["spec"]["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _notebook(pod)["volumeMounts"]


def test_custom_images_only_for_the_groups_allowed_and_only_from_the_registry(phub: Any, iam: Any) -> None:
    _, lhc, _ = _login(phub, iam, "luca", [USERS, "ai-infn/lhc"])
    elsewhere = "docker.io/someone/miner:latest"
    r = _post_form(phub, lhc, "luca", {"profile": "cpu", **_option("cpu", "image", "unlisted-choice"),
                                       "profile-option-cpu--image--unlisted-choice": elsewhere})
    assert "is not an image of the platform's registry projects environments" in _text(r.text)
    model = phub.spawn(lhc, "luca", {"profile": "cpu", "profile-option-cpu--image--unlisted-choice": TEAM_IMAGE})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, "luca")
    assert pod is not None and _notebook(pod)["image"] == TEAM_IMAGE
    _, other, _ = _login(phub, iam, "mina", [USERS])
    r = _post_form(phub, other, "mina", {"profile": "cpu", "profile-option-cpu--image--unlisted-choice": TEAM_IMAGE})
    assert "only the groups allowed a custom image may name one" in _text(r.text)
    assert _pod(phub, "mina") is None


# --------------------------------------------------------------------------- identity and areas


def test_the_notebook_runs_as_the_users_own_uid_with_private_home_and_group_area(phub: Any, iam: Any,
                                                                                 areas: Any) -> None:
    _, session, _ = _login(phub, iam, "nora", [USERS, "ai-infn/lhc"])
    model = phub.spawn(session, "nora", {"profile": "cpu"})
    assert model["servers"][""]["ready"], model
    db = next(p for p in phub.files() if p.name == "identities.sqlite")
    with sqlite3.connect(db) as con:
        ((uid, home),) = con.execute("SELECT uid, home FROM posix JOIN identities USING (sub) "
                                     "WHERE name = 'nora'").fetchall()
        ((gid, area),) = con.execute("SELECT gid, area FROM posix_groups WHERE name = 'ai-infn/lhc'").fetchall()
    assert identity.UID_BASE <= uid < identity.UID_BASE + identity.UID_SPAN and home == "nora"
    pod = _pod(phub, "nora")
    assert pod is not None
    sc = {**pod["spec"]["securityContext"], **(_notebook(pod).get("securityContext") or {})}
    assert sc["runAsUser"] == uid and sc["runAsGroup"] == uid and sc["fsGroup"] == uid
    assert gid in sc["supplementalGroups"]
    mounts = {m["mountPath"]: m for m in _notebook(pod)["volumeMounts"]}
    assert mounts["/home/jovyan"]["subPath"] == "home/nora"
    assert mounts[f"/shared/{area}"]["subPath"] == f"shared/{area}" and mounts["/public"]["readOnly"] is True
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims["home"] == jupyterhub.AREAS_CLAIM
    # the provisioner made them on the real filesystem before the pod existed
    st = os.stat(areas.root / "home" / "nora")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, uid, 0o700)
    st = os.stat(areas.root / "shared" / area)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (identity.AREAS_UID, gid, 0o2770)


# --------------------------------------------------------------------------- events


def _register(kube: hub_kube.Kube, name: str, starts: dt.date, ends: dt.date,
              assignments: dict[str, str] | None = None) -> None:
    group, tutors = f"ai-infn/{name}", f"ai-infn/{name}-tutors"
    doc = {"event": name, "groups": [group, tutors], "admin_groups": [tutors], "starts": starts.isoformat(),
           "ends": ends.isoformat(), "namespace": f"event-{name}", "profiles": [{
               "display_name": f"{name}: T4", "slug": f"{name}-t4", "description": f"{name}: one T4",
               "kubespawner_override": {"namespace": f"event-{name}", "image": "harbor.cloud.infn.it/ai-infn/hack:1",
                                        "node_selector": T4, "extra_resource_limits": {"nvidia.com/gpu": "1"},
                                        "extra_labels": {"kueue.x-k8s.io/queue-name": "default"}}}],
           "site": "cnaf", "assignments": assignments or {}}
    kube.put_configmap({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": f"aiinfn-event-{name}", "namespace": "jupyterhub",
                                     "labels": {HUB_REGISTRATION_LABEL: "event", EVENT_LABEL: name}},
                        "data": {"event.json": json.dumps(doc)}})


def test_event_participants_log_in_only_in_the_window_and_see_only_its_profiles(phub: Any, iam: Any,
                                                                                 kube: hub_kube.Kube) -> None:
    today = dt.datetime.now(dt.UTC).date()
    _register(kube, "hack-now", today, today + dt.timedelta(days=1))
    _register(kube, "hack-later", today + dt.timedelta(days=2), today + dt.timedelta(days=3))
    _register(kube, "hack-past", today - dt.timedelta(days=3), today - dt.timedelta(days=1))
    _, session, r = _login(phub, iam, "olga", ["ai-infn/hack-now"])
    assert r.status_code == 302, r.text
    form = _form(phub, session, "olga")
    assert 'value="hack-now-t4"' in form
    assert 'value="cpu"' not in form and 'value="t4"' not in form, "only the event's profiles"
    model = phub.spawn(session, "olga", {"profile": "hack-now-t4"})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, "olga")
    assert pod is not None and pod["metadata"]["namespace"] == "event-hack-now"
    assert pod["metadata"]["labels"][EVENT_LABEL] == "hack-now" and PROJECT_LABEL not in pod["metadata"]["labels"]
    # the home is a claim of the event's namespace, never the platform areas (a tenant namespace)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"home": "claim-olga"}
    assert phub.pvcs()["claim-olga"]["metadata"]["namespace"] == "event-hack-now"
    assert all(m["mountPath"] not in ("/public", "/envs") for m in _notebook(pod)["volumeMounts"])
    # outside the window: before it and after it
    for group in ("ai-infn/hack-later", "ai-infn/hack-past"):
        _, _, refused = _login(phub, iam, f"p{abs(hash(group)) % 1000}", [group])
        assert refused.status_code == 403, group
    # a site user who is no participant never sees an event's profiles
    _, site, _ = _login(phub, iam, "piero", [USERS])
    assert "hack-now" not in _form(phub, site, "piero")


def test_tutors_manage_their_participants_servers_only(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    today = dt.datetime.now(dt.UTC).date()
    _register(kube, "hack-tut", today, today)
    _, participant, _ = _login(phub, iam, "rita", ["ai-infn/hack-tut"])
    assert phub.spawn(participant, "rita", {"profile": "hack-tut-t4"})["servers"][""]["ready"]
    _, tutor, r = _login(phub, iam, "sara", ["ai-infn/hack-tut-tutors"])
    assert r.status_code == 302
    assert phub.api(tutor, "GET", "/users/rita").status_code == 200
    assert phub.api(tutor, "GET", "/users/piero").status_code in (403, 404)
    assert phub.api(tutor, "DELETE", "/users/rita/server").status_code in (202, 204)
    assert phub.api(tutor, "DELETE", "/users/ivan/server").status_code in (403, 404)
    assert phub.api(tutor, "DELETE", "/users/rita").status_code in (403, 404), "tutors cannot delete users"


def test_a_roster_event_shows_each_participant_their_seat_here_only(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    """A roster event's registration seats each participant at one site: one seated elsewhere gets no
    login here through the event; tutors see every profile."""
    today = dt.datetime.now(dt.UTC).date()
    _register(kube, "hack-seat", today, today, {"tea": "hack-seat-t4"})
    _, seated, r = _login(phub, iam, "tea", ["ai-infn/hack-seat"])
    assert r.status_code == 302 and 'value="hack-seat-t4"' in _form(phub, seated, "tea")
    _, _, elsewhere = _login(phub, iam, "ugo-b", ["ai-infn/hack-seat"])
    assert elsewhere.status_code == 403
    _, tutor, r = _login(phub, iam, "vera", ["ai-infn/hack-seat-tutors"])
    assert r.status_code == 302 and 'value="hack-seat-t4"' in _form(phub, tutor, "vera")
