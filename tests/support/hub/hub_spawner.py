"""The platform's spawner with only its Kubernetes writes replaced (loaded by the hub process of the harness).

``RecordingKubeSpawner`` is the real ``aiinfn_spawner.PlatformSpawner`` (the hub's own module, the real
KubeSpawner 7 under it): profiles, overrides, options, the platform's checks, the pod and PVC
manifests (``get_pod_manifest``, ``get_pvc_manifest``, ``modify_pod_hook``) and the start/stop logic
all run. What would go to the Kubernetes API instead:

* create PVC / create pod: the object is serialized exactly as kubernetes_asyncio would send it and
  written to ``$AIINFN_HUB_RECORD/{pvcs,pods}/<namespace>.<name>.json``; the pod is announced to the
  stand-in API (hub_kube, ``POST /aiinfn/pods``), which says whether Kueue holds it: a held pod shows
  up in the pod reflector as Pending until the stand-in admits it (polled), any other as running
  (phase Running, its container ready, podIP 127.0.0.1);
* delete pod: the pod leaves the reflector and ``.../deleted/<namespace>.<name>`` is written;
* the pod and event reflectors (watches) are in-memory: nothing else changes the cluster here.

The pod's URL is a stand-in notebook server in this process (one HTTP server on a free port of
127.0.0.1 that answers 200), so the hub's readiness check and the proxy's routes work.
Every other Kubernetes call (the platform's reads: registrations, nodes, ClusterQueues, Workloads)
goes to the kubeconfig's server: the stand-in API, which answers only what it knows.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from aiinfn_spawner import PlatformSpawner
from tornado import httpclient, httpserver, web
from tornado.netutil import bind_sockets


class _Reflector:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        loop = asyncio.get_event_loop()
        self.first_load_future: asyncio.Future[None] = loop.create_future()
        self.first_load_future.set_result(None)

    async def stop(self) -> None:
        return None


class _Notebook(web.RequestHandler):
    def get(self, *args: Any) -> None:
        self.set_header("X-Aiinfn-Standin", "notebook")
        self.write({"stand-in": "notebook", "path": self.request.path})

    post = put = delete = get


_NOTEBOOK_PORT: int | None = None


def _notebook_port() -> int:
    global _NOTEBOOK_PORT
    if _NOTEBOOK_PORT is None:
        server = httpserver.HTTPServer(web.Application([(r"/(.*)", _Notebook)]))
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        _NOTEBOOK_PORT = sockets[0].getsockname()[1]
    return _NOTEBOOK_PORT


_RUNNING = {
    "phase": "Running",
    "podIP": "127.0.0.1",
    "containerStatuses": [{"name": "notebook", "ready": True, "state": {"running": {}}}],
}


def _record(kind: str, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata", {})
    folder = Path(os.environ["AIINFN_HUB_RECORD"]) / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{meta.get('namespace')}.{meta.get('name')}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)


def _kube_url() -> str:
    return os.environ["AIINFN_HUB_KUBE_URL"]


async def _kube(method: str, path: str, body: Any = None) -> dict[str, Any]:
    resp = await httpclient.AsyncHTTPClient().fetch(
        _kube_url() + path, method=method, body=json.dumps(body) if body is not None else None,
        headers={"Content-Type": "application/json"})
    answer: dict[str, Any] = json.loads(resp.body)
    return answer


class RecordingKubeSpawner(PlatformSpawner):  # type: ignore[misc]
    _waiters: set[asyncio.Future[None]] = set()
    _reflector: _Reflector | None = None

    def _shared_reflector(self) -> _Reflector:
        cls = type(self)
        if cls._reflector is None:
            cls._reflector = _Reflector()
        return cls._reflector

    async def _start_watching_pods(self, replace: bool = False) -> _Reflector:
        reflector = self._shared_reflector()
        self.__class__.reflectors[self._get_reflector_key("pods")] = reflector
        return reflector

    async def _start_watching_events(self, replace: bool = False) -> _Reflector:
        reflector = self._shared_reflector()
        self.__class__.reflectors[self._get_reflector_key("events")] = reflector
        return reflector

    def _serialize(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api.api_client.sanitize_for_serialization(obj)
        return data

    async def _make_create_pvc_request(self, pvc: Any, request_timeout: float) -> bool:
        manifest = self._serialize(pvc)
        manifest.setdefault("metadata", {})["namespace"] = self.namespace
        _record("pvcs", manifest)
        return True

    async def _check_pvc_exists(self, pvc_name: str, namespace: str) -> bool:
        return (Path(os.environ["AIINFN_HUB_RECORD"]) / "pvcs" / f"{namespace}.{pvc_name}.json").exists()

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        manifest = self._serialize(pod)
        manifest.setdefault("metadata", {})["namespace"] = self.namespace  # the API call's namespace
        _record("pods", manifest)
        running = json.loads(json.dumps(manifest))
        meta = running.setdefault("metadata", {})
        meta["uid"] = str(uuid.uuid4())
        meta.setdefault("namespace", self.namespace)
        phase = (await _kube("POST", "/aiinfn/pods", running))["phase"]
        key = f"{self.namespace}/{self.pod_name}"
        if phase == "Running":
            running["status"] = _RUNNING
        else:
            running["status"] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}
            self._waiters.add(asyncio.ensure_future(self._wait_admitted(key, self.namespace, self.pod_name)))
        self._shared_reflector().pods[key] = running
        return True

    async def _wait_admitted(self, key: str, namespace: str, name: str) -> None:
        """Poll the stand-in until Kueue (the test) admits the held pod, then report it running."""
        while key in self._shared_reflector().pods:
            if (await _kube("GET", f"/aiinfn/pods/{namespace}/{name}"))["phase"] == "Running":
                pod = self._shared_reflector().pods.get(key)
                if pod is not None:
                    pod["status"] = _RUNNING
                return
            await asyncio.sleep(0.3)

    async def _make_delete_pod_request(
        self, pod_name: str, delete_options: Any, grace_seconds: int, request_timeout: float
    ) -> bool:
        self._shared_reflector().pods.pop(f"{self.namespace}/{pod_name}", None)
        folder = Path(os.environ["AIINFN_HUB_RECORD"]) / "deleted"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.namespace}.{pod_name}").write_text("")
        return True

    async def _make_delete_pvc_request(self, pvc_name: str, request_timeout: float) -> bool:
        return True

    def _get_pod_url(self, pod: dict[str, Any]) -> str:
        return f"http://127.0.0.1:{_notebook_port()}"
