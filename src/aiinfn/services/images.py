"""The notebook images the platform builds: the managed image and the team images, built in the cluster.

When the site declares team images (``services.jupyterhub.team_images``, which needs ``services.harbor``)
the overlay registers, in the namespace ``aiinfn-image-builds``:

* one ConfigMap per recipe (aiinfn.images: its Containerfile and build context);
* one Job whose name carries the digest of every recipe (a change builds again, the same inputs never):
  an init container (the jobs' Python image, as nobody) copies each context into an emptyDir and writes
  the registry login (``config.json``) from the push robot's Secret into another; then kaniko (pinned,
  ``versions.KANIKO_IMAGE``) builds and pushes the managed image and each team image over it, one init
  container each, in that order, into Harbor's ``environments`` project. kaniko unpacks images as root
  inside its own container: no privilege, no added capability, no user namespace, the runtime's seccomp
  profile; the namespace is at Pod Security ``baseline`` (``restricted`` refuses root) and only this
  Job runs there (no tenant has RBAC in it).
* NetworkPolicies: default deny; DNS; egress to the internet (the base image, Debian and PyPI mirrors,
  Apptainer's release) and to the ingress on 443 (Harbor by its public name).

The push credential is the robot account Secret ``aiinfn-harbor-robot-builds`` (keys ``username`` and
``password``), read only by the init container: never in an environment file, an artifact or the Job's
spec. It is made by the Harbor bootstrap's own program (aiinfn.jobs.harbor_setup, run here as a second
Job in Harbor's namespace with ``HARBOR_ROBOT_PUSH_PROJECT``: a system robot that may push and pull the
``environments`` project only), whose ServiceAccount may create that one Secret in the builds'
namespace and read and update it by name, nothing else. The images' references (tag: the recipe's digest) are
what the hub offers (services.jupyterhub: a team image only to its team's groups).

Apptainer's release package must have its sha256 pinned (``versions.APPTAINER_DEB_SHA256``): a site that
declares team images while it is not gets one line naming the field, never an unchecked download.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .. import images, versions
from ..errors import ConfigError
from ..images import seccomp
from ..planning import Plan
from . import harbor, network
from .bundle import Bundle, manifests, namespace

NAMESPACE = "aiinfn-image-builds"
PROJECT = "environments"
PUSH_SECRET = "aiinfn-harbor-robot-builds"
BUILD = "aiinfn-image-build"
CONTAINERFILE = "Containerfile"
#: Copies each mounted context (ConfigMap files are symlinks kaniko would copy as links) and writes the
#: registry login from the robot's Secret files. Fixed text: the registry host is an environment value.
PREPARE = """\
import base64, json, os, pathlib, shutil
src, dst = pathlib.Path('/contexts'), pathlib.Path('/workspace')
for ctx in sorted(p for p in src.iterdir() if not p.name.startswith('.')):
    (dst / ctx.name).mkdir(parents=True, exist_ok=True)
    for f in ctx.iterdir():
        if not f.name.startswith('.'):
            shutil.copyfile(f, dst / ctx.name / f.name)
user = pathlib.Path('/robot/username').read_text().strip()
password = pathlib.Path('/robot/password').read_text().strip()
auth = base64.b64encode(f'{user}:{password}'.encode()).decode()
out = pathlib.Path('/docker/config.json')
out.write_text(json.dumps({'auths': {os.environ['REGISTRY']: {'auth': auth}}}))
out.chmod(0o600)
"""


def recipes(plan: Plan,
            apptainer_sha256: str | None = versions.APPTAINER_DEB_SHA256) -> list[tuple[images.Recipe, str]]:
    """Every recipe with the reference it is pushed as: the managed image first, then each team's."""
    hub = plan.env.services.jupyterhub
    host = harbor.host(plan)
    if hub is None or not hub.team_images or host is None:
        return []
    if apptainer_sha256 is None:
        raise ConfigError(f"Apptainer {versions.APPTAINER}'s release package has no pinned sha256 "
                          "(aiinfn.versions.APPTAINER_DEB_SHA256): pin it before declaring team images",
                          path="services.jupyterhub.team_images")
    managed = images.managed_recipe(apptainer_sha256)
    base = f"{host}/{versions.MANAGED_IMAGE_REPOSITORY}:{managed.tag}"
    out = [(managed, base)]
    for name, team in sorted(hub.team_images.items()):
        r = images.team_recipe(name, team, base)
        out.append((r, f"{host}/{PROJECT}/{r.name}:{r.tag}"))
    return out


def team_image_refs(plan: Plan, apptainer_sha256: str | None = versions.APPTAINER_DEB_SHA256) -> dict[str, str]:
    """Team name -> the image reference the build pushes."""
    return {r.name.removeprefix("team-"): ref for r, ref in recipes(plan, apptainer_sha256)[1:]}


def apptainer(plan: Plan) -> dict[str, Any]:
    """What the hub needs to run images with Apptainer under the Localhost profile: the repositories the
    platform builds them into (the managed image's, the team images') and the profile's name."""
    host = harbor.host(plan)
    hub = plan.env.services.jupyterhub
    if host is None or hub is None:
        return {}
    repos = [f"{host}/{versions.MANAGED_IMAGE_REPOSITORY}:",
             *(f"{host}/{PROJECT}/team-{n}:" for n in sorted(hub.team_images))]
    return {"repositories": repos, "seccomp": seccomp.PROFILE}


def artifacts(plan: Plan, apptainer_sha256: str | None = versions.APPTAINER_DEB_SHA256) -> dict[str, str]:
    """``images/<recipe>/Containerfile`` and its context files, under build/<env>/."""
    out: dict[str, str] = {}
    for r, _ in recipes(plan, apptainer_sha256):
        out[f"images/{r.name}/{CONTAINERFILE}"] = r.containerfile
        for k, v in r.files.items():
            out[f"images/{r.name}/{k}"] = v
    return out


def _context(r: images.Recipe) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"aiinfn-image-{r.name}", "namespace": NAMESPACE},
            "data": {CONTAINERFILE: r.containerfile, **r.files}}


def build_job(built: list[tuple[images.Recipe, str]], registry: str) -> dict[str, Any]:
    digest = hashlib.sha256("".join(ref for _, ref in built).encode() + PREPARE.encode()
                            + versions.KANIKO_IMAGE.encode()).hexdigest()[:10]
    no_privilege: dict[str, Any] = {"allowPrivilegeEscalation": False, "privileged": False}
    drop_all = {**no_privilege, "runAsUser": 65534, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    contexts = [{"name": f"ctx-{r.name}", "mountPath": f"/contexts/{r.name}", "readOnly": True} for r, _ in built]
    kaniko: list[dict[str, Any]] = [{
        "name": f"build-{r.name}",
        "image": versions.KANIKO_IMAGE,
        "args": [f"--context=dir:///workspace/{r.name}", f"--dockerfile=/workspace/{r.name}/{CONTAINERFILE}",
                 f"--destination={ref}", "--single-snapshot"],
        "env": [{"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"}],
        "securityContext": {**no_privilege, "runAsUser": 0, "runAsNonRoot": False},
        "volumeMounts": [{"name": "workspace", "mountPath": "/workspace", "readOnly": True},
                         {"name": "docker", "mountPath": "/kaniko/.docker", "readOnly": True}],
    } for r, ref in built]
    prepare = {
        "name": "prepare",
        "image": versions.JOB_IMAGE,
        "command": ["python3", "-c", PREPARE],
        "env": [{"name": "REGISTRY", "value": registry}],
        "securityContext": drop_all,
        "volumeMounts": [*contexts, {"name": "workspace", "mountPath": "/workspace"},
                         {"name": "docker", "mountPath": "/docker"},
                         {"name": "robot", "mountPath": "/robot", "readOnly": True}],
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{BUILD}-{digest}", "namespace": NAMESPACE},
        "spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 7 * 86400, "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": BUILD}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 65534},
                "initContainers": [prepare, *kaniko],
                "containers": [{"name": "done", "image": versions.JOB_IMAGE,
                                "command": ["python3", "-c", "print('every image built and pushed')"],
                                "securityContext": drop_all}],
                "volumes": [*({"name": f"ctx-{r.name}", "configMap": {"name": f"aiinfn-image-{r.name}"}}
                              for r, _ in built),
                            {"name": "workspace", "emptyDir": {"sizeLimit": "1Gi"}},
                            {"name": "docker", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                            {"name": "robot", "secret": {"secretName": PUSH_SECRET, "defaultMode": 0o400,
                                                         "items": [{"key": "username", "path": "username"},
                                                                   {"key": "password", "path": "password"}]}}],
            }}},
    }


ROBOT = "builds"
ROBOT_JOB = "aiinfn-image-robot"


def robot_objects() -> list[dict[str, Any]]:
    """The builds' push robot: the Harbor setup program with the push settings, in Harbor's namespace (its
    admin password is a file of Harbor's Secret there), allowed to write only the robot's Secret here."""
    program = resources.files("aiinfn.jobs").joinpath("harbor_setup.py").read_text()
    env = {"HARBOR_URL": "http://harbor-core", "HARBOR_PROJECTS": PROJECT, "HARBOR_ROBOT": ROBOT,
           "HARBOR_ROBOT_PUSH_PROJECT": PROJECT, "HARBOR_PROXY_CACHES": "[]", "TARGET_NAMESPACE": NAMESPACE,
           "TARGET_SECRET": PUSH_SECRET, "HARBOR_ADMIN_PASSWORD_FILE": f"{harbor.ADMIN_MOUNT}/HARBOR_ADMIN_PASSWORD"}
    digest = hashlib.sha256((program + repr(sorted(env.items())) + versions.JOB_IMAGE).encode()).hexdigest()[:10]
    hns = harbor.NAMESPACE
    rbac = "rbac.authorization.k8s.io/v1"
    sa = {"kind": "ServiceAccount", "name": ROBOT_JOB, "namespace": hns}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ROBOT_JOB, "namespace": hns}},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": ROBOT_JOB, "namespace": NAMESPACE}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [PUSH_SECRET], "verbs": ["get", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": ROBOT_JOB, "namespace": NAMESPACE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROBOT_JOB}, "subjects": [sa]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROBOT_JOB, "namespace": hns},
         "data": {"harbor_setup.py": program}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{ROBOT_JOB}-{digest}", "namespace": hns},
         "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 86400, "template": {
             # the setup Job's label: Harbor's NetworkPolicies let it reach the API server
             "metadata": {"labels": dict(harbor.SETUP_PODS)},
             "spec": {
                 "serviceAccountName": ROBOT_JOB, "restartPolicy": "OnFailure",
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{
                     "name": "robot", "image": versions.JOB_IMAGE, "command": ["python3", "/job/harbor_setup.py"],
                     "env": [{"name": k, "value": v} for k, v in env.items()],
                     "volumeMounts": [{"name": "job", "mountPath": "/job", "readOnly": True},
                                      {"name": "admin", "mountPath": harbor.ADMIN_MOUNT, "readOnly": True}],
                     "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
                 "volumes": [{"name": "job", "configMap": {"name": ROBOT_JOB}},
                             {"name": "admin", "secret": {"secretName": harbor.ADMIN_SECRET, "items": [
                                 {"key": "HARBOR_ADMIN_PASSWORD", "path": "HARBOR_ADMIN_PASSWORD"}]}}]}}}},
    ]


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.policy("allow-builds", NAMESPACE, egress=[
            {"to": [network.public(ranges)]},
            {"to": network.ingress_controller(ranges), "ports": network.tcp(443)},
        ]),
    ]


def bundle(plan: Plan, apptainer_sha256: str | None = versions.APPTAINER_DEB_SHA256) -> Bundle | None:
    """The image builds, when the site declares team images."""
    built = recipes(plan, apptainer_sha256)
    host = harbor.host(plan)
    if not built or host is None:
        return None
    ns = f"ns-{NAMESPACE}"
    return Bundle("images", (
        namespace(NAMESPACE, "baseline"),
        *manifests(*network_policies(plan), *(_context(r) for r, _ in built), build_job(built, host),
                   *robot_objects(), after=(ns, harbor.RELEASE)),
    ))
