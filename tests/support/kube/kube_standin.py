"""A stand-in Kubernetes API endpoint for the official Python client (no API server runs here).

``running_api(namespaces)`` serves, over HTTP on 127.0.0.1, the REST paths and verbs the batch service
uses, the way kube-apiserver answers them:

* namespaced collections of ``batch/v1`` jobs, ``v1`` pods, pods' ``log``, persistentvolumeclaims,
  configmaps and ``kueue.x-k8s.io/v1beta2`` workloads, and the cluster-scoped ``v1`` persistentvolumes:
  ``create`` (POST), ``get``, ``list`` (with ``labelSelector``:
  ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, comma-separated), ``delete``;
* what the API server adds or refuses that costs nothing to get right: ``uid``, ``resourceVersion``,
  ``creationTimestamp``, a ``Status`` object with the reason on 404 (``NotFound``, also for a namespace
  that does not exist) and 409 (``AlreadyExists``), 405 for a verb the path does not serve, a JSON
  body that does not parse (400).

It enforces nothing it cannot do faithfully: no schema validation, admission, RBAC, defaulting,
controllers (a Job gets no status, pods and workloads appear only when a test adds them: ``add_pod``,
``add_workload``, ``set_job_status``, ``put``). Tests judge what was sent instead: ``created`` (every object as
sent), ``requests`` (method, path, query, the bearer token), against the real schemas and the service's
RBAC.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

#: (path prefix, group, version, resource) the stand-in serves.
RESOURCES = {
    "jobs": ("/apis/batch/v1", "batch", "v1", "Job"),
    "pods": ("/api/v1", "", "v1", "Pod"),
    "persistentvolumeclaims": ("/api/v1", "", "v1", "PersistentVolumeClaim"),
    "configmaps": ("/api/v1", "", "v1", "ConfigMap"),
    "workloads": ("/apis/kueue.x-k8s.io/v1beta2", "kueue.x-k8s.io", "v1beta2", "Workload"),
}
#: Cluster-scoped resources the stand-in serves (stored under namespace "").
CLUSTER_RESOURCES = {"persistentvolumes": ("/api/v1", "", "v1", "PersistentVolume")}
CLUSTER_RE = re.compile(r"(?P<prefix>/api/v1)/(?P<resource>persistentvolumes)(?:/(?P<name>[a-z0-9.-]+))?(?P<sub>)")
PATH_RE = re.compile(r"(?P<prefix>/api/v1|/apis/[a-z0-9.-]+/v[0-9a-z]+)/namespaces/(?P<ns>[a-z0-9-]+)/"
                     r"(?P<resource>[a-z]+)(?:/(?P<name>[a-z0-9.-]+))?(?:/(?P<sub>[a-z]+))?")
TOKEN = "standin-service-account-token"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None
    namespace: str | None
    resource: str | None
    subresource: str | None
    status: int = 0


@dataclass
class Api:
    url: str
    namespaces: set[str]
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ test helpers

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "batch"}}],
            "users": [{"name": "batch", "user": {"token": TOKEN}}],
        }))
        return path

    def of(self, resource: str, namespace: str | None = None,
           selector: list[tuple[str, str, str | None]] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items())
                    if r == resource and (namespace is None or ns == namespace)
                    and _matches((o.get("metadata") or {}).get("labels") or {}, selector or [])]

    def add_pod(self, job: dict[str, Any], log: str = "", phase: str = "Running") -> dict[str, Any]:
        meta = job["metadata"]
        name = f"{meta['name']}-{uuid.uuid4().hex[:5]}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": meta["namespace"],
                            "labels": {"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}},
               "spec": copy.deepcopy(job["spec"]["template"]["spec"]), "status": {"phase": phase}}
        self._store("pods", meta["namespace"], pod)
        self.logs[(meta["namespace"], name)] = log
        return pod

    def add_workload(self, job: dict[str, Any], conditions: list[dict[str, Any]],
                     flavors: dict[str, str] | None = None) -> dict[str, Any]:
        meta = job["metadata"]
        wl: dict[str, Any] = {
            "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": f"job-{meta['name']}-{uuid.uuid4().hex[:5]}", "namespace": meta["namespace"],
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "spec": {"queueName": "default"},
            "status": {"conditions": conditions},
        }
        if flavors:
            wl["status"]["admission"] = {"clusterQueue": "x", "podSetAssignments": [{"name": "main",
                                                                                     "flavors": flavors}]}
        self._store("workloads", meta["namespace"], wl)
        return wl

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """An object as another component made it (a registration, a claim the spawner made)."""
        return self._store(resource, obj["metadata"].get("namespace", ""), copy.deepcopy(obj))

    def remove(self, resource: str, namespace: str, name: str) -> None:
        with self.lock:
            self.objects.pop((resource, namespace, name), None)

    def set_job_status(self, namespace: str, name: str, status: dict[str, Any], suspend: bool | None = None) -> None:
        with self.lock:
            obj = self.objects[("jobs", namespace, name)]
            obj["status"] = status
            if suspend is not None:
                obj["spec"]["suspend"] = suspend

    # ------------------------------------------------------------ the API's behaviour

    def _store(self, resource: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        meta.update({"uid": str(uuid.uuid4()), "resourceVersion": str(time.time_ns()),
                     "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        with self.lock:
            self.objects[(resource, namespace, meta["name"])] = obj
        return obj


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _selector(text: str) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append(("!=", k, v))
        elif "==" in part or "=" in part:
            k, v = re.split("==?", part, maxsplit=1)
            out.append(("=", k, v))
        elif part.startswith("!"):
            out.append(("!", part[1:], None))
        else:
            out.append(("exists", part, None))
    return out


def _matches(labels: dict[str, str], selector: list[tuple[str, str, str | None]]) -> bool:
    for op, k, v in selector:
        if (op == "=" and labels.get(k) != v) or (op == "!=" and labels.get(k) == v):
            return False
        if (op == "exists" and k not in labels) or (op == "!" and k in labels):
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    api: Api

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        self._request.status = code

    def _handle(self, method: str) -> None:
        u = urlsplit(self.path)
        auth = self.headers.get("Authorization", "")
        m = PATH_RE.fullmatch(u.path)
        cluster = CLUSTER_RE.fullmatch(u.path) if m is None else None
        self._request = Request(method, u.path, parse_qs(u.query), auth.removeprefix("Bearer ") or None,
                                m["ns"] if m else None, m["resource"] if m else cluster and cluster["resource"],
                                m["sub"] if m else None)
        with self.api.lock:
            self.api.requests.append(self._request)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        served = {**RESOURCES, **CLUSTER_RESOURCES}
        if cluster is not None:
            ns, resource, name, sub = "", cluster["resource"], cluster["name"], None
        elif not m or m["resource"] not in RESOURCES or RESOURCES[m["resource"]][0] != m["prefix"]:
            return self._send(404, _status(404, "NotFound", f"the server could not find the resource ({u.path})"))
        else:
            ns, resource, name, sub = m["ns"], m["resource"], m["name"], m["sub"]
            if ns not in self.api.namespaces:
                return self._send(404, _status(404, "NotFound", f'namespaces "{ns}" not found'))
        kind = served[resource][3]
        key = (resource, ns, name or "")
        if sub == "log" and resource == "pods" and method == "GET":
            if key not in self.api.objects:
                return self._send(404, _status(404, "NotFound", f'pods "{name}" not found'))
            text = self.api.logs.get((ns, name or ""), "")
            tail = int((self._request.query.get("tailLines") or ["0"])[0])
            if tail:
                text = "".join(text.splitlines(keepends=True)[-tail:])
            return self._send(200, text, "text/plain")
        if sub is not None:
            return self._send(404, _status(404, "NotFound", f"no subresource {sub}"))
        if method == "POST" and name is None:
            try:
                obj = json.loads(raw)
            except ValueError:
                return self._send(400, _status(400, "BadRequest", "the body is not JSON"))
            obj_name = (obj.get("metadata") or {}).get("name")
            if not obj_name:
                return self._send(422, _status(422, "Invalid", "metadata.name: Required value"))
            if (resource, ns, obj_name) in self.api.objects:
                return self._send(409, _status(409, "AlreadyExists", f'{resource} "{obj_name}" already exists'))
            with self.api.lock:
                self.api.created.append(copy.deepcopy(obj))
            stored = self.api._store(resource, ns, obj)
            return self._send(201, stored)
        if method == "GET" and name is None:
            selector = _selector((self._request.query.get("labelSelector") or [""])[0])
            items = self.api.of(resource, ns, selector)
            group_version = "/".join(p for p in served[resource][1:3] if p)
            return self._send(200, {"apiVersion": group_version, "kind": f"{kind}List",
                                    "metadata": {"resourceVersion": str(time.time_ns())}, "items": items})
        if method == "GET":
            with self.api.lock:
                found = copy.deepcopy(self.api.objects.get(key))
            if found is None:
                return self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
            return self._send(200, found)
        if method == "DELETE" and name is not None:
            with self.api.lock:
                gone = self.api.objects.pop(key, None)
            if gone is None:
                return self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details":
                                    {"name": name, "kind": resource}})
        return self._send(405, _status(405, "MethodNotAllowed", f"{method} is not served on {u.path}"))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


@contextmanager
def running_api(namespaces: set[str]) -> Iterator[Api]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api = Api(f"http://127.0.0.1:{server.server_address[1]}", set(namespaces))
    server.RequestHandlerClass = type("BoundHandler", (Handler,), {"api": api})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
