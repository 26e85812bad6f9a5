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
import math
import os
import re
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import hub_kube
import pytest
import requests

from aiinfn.events import report as rep
from aiinfn.hub import identity, materials
from aiinfn.planning import make_plan
from aiinfn.planning.events import make_event_plan
from aiinfn.planning.labels import EVENT_LABEL, PROJECT_LABEL
from aiinfn.services import event as event_service
from aiinfn.services import jupyterhub

pytestmark = pytest.mark.integration

USERS = "ai-infn/users"
T4 = {"aiinfn.infn.it/accelerator": "T4"}
A100 = {"aiinfn.infn.it/accelerator": "A100-80GB", "aiinfn.infn.it/mig-profile": "1g.10gb"}
V70 = {"aiinfn.infn.it/accelerator": "V70"}
#: The culler's maxAge at this hub: a notebook session ends at the latest this long (plus one culler pass)
#: after it starts, which bounds the expected wait.
SESSION_HOURS = 12
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
        "max_session_hours": SESSION_HOURS,
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


def _progress_admitting(phub: Any, session: Any, kube: hub_kube.Kube, user: str, waiting: str) -> list[str]:
    """The messages of ``user``'s spawn progress until it is ready or failed; Kueue (the stand-in) admits
    the pod once a message says ``waiting``."""
    messages: list[str] = []
    with session.get(f"{phub.url}/hub/api/users/{user}/server/progress", stream=True, timeout=60,
                     headers={"X-XSRFToken": session.cookies.get("_xsrf", "")}) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(str(event.get("message", "")))
                if waiting in messages[-1]:
                    pod = _pod(phub, user)
                    assert pod is not None
                    kube.admit(pod["metadata"]["name"])
                if event.get("ready") or event.get("failed"):
                    break
    return messages


def test_a_spawn_waiting_on_kueue_shows_the_workload_state(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    _, session, _ = _login(phub, iam, "carlo", [USERS])
    saved = list(kube.cluster_queues)
    kube.cluster_queues[:] = [hub_kube.cluster_queue("interactive", {"t4": 8})]
    kube.hold(T4, "t4")
    try:
        r = _post_form(phub, session, "carlo", {"profile": "t4", **_option("t4", "queue", "wait")})
        assert r.status_code == 302, _text(r.text)[:400]
        messages = _progress_admitting(phub, session, kube, "carlo", "waiting in the queue")
        assert any("Kueue (jupyterhub-users): waiting in the queue (Pending): couldn't assign flavors" in m
                   and "insufficient unused quota for nvidia.com/gpu in flavor t4" in m for m in messages), messages
        model = phub.wait_spawn(session, "carlo", timeout=60)
        assert model["servers"][""]["ready"]
    finally:
        kube.release_holds()
        kube.cluster_queues[:] = saved


def _expected_minutes(releases_min: list[float], position: int, bound_min: float) -> int | None:
    """The test's own estimate: the ``position``-th waiter takes the ``position``-th unit released (a
    unit handed to a waiter is released again one session's bound later); inf: no known end."""
    ends = sorted(releases_min)
    start = 0.0
    for _ in range(position):
        start = ends.pop(0)
        if start == float("inf"):
            return None
        ends = sorted([*ends, start + bound_min])
    return math.ceil(start)


def test_a_full_kind_says_the_expected_wait_and_the_waiting_spawn_its_place(phub: Any, iam: Any,
                                                                             kube: hub_kube.Kube) -> None:
    """The cluster state is given through the stand-in Kubernetes endpoint (hub_kube; no API server here):
    T4's 8 units all in use, 6 by notebook sessions admitted at known times (their Workloads in the
    notebooks' namespace), 2 by the lhc-ml batch queue (no known end to the hub), and 2 notebooks already
    waiting. The expected numbers are computed here from the sessions' remaining lives (each mid-minute,
    so the seconds between this test's clock and the hub's cannot change the rounding)."""
    ns = jupyterhub.USERS_NAMESPACE
    now = time.time()
    bound_s = SESSION_HOURS * 3600 + jupyterhub.CULL_EVERY
    left_min = [95.5, 30.5, 400.5, 61.5, 12.5, 250.5]
    saved_q, saved_w = list(kube.cluster_queues), {k: list(v) for k, v in kube.workloads.items()}
    kube.cluster_queues[:] = [hub_kube.cluster_queue("interactive", {"t4": 6}),
                              hub_kube.cluster_queue("lhc-ml", {"t4": 2})]
    admitted = [hub_kube.notebook_workload(f"jupyter-s{i}", ns, T4, "nvidia.com/gpu",
                                           admitted_at=now - bound_s + m * 60, created_at=now - bound_s + m * 60 - 5)
                for i, m in enumerate(left_min)]
    pending = [hub_kube.notebook_workload(f"jupyter-w{i}", ns, T4, "nvidia.com/gpu", admitted_at=None,
                                          created_at=now - 120 + 60 * i) for i in range(2)]
    kube.workloads[ns] = [*admitted, *pending]
    releases = [*left_min, float("inf"), float("inf")]
    third = _expected_minutes(releases, 3, bound_s / 60)
    assert third == 62
    kube.hold(T4, "t4")
    _, session, _ = _login(phub, iam, "pietro", [USERS])
    try:
        form = _text(_form(phub, session, "pietro"))
        assert f"none free now (0 of 8, 2 waiting): wait in the queue (expected wait at most ~{third} min)" in form
        assert f"Wait in the queue (expected wait at most ~{third} min)" in form
        assert 'name="profile-option-cpu--queue"' not in _form(phub, session, "pietro"), "no queue without a kind"
        r = _post_form(phub, session, "pietro", {"profile": "t4"})
        assert f"T4: none of the 8 is free now and 2 notebooks already wait for one. Choose 'Wait in the queue' " \
               f"to wait (expected wait at most ~{third} min)" in _text(r.text)
        # the waiting spawn: its place (after the two waiting before it) and the same bound
        r = _post_form(phub, session, "pietro", {"profile": "t4", **_option("t4", "queue", "wait")})
        assert r.status_code == 302, _text(r.text)[:400]
        messages = _progress_admitting(phub, session, kube, "pietro", "place")
        assert any(f"place 3 in the queue, expected wait at most ~{third} min" in m for m in messages), messages
        phub.api(session, "DELETE", "/users/pietro/server")
        phub.wait_spawn(session, "pietro")
        # every unit held by batch jobs: no bound is known, and the form says so instead of a number
        kube.cluster_queues[:] = [hub_kube.cluster_queue("lhc-ml", {"t4": 8})]
        kube.workloads[ns] = list(pending)
        assert _expected_minutes([float("inf")] * 8, 3, bound_s / 60) is None
        assert "wait in the queue (expected wait unknown (a unit is held with no known end))" in _text(
            _form(phub, session, "pietro"))
    finally:
        kube.release_holds()
        kube.cluster_queues[:] = saved_q
        kube.workloads.clear()
        kube.workloads.update(saved_w)


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


SHIPPED_EVENT = Path(__file__).resolve().parents[2] / "environments" / "events" / "hackathon-example.yaml"


def _register(kube: hub_kube.Kube, name: str, starts: dt.date, ends: dt.date, *,
              roster: bool = False) -> dict[str, Any]:
    """The shipped hackathon's registration at cnaf, as `aiinfn event up` writes it
    (services.event.registration over the shipped site plans), put where the hub reads it; returns its
    ``event.json``. Changed for the test, and only that: the name and groups (one event per test), the
    window (the hub checks it against today), and without ``roster`` a count of 4 participants and 1
    tutor instead of the roster (so the test's IAM users are its participants)."""
    report = rep.build(SHIPPED_EVENT)
    update: dict[str, Any] = {"name": name, "iam_group": f"ai-infn/{name}", "tutors_group": f"ai-infn/{name}-tutors",
                              "starts": starts, "ends": ends}
    if not roster:
        update |= {"roster": None, "participants": 4, "tutors": 1}
    ev = report.event.model_copy(update=update)
    plans = {n: make_plan(e) for n, e in ev.site_environments().items()}
    cm = event_service.registration(ev, plans["cnaf"], make_event_plan(ev, plans).allocations["cnaf"])
    kube.put_configmap(cm)
    return dict(json.loads(cm["data"]["event.json"]))


def _event_slug(doc: dict[str, Any]) -> str:
    return str(doc["profiles"][0]["slug"])


def test_event_participants_log_in_only_in_the_window_and_see_only_its_profiles(phub: Any, iam: Any,
                                                                                 kube: hub_kube.Kube) -> None:
    today = dt.datetime.now(dt.UTC).date()
    doc = _register(kube, "hack-now", today, today + dt.timedelta(days=1))
    _register(kube, "hack-later", today + dt.timedelta(days=2), today + dt.timedelta(days=3))
    _register(kube, "hack-past", today - dt.timedelta(days=3), today - dt.timedelta(days=1))
    slug = _event_slug(doc)
    _, session, r = _login(phub, iam, "olga", ["ai-infn/hack-now"])
    assert r.status_code == 302, r.text
    form = _form(phub, session, "olga")
    assert f'value="{slug}"' in form
    assert 'value="cpu"' not in form and 'value="t4"' not in form, "only the event's profiles"
    model = phub.spawn(session, "olga", {"profile": slug})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, "olga")
    assert pod is not None and pod["metadata"]["namespace"] == "event-hack-now"
    assert pod["metadata"]["labels"][EVENT_LABEL] == "hack-now" and PROJECT_LABEL not in pod["metadata"]["labels"]
    # the home is a claim of the event's namespace, never the platform areas (a tenant namespace)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"home": "claim-olga"}
    assert phub.pvcs()["claim-olga"]["metadata"]["namespace"] == "event-hack-now"
    # the claim records its owner: the archive at teardown reads it as olga (services.event.archive_objects)
    owner = event_service.ArchiveClaim.of(phub.pvcs()["claim-olga"])
    sc = {**pod["spec"]["securityContext"], **(_notebook(pod).get("securityContext") or {})}
    assert (owner.uid, owner.gid) == (sc["runAsUser"], sc["runAsGroup"])
    assert all(m["mountPath"] not in ("/public", "/envs") for m in _notebook(pod)["volumeMounts"])
    # outside the window: before it and after it
    for group in ("ai-infn/hack-later", "ai-infn/hack-past"):
        _, _, refused = _login(phub, iam, f"p{abs(hash(group)) % 1000}", [group])
        assert refused.status_code == 403, group
    # a site user who is no participant never sees an event's profiles
    _, site, _ = _login(phub, iam, "piero", [USERS])
    assert "hack-now" not in _form(phub, site, "piero")


def test_the_shipped_hackathon_seats_a_participant_with_its_profile_and_shm(phub: Any, iam: Any,
                                                                           kube: hub_kube.Kube) -> None:
    """environments/events/hackathon-example.yaml's own roster registration (window moved to today):
    a participant seated at cnaf spawns the profile of their seat, with the event's image, the
    per-participant CPU and memory, one MIG slice on the A100 nodes, and a memory-backed /dev/shm of
    the size the registration gives (the site's sizing default, at most half the memory: 4 GiB of 8),
    not the container runtime's 64 MB; the materials' init container runs its program unaltered; one
    seated at recas has no login here."""
    today = dt.datetime.now(dt.UTC).date()
    doc = _register(kube, "hackathon-2026", today, today + dt.timedelta(days=2), roster=True)
    seated = "arossi"
    slug = doc["assignments"][seated]
    (profile,) = [p for p in doc["profiles"] if p["slug"] == slug]
    assert profile["shm_gb"] == 4
    _, session, r = _login(phub, iam, seated, ["ai-infn/hackathon-2026"])
    assert r.status_code == 302, r.text
    form = _form(phub, session, seated)
    assert f'value="{slug}"' in form and 'value="cpu"' not in form
    model = phub.spawn(session, seated, {"profile": slug})
    assert model["servers"][""]["ready"], model
    pod = _pod(phub, seated)
    assert pod is not None and pod["metadata"]["namespace"] == "event-hackathon-2026"
    nb = _notebook(pod)
    assert nb["image"] == "harbor.cloud.infn.it/ai-infn/hackathon:2026.12"
    assert pod["spec"]["nodeSelector"] == {"aiinfn.infn.it/accelerator": "A100-80GB",
                                           "aiinfn.infn.it/mig-profile": "1g.10gb"}
    assert nb["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert float(nb["resources"]["limits"]["cpu"]) == 2 and int(nb["resources"]["limits"]["memory"]) == 8 * 2**30
    # the materials copy runs first, its program as shipped (KubeSpawner's {field} expansion leaves it alone)
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "aiinfn-materials" and init["command"][2] == Path(materials.__file__).read_text()
    (shm,) = [v for v in pod["spec"]["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in nb["volumeMounts"]
    # the roster seats bleone at recas: no login here through the event
    _, _, elsewhere = _login(phub, iam, "bleone", ["ai-infn/hackathon-2026"])
    assert elsewhere.status_code == 403


def test_tutors_manage_their_participants_servers_only(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    today = dt.datetime.now(dt.UTC).date()
    doc = _register(kube, "hack-tut", today, today)
    _, participant, _ = _login(phub, iam, "rita", ["ai-infn/hack-tut"])
    assert phub.spawn(participant, "rita", {"profile": _event_slug(doc)})["servers"][""]["ready"]
    _, tutor, r = _login(phub, iam, "sara", ["ai-infn/hack-tut-tutors"])
    assert r.status_code == 302
    assert phub.api(tutor, "GET", "/users/rita").status_code == 200
    assert phub.api(tutor, "GET", "/users/piero").status_code in (403, 404)
    assert phub.api(tutor, "DELETE", "/users/rita/server").status_code in (202, 204)
    assert phub.api(tutor, "DELETE", "/users/ivan/server").status_code in (403, 404)
    assert phub.api(tutor, "DELETE", "/users/rita").status_code in (403, 404), "tutors cannot delete users"


def test_a_roster_event_shows_each_participant_their_seat_here_only(phub: Any, iam: Any, kube: hub_kube.Kube) -> None:
    """A roster event's registration (the shipped hackathon's roster) seats each participant at one
    site: one seated elsewhere gets no login here through the event; tutors see every profile."""
    today = dt.datetime.now(dt.UTC).date()
    doc = _register(kube, "hack-seat", today, today, roster=True)
    slug = doc["assignments"]["gbianchi"]
    _, seated, r = _login(phub, iam, "gbianchi", ["ai-infn/hack-seat"])
    assert r.status_code == 302 and f'value="{slug}"' in _form(phub, seated, "gbianchi")
    _, _, elsewhere = _login(phub, iam, "lmartini", ["ai-infn/hack-seat"])
    assert elsewhere.status_code == 403
    _, tutor, r = _login(phub, iam, "vera", ["ai-infn/hack-seat-tutors"])
    assert r.status_code == 302 and f'value="{slug}"' in _form(phub, tutor, "vera")
