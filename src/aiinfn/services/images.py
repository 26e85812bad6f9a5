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
``password``, the format of the Harbor setup's robots), read only by the init container: never in an
environment file, an artifact or the Job's spec. The images' references (tag: the recipe's digest) are
what the hub offers (services.jupyterhub: a team image only to its team's groups).

Apptainer's release package must have its sha256 pinned (``versions.APPTAINER_DEB_SHA256``): a site that
declares team images while it is not gets one line naming the field, never an unchecked download.
"""

from __future__ import annotations

import hashlib
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
                   after=(ns, harbor.RELEASE)),
    ))
