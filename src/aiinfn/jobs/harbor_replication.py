"""Harbor replication from the federation's primary Harbor to the other sites' Harbors, run as a Job at
the primary (after the primary's own setup Job has made its projects).

For each replica: a registry endpoint ``aiinfn-<replica>`` (type ``harbor``, the replica's URL, the
replication account's credentials, TLS verified), and per replicated project a push-based policy
``aiinfn-<project>-to-<replica>``: every push to ``<project>/**`` is copied to the same project at the
replica (which the replica's own setup Job creates), deletions are not, and a first manual execution
copies what is already there. Idempotent: a rerun only reads. An endpoint whose URL or credentials
changed is updated in place (Harbor never returns a stored secret, so the endpoint's description
carries a digest of the credentials it was given); a policy that drifted is updated.

Standard library only (it runs in the pinned plain Python image), and it reuses the setup Job's client
(``harbor_setup.py``, shipped beside it). Environment: HARBOR_URL, HARBOR_ADMIN_PASSWORD_FILE (or
HARBOR_ADMIN_PASSWORD), REPLICAS (JSON: a list of ``{"name", "url"}``), PROJECTS (comma separated),
REPLICA_CREDENTIALS_FILE (``<user>:<password>`` of the replicas' replication account; a file of the
Job's Secret mount). Exit code 0 when everything is in place, 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

try:  # as a module of the package (tests) or as a script beside harbor_setup.py (the Job)
    from .harbor_setup import Api, SetupError, admin_password, harbor
except ImportError:  # pragma: no cover - the Job's layout
    from harbor_setup import Api, SetupError, admin_password, harbor  # type: ignore[no-redef]

PREFIX = "aiinfn"


def endpoint_name(replica: str) -> str:
    return f"{PREFIX}-{replica}"


def policy_name(project: str, replica: str) -> str:
    return f"{PREFIX}-{project}-to-{replica}"


def credential_digest(user: str, password: str) -> str:
    """What the endpoint's description records of its credentials (never the credentials)."""
    return "aiinfn credentials " + hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()[:16]


def _find(h: Api, path: str, name: str) -> dict[str, Any] | None:
    _, found = h.call("GET", path)
    return next((r for r in found or [] if isinstance(r, dict) and r.get("name") == name), None)


def ensure_endpoint(h: Api, replica: str, url: str, user: str, password: str) -> tuple[int, str]:
    """The replica's registry endpoint: its id and ``present``, ``created`` or ``updated``."""
    name = endpoint_name(replica)
    digest = credential_digest(user, password)
    body = {"name": name, "type": "harbor", "url": url.rstrip("/"), "insecure": False, "description": digest,
            "credential": {"type": "basic", "access_key": user, "access_secret": password}}
    found = _find(h, f"/registries?q=name%3D{name}", name)
    if found is None:
        h.call("POST", "/registries", body, ok=(201,))
        created = _find(h, f"/registries?q=name%3D{name}", name)
        if created is None:
            raise SetupError(f"registry endpoint {name}: created but not listed by Harbor")
        return int(created["id"]), "created"
    same = (str(found.get("url", "")).rstrip("/") == body["url"] and found.get("description") == digest
            and not found.get("insecure") and found.get("type") == "harbor")
    if same:
        return int(found["id"]), "present"
    h.call("PUT", f"/registries/{int(found['id'])}", body, ok=(200,))
    return int(found["id"]), "updated"


def policy_body(project: str, replica: str, registry_id: int) -> dict[str, Any]:
    return {
        "name": policy_name(project, replica),
        "description": f"every push to {project} at the primary, copied to {replica}",
        "src_registry": None,
        "dest_registry": {"id": registry_id},
        "dest_namespace": project,
        "filters": [{"type": "name", "value": f"{project}/**"}],
        "trigger": {"type": "event_based"},
        "deletion": False,
        "override": True,
        "enabled": True,
        "speed": -1,
    }


def _drifted(found: dict[str, Any], want: dict[str, Any]) -> bool:
    dest = (found.get("dest_registry") or {}).get("id")
    return (dest != want["dest_registry"]["id"] or found.get("filters") != want["filters"]
            or (found.get("trigger") or {}).get("type") != want["trigger"]["type"]
            or found.get("dest_namespace") != want["dest_namespace"] or not found.get("enabled")
            or bool(found.get("deletion")))


def ensure_policy(h: Api, project: str, replica: str, registry_id: int) -> str:
    """``present``, ``created`` (and a first execution started) or ``updated``."""
    want = policy_body(project, replica, registry_id)
    name = want["name"]
    found = _find(h, f"/replication/policies?name={name}", name)
    if found is None:
        h.call("POST", "/replication/policies", want, ok=(201,))
        created = _find(h, f"/replication/policies?name={name}", name)
        if created is None:
            raise SetupError(f"replication policy {name}: created but not listed by Harbor")
        h.call("POST", "/replication/executions", {"policy_id": int(created["id"])}, ok=(201,))
        return "created"
    if not _drifted(found, want):
        return "present"
    h.call("PUT", f"/replication/policies/{int(found['id'])}", want, ok=(200,))
    return "updated"


def replicas() -> list[dict[str, str]]:
    try:
        items = json.loads(os.environ.get("REPLICAS", "[]"))
        out = [{"name": str(r["name"]), "url": str(r["url"])} for r in items]
    except (ValueError, KeyError, TypeError) as e:
        raise SetupError(f"REPLICAS: not a list of name/url objects ({e})") from None
    for r in out:
        if not r["url"].startswith("https://"):
            raise SetupError(f"REPLICAS: {r['name']}'s url is not https")
    return out


def credentials() -> tuple[str, str]:
    path = os.environ.get("REPLICA_CREDENTIALS_FILE")
    if not path:
        raise SetupError("environment variable REPLICA_CREDENTIALS_FILE is not set")
    try:
        with open(path) as f:
            user, sep, password = f.read().strip().partition(":")
    except OSError as e:
        raise SetupError(f"REPLICA_CREDENTIALS_FILE {path}: cannot read ({e.strerror})") from None
    if not sep or not user or not password:
        raise SetupError(f"REPLICA_CREDENTIALS_FILE {path}: not '<user>:<password>'")
    return user, password


def main() -> int:
    try:
        url = os.environ["HARBOR_URL"]
        projects = [p.strip() for p in os.environ["PROJECTS"].split(",") if p.strip()]
    except KeyError as e:
        print(f"harbor-replication: environment variable {e.args[0]} is not set", file=sys.stderr)
        return 1
    try:
        h = harbor(url, admin_password())
        user, password = credentials()
        for r in replicas():
            rid, done = ensure_endpoint(h, r["name"], r["url"], user, password)
            print(f"endpoint {endpoint_name(r['name'])}: {done}")
            for project in projects:
                print(f"policy {policy_name(project, r['name'])}: {ensure_policy(h, project, r['name'], rid)}")
    except SetupError as e:
        print(f"harbor-replication: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
