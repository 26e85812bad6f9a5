"""A stand-in for the reads the hub makes of the Kubernetes API, and for Kueue holding a notebook.

No API server runs here. The hub's own code (``aiinfn_cluster``, through KubeSpawner's
kubernetes_asyncio client and a kubeconfig naming this server) reads:

* ``GET /api/v1/namespaces/<ns>/configmaps?labelSelector=k=v``: the ConfigMaps a test put there
  (event registrations), filtered by the one ``k=v`` selector as the API filters;
* ``GET /api/v1/nodes``: the nodes a test describes (labels, taints, allocatable, unschedulable);
* ``GET /apis/kueue.x-k8s.io/v1beta2/clusterqueues``: ClusterQueues with ``status.flavorsUsage``;
* ``GET /apis/kueue.x-k8s.io/v1beta2/namespaces/<ns>/workloads``: the Workloads Kueue would have made
  (``notebook_workload``: admitted at a given time, or pending since one: the expected wait's input).

And the recording spawner (hub_spawner) tells it of each notebook pod it "creates"
(``POST /aiinfn/pods``) and asks for its phase (``GET /aiinfn/pods/<ns>/<name>``): a pod asking for a
kind the test holds (``hold(node_labels)``) is Pending behind a Workload whose QuotaReserved condition
is False with Kueue's message, until ``admit(pod)``; every other pod runs. Anything else is 404 and
recorded in ``unknown`` (a test can assert the hub asked nothing unexpected). Gap: no watch, no
resourceVersion, no field selectors, no authentication (the hub's RBAC is checked by
tests/security/test_rbac.py, not here).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
FULL_MESSAGE = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in "
                "flavor {flavor}, 1 more needed")


class Kube:
    """The state a test controls; the server reads it under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configmaps: dict[str, list[dict[str, Any]]] = {}
        self.nodes: list[dict[str, Any]] = []
        self.cluster_queues: list[dict[str, Any]] = []
        self.workloads: dict[str, list[dict[str, Any]]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.held: list[tuple[dict[str, str], str]] = []
        self.unknown: list[str] = []
        self.url = ""

    # ------------------------------------------------------------ what tests set

    def put_configmap(self, obj: dict[str, Any]) -> None:
        with self.lock:
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            items = [c for c in self.configmaps.get(ns, []) if c["metadata"]["name"] != name]
            self.configmaps[ns] = [*items, obj]

    def delete_configmap(self, ns: str, name: str) -> None:
        with self.lock:
            self.configmaps[ns] = [c for c in self.configmaps.get(ns, []) if c["metadata"]["name"] != name]

    def hold(self, node_labels: dict[str, str], flavor: str) -> None:
        """Pods asking for these node labels wait in Kueue (no quota) until ``admit``."""
        with self.lock:
            self.held.append((dict(node_labels), flavor))

    def release_holds(self) -> None:
        with self.lock:
            self.held.clear()

    def admit(self, pod_name: str) -> None:
        with self.lock:
            for key, pod in self.pods.items():
                if key.endswith("/" + pod_name):
                    pod["phase"] = "Running"
                    ns = key.split("/")[0]
                    for w in self.workloads.get(ns, []):
                        if w["metadata"]["ownerReferences"][0]["uid"] == pod["uid"]:
                            w["status"]["conditions"] = [{"type": "QuotaReserved", "status": "True",
                                                          "reason": "QuotaReserved", "message": "Quota reserved"},
                                                         {"type": "Admitted", "status": "True", "reason": "Admitted",
                                                          "message": "The workload is admitted"}]

    # ------------------------------------------------------------ what the hub's recorder says

    def pod_created(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        spec = pod.get("spec", {})
        selector = spec.get("nodeSelector") or {}
        with self.lock:
            flavor = next((f for labels, f in self.held if all(selector.get(k) == v for k, v in labels.items())),
                          None)
            phase = "Pending" if flavor else "Running"
            self.pods[f"{ns}/{name}"] = {"phase": phase, "uid": uid}
            if flavor:
                self.workloads.setdefault(ns, []).append({
                    "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
                    "metadata": {"name": f"pod-{name}-1a2b3", "namespace": ns, "creationTimestamp": stamp(time.time()),
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]},
                    "spec": {"queueName": "interactive", "podSets": [{"name": "main", "count": 1, "template": {
                        "spec": {"nodeSelector": selector, "containers": spec.get("containers", [])}}}]},
                    "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                               "message": FULL_MESSAGE.format(flavor=flavor)}]},
                })
        return phase

    def pod_phase(self, ns: str, name: str) -> str:
        with self.lock:
            return str(self.pods.get(f"{ns}/{name}", {}).get("phase", "Unknown"))

    # ------------------------------------------------------------ serving

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segs = [s for s in parts.path.split("/") if s]
        with self.lock:
            if method == "POST" and parts.path == "/aiinfn/pods":
                pass
            elif method == "GET" and segs[:3] == ["api", "v1", "namespaces"] and len(segs) == 5 \
                    and segs[4] == "configmaps":
                items = self.configmaps.get(segs[3], [])
                if "labelSelector" in query:
                    k, _, v = query["labelSelector"].partition("=")
                    items = [c for c in items if (c["metadata"].get("labels") or {}).get(k) == v]
                return 200, {"kind": "ConfigMapList", "apiVersion": "v1", "items": items}
            elif method == "GET" and parts.path == "/api/v1/nodes":
                return 200, {"kind": "NodeList", "apiVersion": "v1", "items": self.nodes}
            elif method == "GET" and parts.path == f"{KUEUE}/clusterqueues":
                return 200, {"kind": "ClusterQueueList", "items": self.cluster_queues}
            elif method == "GET" and parts.path.startswith(f"{KUEUE}/namespaces/") and segs[-1] == "workloads":
                return 200, {"kind": "WorkloadList", "items": self.workloads.get(segs[-2], [])}
            elif method == "GET" and segs[:2] == ["aiinfn", "pods"] and len(segs) == 4:
                pass
            else:
                self.unknown.append(f"{method} {path}")
                return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
        if method == "POST":
            return 200, {"phase": self.pod_created(json.loads(body))}
        return 200, {"phase": self.pod_phase(segs[2], segs[3])}


def node(name: str, labels: dict[str, str], allocatable: dict[str, str], *, taints: list[dict[str, str]] | None = None,
         unschedulable: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                                                      **labels}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": "16", "memory": "64Gi", **allocatable}}}


def cluster_queue(name: str, usage: dict[str, int], resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name},
            "status": {"flavorsUsage": [{"name": f, "resources": [{"name": resource, "total": str(n), "borrowed": "0"}]}
                                        for f, n in usage.items()]}}


def stamp(posix: float) -> str:
    """A time as the API writes it (RFC 3339, seconds, UTC)."""
    return dt.datetime.fromtimestamp(int(posix), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def notebook_workload(name: str, ns: str, node_labels: dict[str, str], resource: str, *, admitted_at: float | None,
                      created_at: float) -> dict[str, Any]:
    """A notebook pod's Workload as Kueue keeps it: admitted (conditions True since ``admitted_at``) or
    pending (QuotaReserved False), created at ``created_at``."""
    if admitted_at is not None:
        conditions = [{"type": t, "status": "True", "reason": t, "message": "",
                       "lastTransitionTime": stamp(admitted_at)} for t in ("QuotaReserved", "Admitted")]
    else:
        conditions = [{"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "no quota",
                       "lastTransitionTime": stamp(created_at)}]
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": f"pod-{name}-0f0f0", "namespace": ns, "creationTimestamp": stamp(created_at),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": f"uid-{name}"}]},
            "spec": {"queueName": "interactive", "podSets": [{"name": "main", "count": 1, "template": {"spec": {
                "nodeSelector": dict(node_labels),
                "containers": [{"name": "notebook", "resources": {"limits": {resource: "1"},
                                                                 "requests": {resource: "1"}}}]}}}]},
            "status": {"conditions": conditions}}


@contextmanager
def running_kube() -> Iterator[Kube]:
    kube = Kube()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def _do(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code, doc = kube.answer(method, self.path, body)
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._do("GET")

        def do_POST(self) -> None:
            self._do("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kube.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield kube
    finally:
        server.shutdown()
        thread.join(timeout=10)
