"""The batch service for real: the real hub's tokens, the official Kubernetes client, every object judged.

One hub per module (the cnaf site with ``services.batch`` and two offload targets, through the harness
of tests/support/hub: the chart's own jupyterhub_config.py, the IAM stand-in), the batch service started
as the cluster starts it (the ConfigMap's files as the package ``aiinfn_batch``, ``python3 -m
aiinfn_batch.service``, the settings the bundle writes, its hub API token through the hub's
``aiinfn-batch`` registration) and users calling it with their servers' own JupyterHub tokens.

Gaps, named once: no Kubernetes API server runs here. The service's calls go through the official
``kubernetes`` client to the stand-in endpoint of tests/support/kube (records, answers, enforces
nothing it cannot); every object the service created is then validated with kubernetes-validate
against the Kubernetes 1.33 OpenAPI schemas (strict: unknown fields refused) and checked for the Kueue
queue label, the batch priority, the owner and the namespace; every request the service made is judged
against the RBAC rules its bundle binds in that namespace. No Kueue controller runs: Workloads and pods
appear only where a test adds them (Kueue's state as it would report it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pod_security
import pytest
import requests
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.batch import jobs
from aiinfn.config.loader import load_site
from aiinfn.planning import labels as lb
from aiinfn.planning import make_plan
from aiinfn.services import batch, event, jupyterhub, site_bundles

KUBE = Path(__file__).resolve().parents[1] / "support" / "kube"
if str(KUBE) not in sys.path:
    sys.path.insert(0, str(KUBE))

import kube_standin  # noqa: E402 - found through KUBE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USERS = "ai-infn/users"
LHC = "ai-infn/lhc"
THEORY = "ai-infn/theory"
MAX_JOBS = 3
OVERRIDES: dict[str, Any] = {
    "services": {"batch": {"max_jobs_per_user": MAX_JOBS, "max_time_hours": 48}},
    "offload": {"targets": {
        "leonardo": {
            "kind": "slurm", "endpoint": "https://interlink.leonardo.example.org",
            "auth": {"type": "oidc", "client_id": "ai-infn-vk", "client_secret": "leonardo-vk-secret",
                     "refresh_token_secret": "leonardo-vk-refresh"},
            "cpu": 512, "memory_gb": 2048, "accelerators": {"A100-40GB": 16},
            "limits": {"max_wall_time_hours": 24, "max_cpu": 64},
        },
    }},
}
#: Events registered at the site, as their stacks register them with the hub (services.event.registration's
#: event.json): "school" open today (UTC), "spring" over.
SCHOOL = "ai-infn/school-2026"
TUTORS = "ai-infn/school-2026-tutors"
SPRING = "ai-infn/spring-2026"
TODAY = dt.datetime.now(dt.UTC).date()
EVENTS = {
    "school": {"groups": [SCHOOL, TUTORS], "admin_groups": [TUTORS], "starts": TODAY - dt.timedelta(days=1),
               "ends": TODAY + dt.timedelta(days=1), "kinds": ["T4"]},
    "spring": {"groups": [SPRING], "admin_groups": [], "starts": TODAY - dt.timedelta(days=10),
               "ends": TODAY - dt.timedelta(days=5), "kinds": ["T4"]},
}
API_TOKEN = "batch-service-hub-token-4d1e"
#: The NFS node's address as the stack would render it into the areas' volume.
AREAS_SERVER = "10.200.0.20"
SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = "import sys\nprint('training', sys.argv[1:])\n"


class Service:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def call(self, token: str | None, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("batch-env") / "cnaf-batch.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump({"extends": str(ROOT / "environments" / "cnaf.yaml"), **OVERRIDES}, f)
    return make_plan(load_site(path))


def registration(name: str) -> dict[str, Any]:
    """An event's registration ConfigMap in the hub's namespace, with the keys and layout
    services.event.registration writes."""
    e = EVENTS[name]
    doc = {"event": name, "groups": e["groups"], "admin_groups": e["admin_groups"],
           "starts": e["starts"].isoformat(), "ends": e["ends"].isoformat(), "namespace": f"event-{name}",
           "profiles": [{"display_name": f"{name}: {k}", "slug": f"{name}-{jupyterhub.profile_slug(k)}",
                         "kubespawner_override": {"namespace": f"event-{name}"}} for k in e["kinds"]],
           "site": "cnaf", "assignments": {}, "materials": None}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"aiinfn-event-{name}", "namespace": jupyterhub.NAMESPACE,
                         "labels": {lb.HUB_REGISTRATION_LABEL: "event", lb.EVENT_LABEL: name}},
            "data": {"event.json": json.dumps(doc, indent=2, sort_keys=True)}}


@pytest.fixture(scope="module")
def api(plan: Any) -> Iterator[kube_standin.Api]:
    namespaces = {q.namespace for q in plan.quotas} | {jupyterhub.NAMESPACE} | {f"event-{n}" for n in EVENTS}
    with kube_standin.running_api(namespaces) as stand_in:
        for name in EVENTS:
            stand_in.put("configmaps", registration(name))
        stand_in.put("persistentvolumes", _areas_volume(plan))
        # something else of the hub's namespace the service must not take for a registration
        stand_in.put("configmaps", {"metadata": {"name": "hub", "namespace": jupyterhub.NAMESPACE},
                                    "data": {"event.json": json.dumps({**json.loads(
                                        registration("school")["data"]["event.json"]), "event": "rogue"})}})
        yield stand_in


@pytest.fixture(scope="module")
def hub(hub_factory: Any, plan: Any) -> Any:
    (release,) = [r for b in site_bundles(plan) for r in b.releases if r.chart == "jupyterhub"]
    return hub_factory(json.loads(json.dumps(release.values)),
                       cluster_secrets={(jupyterhub.BATCH_TOKEN_SECRET, jupyterhub.BATCH_TOKEN_KEY): API_TOKEN})


@pytest.fixture(scope="module")
def service(plan: Any, api: kube_standin.Api, hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service as its Deployment runs it: the ConfigMap's items at their paths, the Deployment's env."""
    work = tmp_path_factory.mktemp("batch-service")
    objs = batch.objects(plan)
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    for item in volume["configMap"]["items"]:
        target = work / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(cm["data"][item["key"]])
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    url = hub.service_urls[jupyterhub.BATCH_SERVICE]
    env.update({
        "PYTHONPATH": str(work), "AIINFN_BATCH_SETTINGS": str(work / "settings.json"),
        "AIINFN_BATCH_API_TOKEN_FILE": "", "JUPYTERHUB_API_TOKEN": API_TOKEN,
        "JUPYTERHUB_API_URL": hub.hub_url + "/hub/api", "JUPYTERHUB_SERVICE_URL": url,
        "AIINFN_BATCH_BIND": "127.0.0.1", "KUBECONFIG": str(api.kubeconfig(work / "kubeconfig")),
        "PATH": os.environ["PATH"], "HOME": str(work),
    })
    log = work / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *container["command"][1:]], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    svc = Service(url + batch.PREFIX, proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(svc.url + "health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the batch service did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.1)
    yield svc
    proc.terminate()
    proc.wait(timeout=15)


def _user(hub: Any, iam: Any, name: str, groups: list[str]) -> str:
    """Log ``name`` in, start their notebook, and return the server's own token (what the client uses)."""
    user = iam.add_user(name, groups)
    session, r = hub.login(user.sub, iam.url)
    assert r.status_code == 302, r.text
    assert hub.spawn(session, name, {"profile": "cpu"})["servers"][""]["ready"]
    hub._sessions = {**getattr(hub, "_sessions", {}), name: session}
    (pod,) = [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == name]
    (nb,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return str(next(e["value"] for e in nb["env"] if e["name"] == "JUPYTERHUB_API_TOKEN"))


def _body(**kw: Any) -> dict[str, Any]:
    return {"project": "lhc-ml", "script": {"name": "train.py", "content": SCRIPT}, "cpu": 4, "memory": "16G",
            "time": "4h", **kw}


def _jobs(api: kube_standin.Api) -> list[dict[str, Any]]:
    return [o for o in api.created if o["kind"] == "Job"]


def _assert_valid(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)


# --------------------------------------------------------------------------- submit


def test_a_user_submits_to_their_projects_queue(service: Service, api: kube_standin.Api, hub: Any, iam: Any,
                                                plan: Any) -> None:
    token = _user(hub, iam, "alba", [USERS, LHC])
    r = service.call(token, "POST", "api/jobs", json=_body(gpu="A100-80GB/1g.10gb", args=["--epochs", "3"]))
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["project"] == "lhc-ml" and answer["state"] == "queued"
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == answer["name"]]
    _assert_valid(job)
    labels = plan_labels()
    meta, spec = job["metadata"], job["spec"]
    assert meta["namespace"] == "lhc-ml"
    assert meta["labels"][labels["queue"]] == "default" and meta["labels"][labels["priority"]] == "batch"
    assert meta["labels"][labels["owner"]] == "alba" and meta["annotations"][labels["owner_annotation"]] == "alba"
    assert spec["suspend"] is True and spec["activeDeadlineSeconds"] == 4 * 3600
    pod = spec["template"]["spec"]
    assert pod_security.violations(pod) == []
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    wanted = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert c["resources"]["requests"] == c["resources"]["limits"] == wanted
    assert c["args"] == ["--epochs", "3"] and c["image"] == plan.env.services.jupyterhub.default_image
    kind = plan.capacity["A100-80GB/1g.10gb"].kind
    assert pod["nodeSelector"] == kind.node_labels and "tolerations" not in pod  # Kueue adds the flavor's
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "NotIn",
                                         "values": ["interlink-leonardo"]}]
    # the home: alba's notebook home (the directory her notebook pod mounts), as her notebook's UID/GID
    notebook = _notebook_pod(hub, "alba")
    nb_home = _notebook_home(notebook)
    uid, gid, fs_group = _notebook_ids(notebook)
    assert uid >= 200_000, "the platform spawner gives every user a UID of their own"
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"],
            pod["securityContext"]["fsGroup"]) == (uid, gid, fs_group)
    assert not {"runAsUser", "runAsGroup"} & set(c["securityContext"]), "no container runs as anyone else"
    (home,) = [v for v in pod["volumes"] if v["name"] == "home"]
    claim = home["persistentVolumeClaim"]["claimName"]
    assert claim == f"aiinfn-home-{uid}"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "home"]
    assert mount["mountPath"] == nb_home["mountPath"] == batch.HOME_MOUNT and "subPath" not in mount
    (pvc,) = [o for o in api.created if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim]
    (pv,) = [o for o in api.created if o["kind"] == "PersistentVolume" and o["spec"]["claimRef"]["name"] == claim]
    _assert_valid(pvc)
    _assert_valid(pv)
    assert pvc["metadata"]["namespace"] == "lhc-ml" == pv["spec"]["claimRef"]["namespace"]
    assert pvc["spec"]["storageClassName"] == "" == pv["spec"]["storageClassName"]  # binds to that volume only
    areas = _areas_volume(plan)
    # the job's volume is the very directory the notebook mounts: the areas export plus her home's subPath
    assert pv["spec"]["nfs"] == {"server": areas["spec"]["nfs"]["server"],
                                 "path": f"{areas['spec']['nfs']['path']}/{nb_home['subPath']}"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["mountOptions"] == areas["spec"]["mountOptions"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", batch.HOME_MOUNT}
    r2 = service.call(token, "POST", "api/jobs", json=_body())
    assert r2.status_code == 201
    assert len([o for o in api.created if o["kind"] == "PersistentVolumeClaim"]) == 1, "the home is created once"
    assert len([o for o in api.created if o["kind"] == "PersistentVolume"]) == 1


def _notebook_pod(hub: Any, name: str) -> dict[str, Any]:
    (pod,) = [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == name]
    return dict(pod)


def _notebook_ids(pod: dict[str, Any]) -> tuple[int, int, int]:
    """The notebook's UID and GID (KubeSpawner sets them on its container) and its pod's fsGroup."""
    (nb,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return nb["securityContext"]["runAsUser"], nb["securityContext"]["runAsGroup"], pod["spec"]["securityContext"][
        "fsGroup"]


def _notebook_home(pod: dict[str, Any]) -> dict[str, Any]:
    """The notebook container's home mount (on the platform areas' claim, at its user's subPath)."""
    (nb,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    (mount,) = [m for m in nb["volumeMounts"] if m["mountPath"] == batch.HOME_MOUNT]
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert vol["persistentVolumeClaim"]["claimName"] == jupyterhub.AREAS_CLAIM
    return dict(mount)


def _areas_volume(plan: Any) -> dict[str, Any]:
    """The platform areas' PersistentVolume as the notebooks' bundle makes it (the NFS node's address
    as the stack renders it, here a fixed one)."""
    (bundle,) = [b for b in site_bundles(plan) if b.service == "notebooks"]
    (pv,) = [m.manifest for m in bundle.manifests if m.manifest["kind"] == "PersistentVolume"]
    out = json.loads(json.dumps(pv, default=lambda o: o.render(AREAS_SERVER)))
    assert out["metadata"]["name"] == batch.AREAS_VOLUME
    return dict(out)


def test_a_job_and_the_notebook_of_a_user_share_one_directory_on_a_real_filesystem(
        service: Service, api: kube_standin.Api, hub: Any, iam: Any, plan: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The notebook's home and the job's home resolved to a real directory tree: the export is a local
    directory here (gap: no NFS server runs; the kubelet's nfs mount is the export path itself), the
    home made by the platform's own provisioner (as the hub asks it), and processes running as the pods'
    UIDs. What the job writes the notebook reads and back; another user's job, with its own home, gets
    nothing of hers (0700)."""
    if os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"needs root and {SYSTEM_PYTHON} to run processes as the users' UIDs")
    from aiinfn.hub import provisioner

    token = _user(hub, iam, "ilse", [USERS, LHC])
    other = _user(hub, iam, "jonas", [USERS, LHC])
    export = Path(tempfile.mkdtemp(prefix="aiinfn-export-"))
    try:
        export.chmod(0o755)
        areas_pv = _areas_volume(plan)
        base = Path(areas_pv["spec"]["nfs"]["path"])  # /export/platform/areas
        root = export / base.relative_to("/")
        root.mkdir(parents=True)
        os.chown(root, provisioner.AREAS_UID, provisioner.AREAS_UID)
        for p in list(root.parents)[: len(base.parts) - 1]:
            p.chmod(0o755)
        # the provisioner as shipped (one file), run by the system's Python: the users' processes cannot
        # enter this checkout
        tool = export / "tool"
        tool.mkdir(mode=0o755)
        (tool / "provisioner.py").write_text(Path(provisioner.__file__).read_text())
        (tool / "provisioner.py").chmod(0o644)

        def local(nfs_path: str) -> Path:
            return export / Path(nfs_path).relative_to("/")

        homes: dict[str, tuple[int, Path, Path]] = {}
        for name, tok in (("ilse", token), ("jonas", other)):
            nb = _notebook_pod(hub, name)
            uid = _notebook_ids(nb)[0]
            sub = _notebook_home(nb)["subPath"]
            request = tool / f"{name}.json"
            request.write_text(json.dumps({"user": {"home": sub.removeprefix("home/"), "uid": uid, "gid": uid}}))
            made = subprocess.run([SYSTEM_PYTHON, str(tool / "provisioner.py"), "ensure", str(request)],
                                  env={"AIINFN_AREAS": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True,
                                  text=True, timeout=60, check=False)
            assert made.returncode == 0, made.stderr
            r = service.call(tok, "POST", "api/jobs", json=_body())
            assert r.status_code == 201, r.text
            (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
            spec = job["spec"]["template"]["spec"]
            (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if v["name"] == "home"]
            (pv,) = [o for o in api.of("persistentvolumes") if o["spec"]["claimRef"] == {"namespace": "lhc-ml",
                                                                                        "name": claim}]
            assert spec["securityContext"]["runAsUser"] == uid
            homes[name] = (uid, root / sub, local(pv["spec"]["nfs"]["path"]))
        uid, notebook_dir, job_dir = homes["ilse"]
        assert notebook_dir.resolve() == job_dir.resolve()

        def run_as(u: int, code: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([SYSTEM_PYTHON, "-c", code], user=u, group=u, extra_groups=[], capture_output=True,
                                  text=True, timeout=30, check=False, env={"PATH": "/usr/bin:/bin"})

        # the job writes a result into its home; the notebook reads it, and its file back
        w = run_as(uid, f"open({str(job_dir / 'result.txt')!r}, 'w').write('loss 0.1')")
        assert w.returncode == 0, w.stderr
        assert run_as(uid, f"print(open({str(notebook_dir / 'result.txt')!r}).read())").stdout.strip() == "loss 0.1"
        assert (job_dir / "result.txt").stat().st_uid == uid
        # jonas's job (his UID, his home) cannot read hers
        juid, _, jdir = homes["jonas"]
        assert jdir != job_dir and juid != uid
        peek = run_as(juid, f"print(open({str(job_dir / 'result.txt')!r}).read())")
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
    finally:
        shutil.rmtree(export, ignore_errors=True)


def kubespawner_claim(user: str, kubeconfig: Path) -> str:
    """What z2jh 4.4.0's KubeSpawner (7.0.0) names the home claim of ``user``'s default server: its own
    ``pvc_name_template`` (``claim-{user_server}``) expanded by its own code."""
    import asyncio

    from jupyterhub.objects import Hub
    from kubespawner import KubeSpawner

    class User:
        name = user
        escaped_name = user
        id = 1
        url = f"/user/{user}/"

    async def expand() -> str:
        spawner = KubeSpawner(_mock=True, user=User(), hub=Hub())
        return str(spawner._expand_user_properties(spawner.pvc_name_template))

    from kubernetes_asyncio.config import kube_config

    # the mock spawner still loads a kubeconfig (it calls nothing): the stand-in's; the client library
    # reads KUBECONFIG once, at import
    old = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
    # a loop of its own, never the thread's current one: asyncio.run would leave the thread without one
    # for the tests after this module (Pulumi's mocks ask for the current loop)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(expand())
    finally:
        loop.close()
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old


def plan_labels() -> dict[str, str]:
    from aiinfn.planning import labels as lb

    return {"queue": lb.QUEUE_NAME_LABEL, "priority": lb.PRIORITY_CLASS_LABEL, "owner": lb.BATCH_OWNER_LABEL,
            "owner_annotation": lb.BATCH_OWNER_ANNOTATION, "offload": lb.OFFLOAD_TARGET_LABEL}


def test_a_name_made_portable_gets_the_notebooks_own_home(service: Service, api: kube_standin.Api, hub: Any,
                                                          iam: Any, plan: Any) -> None:
    """mario.rossi's home directory is not his hub name: the job's volume is the directory his
    notebook mounts, whatever name the hub's identity table gave it."""
    token = _user(hub, iam, "mario.rossi", [USERS, LHC])
    r = service.call(token, "POST", "api/jobs", json=_body())
    assert r.status_code == 201, r.text
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
    (home,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "home"]
    claim = home["persistentVolumeClaim"]["claimName"]
    notebook = _notebook_pod(hub, "mario.rossi")
    assert claim == f"aiinfn-home-{_notebook_ids(notebook)[0]}"
    (pv,) = [o for o in api.of("persistentvolumes") if o["spec"]["claimRef"]["name"] == claim]
    areas = _areas_volume(plan)["spec"]["nfs"]["path"]
    assert pv["spec"]["nfs"]["path"] == f"{areas}/{_notebook_home(notebook)['subPath']}"
    assert job["metadata"]["annotations"][plan_labels()["owner_annotation"]] == "mario.rossi"
    _assert_valid(job)


def test_before_a_first_notebook_a_job_has_no_home_and_asking_for_one_is_409(service: Service,
                                                                            api: kube_standin.Api, hub: Any,
                                                                            iam: Any) -> None:
    """A user who logged in but never started a notebook has no home on the filesystem yet (the provisioner
    makes it at the first spawn): the hub records no identity, so no volume may point at it."""
    user = iam.add_user("nadia", [USERS, LHC])
    session, r = hub.login(user.sub, iam.url)
    assert r.status_code == 302, r.text
    token = hub.new_token(session, "nadia")
    before = len(api.created)
    asked = service.call(token, "POST", "api/jobs", json=_body(home=True))
    assert asked.status_code == 409 and "start your notebook once" in asked.json()["error"]
    assert len(api.created) == before
    r = service.call(token, "POST", "api/jobs", json=_body())
    assert r.status_code == 201, r.text
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
    assert not [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "home"]
    assert [o["kind"] for o in api.created[before:]] == ["Job"]


def test_another_projects_queue_is_refused_and_nothing_is_created(service: Service, api: kube_standin.Api,
                                                                  hub: Any, iam: Any) -> None:
    token = _user(hub, iam, "bruno", [USERS, LHC])
    before = len(api.created)
    r = service.call(token, "POST", "api/jobs", json=_body(project="theory"))
    assert r.status_code == 403 and "theory" in r.json()["error"]
    assert len(api.created) == before
    assert not [q for q in api.requests if q.method == "POST" and q.namespace == "theory"]


def test_no_token_is_401_and_a_token_without_the_scope_is_403(service: Service, api: kube_standin.Api,
                                                              hub: Any, iam: Any) -> None:
    before = len(api.created)
    assert service.call(None, "POST", "api/jobs", json=_body()).status_code == 401
    assert service.call("not-a-token", "POST", "api/jobs", json=_body()).status_code == 401
    assert service.call(None, "GET", "api/jobs").status_code == 401
    _user(hub, iam, "carla", [USERS, LHC])
    narrow = hub.new_token(hub._sessions["carla"], "carla", scopes=["read:users:name!user=carla"])
    r = service.call(narrow, "POST", "api/jobs", json=_body())
    assert r.status_code == 403 and "access:services!service=aiinfn-batch" in r.json()["error"]
    assert len(api.created) == before


MALFORMED = [
    ("not json", 400, "JSON"),
    ([1, 2], 400, "object"),
    ({**_body(), "privileged": True}, 400, "privileged"),
    ({**_body(), "script": {"name": "../../etc/passwd", "content": "x"}}, 400, "script.name"),
    ({**_body(), "script": {"name": "a.py"}}, 400, "script"),
    ({**_body(), "script": {"name": "a.py", "content": "x" * (jobs.MAX_SCRIPT_BYTES + 1)}}, 413, "KiB"),
    ({**_body(), "cpu": -1}, 400, "cpu"),
    ({**_body(), "cpu": 10_000}, 400, "cpu"),
    ({**_body(), "memory": "lots"}, 400, "memory"),
    ({**_body(), "time": "forever"}, 400, "time"),
    ({**_body(), "time": "49h"}, 400, "time"),
    ({**_body(), "gpu": "H200"}, 400, "gpu"),
    ({**_body(), "gpu": "V70"}, 403, "gpu"),  # reserved for ai-infn/fpga: not in lhc-ml's queue
    ({**_body(), "gpu": "T4", "gpus": 99}, 400, "gpus"),
    ({**_body(), "image": "docker.io/evil/miner:latest"}, 400, "image"),
    ({**_body(), "args": ["ok", 3]}, 400, "args"),
    ({**_body(), "args": ["a\x00b"]}, 400, "args[0]"),
    ({**_body(), "offload": "nowhere"}, 400, "offload"),
    ({**_body(), "project": "no-such-project"}, 400, "project"),
]


@pytest.mark.parametrize(("body", "status", "field"), MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_a_malformed_request_gets_one_clear_4xx_and_creates_nothing(service: Service, api: kube_standin.Api,
                                                                    hub: Any, iam: Any, body: Any, status: int,
                                                                    field: str) -> None:
    if "dario" not in getattr(hub, "_tokens", {}):
        hub._tokens = {**getattr(hub, "_tokens", {}), "dario": _user(hub, iam, "dario", [USERS, LHC])}
    before = len(api.created)
    data = body if isinstance(body, str) else json.dumps(body)
    r = service.call(hub._tokens["dario"], "POST", "api/jobs", data=data)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert field in error and "\n" not in error and "Traceback" not in error
    assert len(api.created) == before


def test_a_users_unfinished_jobs_are_limited(service: Service, api: kube_standin.Api, hub: Any, iam: Any) -> None:
    token = _user(hub, iam, "elena", [USERS, THEORY])
    names = []
    for _ in range(MAX_JOBS):
        r = service.call(token, "POST", "api/jobs", json=_body(project="theory"))
        assert r.status_code == 201, r.text
        names.append(r.json()["name"])
    before = len(api.created)
    r = service.call(token, "POST", "api/jobs", json=_body(project="theory"))
    assert r.status_code == 429 and str(MAX_JOBS) in r.json()["error"]
    assert len(api.created) == before
    # a finished job frees its place
    api.set_job_status("theory", names[0], {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
    assert service.call(token, "POST", "api/jobs", json=_body(project="theory")).status_code == 201


# --------------------------------------------------------------------------- list, logs, cancel


def test_list_logs_and_cancel_own_jobs_only(service: Service, api: kube_standin.Api, hub: Any, iam: Any) -> None:
    token = _user(hub, iam, "fabio", [USERS, LHC])
    other = _user(hub, iam, "gina", [USERS, LHC])
    queued = service.call(token, "POST", "api/jobs", json=_body()).json()["name"]
    running = service.call(token, "POST", "api/jobs", json=_body(gpu="T4")).json()["name"]
    by_name = {j["metadata"]["name"]: j for j in api.of("jobs", "lhc-ml")}
    api.add_workload(by_name[queued], [{"type": "QuotaReserved", "status": "False", "reason": "Pending"}])
    api.add_workload(by_name[running], [{"type": "QuotaReserved", "status": "True"},
                                        {"type": "Admitted", "status": "True"}],
                     flavors={"cpu": "cpu", "nvidia.com/gpu": "t4"})
    api.set_job_status("lhc-ml", running, {"active": 1}, suspend=False)
    api.add_pod(by_name[running], log="epoch 1\nepoch 2\nepoch 3\n")
    listed = {j["name"]: j for j in service.call(token, "GET", "api/jobs").json()["jobs"]}
    assert set(listed) == {queued, running}
    assert listed[queued]["state"] == "queued" and listed[running]["state"] == "running"
    assert listed[running]["flavors"] == ["cpu", "t4"] and listed[running]["project"] == "lhc-ml"
    r = service.call(token, "GET", f"api/jobs/{running}/logs", params={"tail": "2"})
    assert r.status_code == 200 and r.text == "epoch 2\nepoch 3\n"
    assert service.call(token, "GET", f"api/jobs/{queued}/logs").status_code == 409  # no pod yet
    # gina, in the same project, neither sees nor reads nor cancels fabio's jobs
    assert service.call(other, "GET", "api/jobs").json()["jobs"] == []
    assert service.call(other, "GET", f"api/jobs/{running}/logs").status_code == 404
    assert service.call(other, "DELETE", f"api/jobs/{running}").status_code == 404
    assert running in {j["metadata"]["name"] for j in api.of("jobs", "lhc-ml")}
    r = service.call(token, "DELETE", f"api/jobs/{running}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert running not in {j["metadata"]["name"] for j in api.of("jobs", "lhc-ml")}
    assert service.call(token, "GET", f"api/jobs/{running}").status_code == 404


# --------------------------------------------------------------------------- offload


def test_an_offloaded_job_goes_to_the_virtual_node_with_no_home(service: Service, api: kube_standin.Api,
                                                                 hub: Any, iam: Any) -> None:
    token = _user(hub, iam, "hana", [USERS, LHC])
    r = service.call(token, "POST", "api/jobs", json=_body(offload="leonardo", gpu="A100-40GB", time="12h"))
    assert r.status_code == 201, r.text
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
    _assert_valid(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "interlink-leonardo"}
    assert "affinity" not in pod and "tolerations" not in pod  # Kueue adds the offload flavor's toleration
    assert {k for v in pod["volumes"] for k in v if k != "name"} <= set(jobs.OFFLOAD_VOLUMES)
    assert job["metadata"]["labels"][plan_labels()["offload"]] == "leonardo"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert jobs.offload_refusal(pod, "leonardo") is None


def test_offload_refuses_the_home_and_longer_than_the_targets_wall_time(service: Service, api: kube_standin.Api,
                                                                         hub: Any, iam: Any) -> None:
    token = _user(hub, iam, "ivo", [USERS, LHC])
    before = len(api.created)
    r = service.call(token, "POST", "api/jobs", json=_body(offload="leonardo", home=True))
    assert r.status_code == 400
    error = r.json()["error"]
    assert "virtual node" in error and "Secret, ConfigMap and EmptyDir" in error and "JuiceFS or S3" in error
    r = service.call(token, "POST", "api/jobs", json=_body(offload="leonardo", time="30h"))
    assert r.status_code == 400 and "24 h" in r.json()["error"]
    r = service.call(token, "POST", "api/jobs", json=_body(offload="leonardo", gpu="T4"))
    assert r.status_code == 400 and "A100-40GB" in r.json()["error"]
    assert len(api.created) == before


def test_a_job_with_an_nfs_volume_is_refused_for_offload() -> None:
    spec = {"containers": [{"name": "job", "image": "x"}],
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}},
                        {"name": "data", "nfs": {"server": "10.200.0.5", "path": "/export/platform"}}]}
    why = jobs.offload_refusal(spec, "leonardo")
    assert why is not None and "'data' is nfs" in why and "JuiceFS or S3" in why and "\n" not in why
    for other in ({"persistentVolumeClaim": {"claimName": "x"}}, {"hostPath": {"path": "/"}},
                  {"projected": {"sources": []}}):
        assert jobs.offload_refusal({"volumes": [{"name": "v", **other}]}, "leonardo") is not None
    assert jobs.offload_refusal({"volumes": [{"name": "s", "secret": {"secretName": "s"}}]}, "leonardo") is None


# --------------------------------------------------------------------------- events


def _participant(hub: Any, iam: Any, name: str, groups: list[str]) -> str:
    """An event participant (a user of the site: the hub here has no registration to let in anyone else),
    logged in, with a token of their own from the hub."""
    user = iam.add_user(name, groups)
    session, r = hub.login(user.sub, iam.url)
    assert r.status_code == 302, r.text
    return hub.new_token(session, name, scopes=[f"access:services!service={jupyterhub.BATCH_SERVICE}"])


def _event_body(**kw: Any) -> dict[str, Any]:
    body = _body(**{"event": "school", "gpu": "T4", "time": "2h", **kw})
    body.pop("project")
    return body


def test_a_participant_submits_to_the_events_queue_during_the_event(service: Service, api: kube_standin.Api,
                                                                    hub: Any, iam: Any, plan: Any) -> None:
    token = _participant(hub, iam, "nina", [USERS, SCHOOL])
    # nina's event home, as the spawner made it at her first event notebook (her UID/GID recorded on it)
    api.put("persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
        "name": "claim-nina", "namespace": "event-school",
        "annotations": {lb.OWNER_UID_ANNOTATION: "12001", lb.OWNER_GID_ANNOTATION: "12001"}}, "spec": {}})
    before = len([o for o in api.created if o["kind"] == "PersistentVolumeClaim"])
    r = service.call(token, "POST", "api/jobs", json=_event_body())
    assert r.status_code == 201, r.text
    assert r.json()["event"] == "school" and r.json()["namespace"] == "event-school"
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
    _assert_valid(job)
    labels = plan_labels()
    meta, spec = job["metadata"], job["spec"]
    assert meta["namespace"] == "event-school" and meta["labels"][lb.EVENT_LABEL] == "school"
    assert meta["labels"][labels["queue"]] == "default" and meta["labels"][labels["priority"]] == "batch"
    assert meta["annotations"][labels["owner_annotation"]] == "nina" and spec["suspend"] is True
    pod = spec["template"]["spec"]
    assert pod_security.violations(pod) == []
    # her event home, run as its recorded owner; the batch service made no claim of its own there
    (home,) = [v for v in pod["volumes"] if v["name"] == "home"]
    assert home["persistentVolumeClaim"]["claimName"] == "claim-nina" == kubespawner_claim(
        "nina", api.kubeconfig(service.log.parent / "kc-nina"))
    sc = pod["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (12001, 12001, 12001)
    assert len([o for o in api.created if o["kind"] == "PersistentVolumeClaim"]) == before
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # she follows, reads and cancels it like a project's job
    listed = {j["name"]: j for j in service.call(token, "GET", "api/jobs").json()["jobs"]}
    assert listed[meta["name"]]["event"] == "school" and listed[meta["name"]]["state"] == "queued"
    api.add_workload(api.of("jobs", "event-school")[0], [{"type": "QuotaReserved", "status": "True"}])
    api.add_pod(api.of("jobs", "event-school")[0], log="step 1\n")
    assert service.call(token, "GET", f"api/jobs/{meta['name']}/logs").text == "step 1\n"
    assert service.call(token, "DELETE", f"api/jobs/{meta['name']}").status_code == 200
    assert not api.of("jobs", "event-school")
    who = service.call(token, "GET", "api/whoami").json()
    assert who["projects"] == {} and set(who["events"]) == {"school"} and who["events"]["school"]["open"]


def test_a_participant_without_an_event_home_runs_without_one_and_a_tutor_may_submit(
        service: Service, api: kube_standin.Api, hub: Any, iam: Any) -> None:
    token = _participant(hub, iam, "otto", [USERS, TUTORS])
    r = service.call(token, "POST", "api/jobs", json=_event_body())
    assert r.status_code == 201, r.text
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == r.json()["name"]]
    pod = job["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"tmp"} and pod["containers"][0]["workingDir"] == "/tmp"
    before = len(api.created)
    r = service.call(token, "POST", "api/jobs", json=_event_body(home=True))
    assert r.status_code == 409 and "--no-home" in r.json()["error"]
    assert len(api.created) == before
    # a home with no participant recorded as its owner (root here) is never run on, as anyone
    wim = _participant(hub, iam, "wim", [USERS, SCHOOL])
    api.put("persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
        "name": "claim-wim", "namespace": "event-school",
        "annotations": {lb.OWNER_UID_ANNOTATION: "0", lb.OWNER_GID_ANNOTATION: "0"}}, "spec": {}})
    r = service.call(wim, "POST", "api/jobs", json=_event_body())
    assert r.status_code == 409 and "no participant recorded" in r.json()["error"] and "\n" not in r.json()["error"]
    assert len(api.created) == before


@pytest.mark.parametrize(("who", "groups", "body", "status", "words"), [
    ("pia", [USERS, LHC], _event_body(), 403, "not a participant"),  # a project's member, not the event's
    ("quin", [USERS, SPRING], {**_event_body(), "event": "spring"}, 403, "only during the event"),  # after its window
    ("rita", [USERS, SCHOOL], {**_event_body(), "event": "rogue"}, 400, "not an event"),  # not a registration
    ("sara", [USERS, SCHOOL], {**_event_body(), "project": "lhc-ml"}, 400, "not both"),
    ("tom", [USERS, SCHOOL], _event_body(time="48h"), 400, "past the end"),
    ("ugo", [USERS, SCHOOL], _event_body(offload="leonardo"), 400, "offload"),
    ("vera", [USERS, SCHOOL], _event_body(gpu="A100-80GB/1g.10gb"), 403, "gpu"),  # not a kind of the event's queue
])
def test_an_event_submission_outside_its_rules_is_refused_with_one_line_and_creates_nothing(
        service: Service, api: kube_standin.Api, hub: Any, iam: Any, who: str, groups: list[str],
        body: dict[str, Any], status: int, words: str) -> None:
    token = _participant(hub, iam, who, groups)
    before, sent = len(api.created), len(api.requests)
    r = service.call(token, "POST", "api/jobs", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error and "\n" not in error and "Traceback" not in error
    assert len(api.created) == before
    assert not [q for q in api.requests[sent:] if q.method != "GET"]
    if "window" in words or "during" in words:
        assert EVENTS["spring"]["ends"].isoformat() in error


# --------------------------------------------------------------------------- what the service may do


def test_every_call_the_service_made_is_one_its_rbac_allows(service: Service, api: kube_standin.Api,
                                                             plan: Any) -> None:
    """Judged after the tests above (module order): the ClusterRole's rules, bound only in the
    project namespaces, cover every request the service sent; the requests carried its token."""
    objs = batch.objects(plan)
    (cluster_role,) = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == batch.SERVICE]
    # cluster-wide, only the home volumes' rules (admission holds their creation to users' homes)
    (homes,) = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    (homes_role,) = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == batch.HOMES_ROLE]
    assert homes["roleRef"]["name"] == batch.HOMES_ROLE
    assert {(r["resources"][0], v) for r in homes_role["rules"] for v in r["verbs"]} == {
        ("persistentvolumes", "get"), ("persistentvolumes", "create")}
    assert [r.get("resourceNames") for r in homes_role["rules"] if "get" in r["verbs"]] == [[batch.AREAS_VOLUME]]
    # the rules bound in each namespace: the site's bundle (projects, the hub's) and each event's stack
    bound = [o for o in objs if o["kind"] == "RoleBinding"]
    for name in EVENTS:
        bound += [o for o in event.batch_access(plan, f"event-{name}") if o["kind"] == "RoleBinding"]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in
             [*objs, *(o for n in EVENTS for o in event.batch_access(plan, f"event-{n}"))] if o["kind"] == "Role"}
    rules: dict[str, list[dict[str, Any]]] = {}
    for b in bound:
        ns = b["metadata"]["namespace"]
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": batch.SERVICE, "namespace": batch.NAMESPACE}]
        ref = b["roleRef"]
        rules[ns] = cluster_role["rules"] if ref["kind"] == "ClusterRole" else roles[(ns, ref["name"])]["rules"]
    assert set(rules) == {q.namespace for q in plan.quotas} | {jupyterhub.NAMESPACE} | {f"event-{n}" for n in EVENTS}
    group_of = {"jobs": "batch", "pods": "", "persistentvolumeclaims": "", "workloads": "kueue.x-k8s.io",
                "configmaps": "", "persistentvolumes": ""}
    assert api.requests
    used: dict[str, set[tuple[str, str, str]]] = {}
    for req in api.requests:
        if req.resource == "persistentvolumes":
            verb = {"POST": "create"}.get(req.method, "get")
            name = req.path.rstrip("/").split("/")[-1]
            assert any(verb in r["verbs"] and name in r.get("resourceNames", [name]) for r in homes_role["rules"]), req
            continue
        verb = {"POST": "create", "DELETE": "delete"}.get(req.method) or (
            "get" if req.path.rstrip("/").split("/")[-1] not in group_of else "list")
        resource = req.resource if not req.subresource else f"{req.resource}/{req.subresource}"
        assert req.token == kube_standin.TOKEN and req.namespace in rules, req
        assert any(group_of[str(req.resource)] in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in rules[str(req.namespace)]), (req.method, req.path, verb)
        used.setdefault(str(req.namespace), set()).add((group_of[str(req.resource)], resource, verb))
    # in the hub's namespace and an event's, exactly what the service called there: nothing unused
    for ns in (jupyterhub.NAMESPACE, "event-school"):
        granted = {(g, r, v) for rule in rules[ns] for g in rule["apiGroups"] for r in rule["resources"]
                   for v in rule["verbs"]}
        assert granted == used[ns], (ns, granted ^ used[ns])


# --------------------------------------------------------------------------- the client in a notebook


def test_the_client_from_a_notebook(service: Service, api: kube_standin.Api, hub: Any, iam: Any,
                                    tmp_path: Path, plan: Any) -> None:
    """``aiinfn-batch`` as shipped to notebooks (the notebook files), with the notebook's environment."""
    token = _user(hub, iam, "lara", [USERS, LHC])
    files = jupyterhub.notebook_files(plan)
    client = tmp_path / "aiinfn-batch"
    client.write_text(files["aiinfn-batch"]["stringData"])
    assert files["aiinfn-batch"]["mountPath"] == jupyterhub.BATCH_COMMAND
    assert hub.values["singleuser"]["extraEnv"]["AIINFN_BATCH_URL"] == jupyterhub.batch_url()
    (tmp_path / "train.py").write_text(SCRIPT)
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "outputs": [{"text": "big"}],
                           "execution_count": 3, "metadata": {}}], "metadata": {}, "nbformat": 4,
                "nbformat_minor": 5}
    (tmp_path / "scan.ipynb").write_text(json.dumps(notebook))
    env = {"PATH": os.environ["PATH"], "JUPYTERHUB_API_TOKEN": token, "AIINFN_BATCH_URL": service.url,
           "JUPYTER_IMAGE_SPEC": hub.values["singleuser"]["profileList"][0]["profile_options"]["image"]["choices"]
           ["torch"]["kubespawner_override"]["image"]}

    def run(*args: str, token_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(client), *args], capture_output=True, text=True, cwd=tmp_path,
                              env={**env, **(token_env or {})}, timeout=60, check=False)

    out = run("submit", "train.py", "--gpu", "A100-80GB/1g.10gb", "--cpu", "4", "--memory", "16G", "--time", "4h",
              "--", "--epochs", "3")
    assert out.returncode == 0, out.stderr
    name = out.stdout.split()[0]
    (job,) = [j for j in _jobs(api) if j["metadata"]["name"] == name]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["--epochs", "3"] and c["image"] == env["JUPYTER_IMAGE_SPEC"]
    assert {"name": "AIINFN_BATCH_SCRIPT", "value": SCRIPT} in c["env"]
    nb = run("submit", "scan.ipynb", "--time", "30m")
    assert nb.returncode == 0, nb.stderr
    (job2,) = [j for j in _jobs(api) if j["metadata"]["name"] == nb.stdout.split()[0]]
    sent = json.loads(next(e["value"] for e in job2["spec"]["template"]["spec"]["containers"][0]["env"]
                           if e["name"] == "AIINFN_BATCH_SCRIPT"))
    assert sent["cells"][0]["outputs"] == [] and sent["cells"][0]["execution_count"] is None
    listed = run("list")
    assert listed.returncode == 0 and name in listed.stdout and "queued" in listed.stdout
    assert run("cancel", name).returncode == 0
    bad = run("submit", "train.py", "--project", "theory")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "403" in bad.stderr
    anon = run("list", token_env={"JUPYTERHUB_API_TOKEN": "nope"})
    assert anon.returncode == 1 and "401" in anon.stderr and "Traceback" not in anon.stderr
