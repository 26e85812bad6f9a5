"""Harbor setup, run in the cluster as a Kubernetes Job after the Harbor chart is up.

Creates (idempotently) the private projects that hold the managed environments (OCI images and
Apptainer images), the proxy-cache projects through which the nodes mirror public registries (each
with its registry endpoint), and a system robot account that may pull from every project, and stores
the robot's name and secret in a Kubernetes Secret for the nodes' registry configuration. Standard
library only: it runs in a plain Python image.

Environment: HARBOR_URL, HARBOR_ADMIN_PASSWORD_FILE (a file of the Job's Secret mount) or
HARBOR_ADMIN_PASSWORD, HARBOR_PROJECTS (comma separated), HARBOR_PROXY_CACHES (JSON: a list of
``{"project", "registry", "type", "url"}``; optional), HARBOR_ROBOT, TARGET_NAMESPACE, TARGET_SECRET;
HARBOR_ROBOT_PUSH_PROJECT (optional: the robot
pushes and pulls that one project only, instead of pulling every project: the image builds' robot,
services.images), KUBERNETES_API (default: in-cluster), and the pod's service account token and CA (in-cluster paths,
overridable with KUBE_TOKEN_FILE / KUBE_CA_FILE). The only Kubernetes object it reads or writes is
TARGET_SECRET.
Exit code 0 when everything is in place, 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


class SetupError(Exception):
    pass


class Api:
    def __init__(self, base: str, headers: dict[str, str], context: ssl.SSLContext | None = None) -> None:
        self.base = base.rstrip("/")
        self.headers = headers
        self.context = context

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        for k, v in self.headers.items():
            req.add_header(k, v)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise SetupError(f"{method} {self.base}{path}: cannot connect ({e})") from None
        if status not in ok:
            raise SetupError(f"{method} {self.base}{path}: HTTP {status} {raw[:200].decode(errors='replace')}")
        return status, json.loads(raw) if raw else None


def harbor(url: str, password: str) -> Api:
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    return Api(url + "/api/v2.0", {"Authorization": f"Basic {token}", "Accept": "application/json"})


def kubernetes() -> Api:
    api = os.environ.get("KUBERNETES_API", "https://kubernetes.default.svc")
    with open(os.environ.get("KUBE_TOKEN_FILE", f"{SA}/token")) as f:
        token = f.read().strip()
    context = None
    if api.startswith("https://"):
        context = ssl.create_default_context(cafile=os.environ.get("KUBE_CA_FILE", f"{SA}/ca.crt"))
    return Api(api, {"Authorization": f"Bearer {token}", "Accept": "application/json"}, context)


def ensure_project(h: Api, name: str) -> bool:
    """True when the project was created now."""
    _, found = h.call("GET", f"/projects?name={name}")
    if any(p.get("name") == name for p in found or []):
        return False
    h.call("POST", "/projects", {"project_name": name, "metadata": {"public": "false"}}, ok=(201, 409))
    return True


def ensure_registry(h: Api, name: str, kind: str, url: str) -> tuple[int, bool]:
    """The id of Harbor's registry endpoint ``name`` (created now when the bool is True)."""
    _, found = h.call("GET", f"/registries?q=name%3D{name}")
    for r in found or []:
        if r.get("name") == name:
            return int(r["id"]), False
    h.call("POST", "/registries", {"name": name, "type": kind, "url": url, "insecure": False}, ok=(201,))
    _, found = h.call("GET", f"/registries?q=name%3D{name}")
    for r in found or []:
        if r.get("name") == name:
            return int(r["id"]), True
    raise SetupError(f"registry endpoint {name}: created but not listed by Harbor")


def ensure_proxy_cache(h: Api, project: str, registry: str, kind: str, url: str) -> str:
    """A public proxy-cache project ``project`` of ``registry``: ``present``, ``created``, or an error when
    a project of that name exists but proxies another endpoint (or none)."""
    rid, _ = ensure_registry(h, registry, kind, url)
    _, found = h.call("GET", f"/projects?name={project}")
    for p in found or []:
        if p.get("name") == project:
            if p.get("registry_id") != rid:
                raise SetupError(f"project {project} exists but is not a proxy cache of {registry} "
                                 f"(registry_id {p.get('registry_id')}, expected {rid})")
            return "present"
    h.call("POST", "/projects", {"project_name": project, "registry_id": rid, "metadata": {"public": "true"}},
           ok=(201,))
    return "created"


ROBOT_PERMISSIONS = [
    {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}
]


def push_permissions(project: str) -> list[dict[str, Any]]:
    """Push and pull on ``project`` only (the image builds' robot)."""
    return [{"kind": "project", "namespace": project,
             "access": [{"resource": "repository", "action": "push"}, {"resource": "repository", "action": "pull"}]}]


def ensure_robot(h: Api, k: Api, robot: str, namespace: str, secret: str,
                 permissions: list[dict[str, Any]] | None = None) -> str:
    """Make sure the robot exists and its credentials are in the Kubernetes Secret.

    Returns what was done: ``kept``, ``created`` or ``refreshed`` (an existing robot whose secret
    was lost gets a new one: Harbor shows a robot's secret only once).
    """
    status, _ = k.call("GET", f"/api/v1/namespaces/{namespace}/secrets/{secret}", ok=(200, 404))
    _, robots = h.call("GET", f"/robots?q=name%3D{robot}")
    existing = [r for r in robots or [] if r.get("name", "").endswith(f"${robot}") or r.get("name") == robot]
    if existing and status == 200:
        return "kept"
    if existing:
        rid = existing[0]["id"]
        _, refreshed = h.call("PATCH", f"/robots/{rid}", {"secret": ""})
        name, value, action = existing[0]["name"], refreshed["secret"], "refreshed"
    else:
        body = {
            "name": robot,
            "description": "aiinfn nodes: pull managed environments" if permissions is None
            else "aiinfn image builds: push the platform's notebook images",
            "duration": -1,
            "level": "system",
            "disable": False,
            "permissions": ROBOT_PERMISSIONS if permissions is None else permissions,
        }
        _, created = h.call("POST", "/robots", body, ok=(201,))
        name, value, action = created["name"], created["secret"], "created"
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "aiinfn"}},
        "type": "Opaque",
        "stringData": {"username": name, "password": value},
    }
    if status == 200:
        k.call("PUT", f"/api/v1/namespaces/{namespace}/secrets/{secret}", manifest)
    else:
        k.call("POST", f"/api/v1/namespaces/{namespace}/secrets", manifest, ok=(201,))
    return action


def admin_password() -> str:
    """The admin password: the file HARBOR_ADMIN_PASSWORD_FILE names, else HARBOR_ADMIN_PASSWORD."""
    path = os.environ.get("HARBOR_ADMIN_PASSWORD_FILE")
    if path:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise SetupError(f"HARBOR_ADMIN_PASSWORD_FILE {path}: cannot read ({e.strerror})") from None
    if "HARBOR_ADMIN_PASSWORD" not in os.environ:
        raise SetupError("environment variable HARBOR_ADMIN_PASSWORD_FILE (or HARBOR_ADMIN_PASSWORD) is not set")
    return os.environ["HARBOR_ADMIN_PASSWORD"]


def proxy_caches() -> list[dict[str, str]]:
    raw = os.environ.get("HARBOR_PROXY_CACHES", "[]")
    try:
        caches = json.loads(raw)
        return [{k: str(c[k]) for k in ("project", "registry", "type", "url")} for c in caches]
    except (ValueError, KeyError, TypeError) as e:
        raise SetupError(f"HARBOR_PROXY_CACHES: not a list of project/registry/type/url objects ({e})") from None


def main() -> int:
    try:
        env = {k: os.environ[k] for k in ("HARBOR_URL", "HARBOR_PROJECTS", "HARBOR_ROBOT",
                                          "TARGET_NAMESPACE", "TARGET_SECRET")}
    except KeyError as e:
        print(f"harbor-setup: environment variable {e.args[0]} is not set", file=sys.stderr)
        return 1
    try:
        h = harbor(env["HARBOR_URL"], admin_password())
        for project in [p.strip() for p in env["HARBOR_PROJECTS"].split(",") if p.strip()]:
            print(f"project {project}: {'created' if ensure_project(h, project) else 'present'}")
        for c in proxy_caches():
            print(f"proxy cache {c['project']} ({c['registry']}): "
                  f"{ensure_proxy_cache(h, c['project'], c['registry'], c['type'], c['url'])}")
        push = os.environ.get("HARBOR_ROBOT_PUSH_PROJECT")
        done = ensure_robot(h, kubernetes(), env["HARBOR_ROBOT"], env["TARGET_NAMESPACE"], env["TARGET_SECRET"],
                            push_permissions(push) if push else None)
        print(f"robot {env['HARBOR_ROBOT']}: {done}")
    except SetupError as e:
        print(f"harbor-setup: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
