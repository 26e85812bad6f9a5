"""What ``aiinfn event status`` and ``down`` read from a site's cluster, through kubectl.

The kubeconfig (a secret: the site stack's output, or a file the operator gives) is written to a 0600
file in a 0700 directory of its own, removed afterwards, and reaches kubectl only as ``--kubeconfig``;
every call has a time limit. Reads only: nothing here changes the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AiinfnError, ToolMissingError

TIMEOUT = 30
#: zero-to-jupyterhub's label of single-user servers.
SERVER_SELECTOR = "component=singleuser-server"

#: kubectl's runner: args -> (exit code, stdout, stderr); replaced by the tests.
Runner = Callable[[list[str]], tuple[int, str, str]]


def _run(args: list[str]) -> tuple[int, str, str]:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"kubectl gave no answer within {TIMEOUT} s"
    return res.returncode, res.stdout, res.stderr


@contextmanager
def kubeconfig_file(text: str) -> Iterator[Path]:
    """``text`` as a private file for the duration of the block."""
    d = Path(tempfile.mkdtemp(prefix="aiinfn-kube-"))
    try:
        os.chmod(d, 0o700)
        f = d / "kubeconfig"
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        yield f
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Cluster:
    """kubectl against one site's cluster."""

    kubeconfig: Path
    site: str
    runner: Runner = _run

    @staticmethod
    def require_kubectl() -> None:
        if shutil.which("kubectl") is None:
            raise ToolMissingError("kubectl is not installed: install it to read the event's state from the cluster "
                                   "(or run without --kubeconfig to see the stack outputs only)")

    def get(self, *what: str) -> dict[str, Any]:
        code, out, err = self.runner(["kubectl", "--kubeconfig", str(self.kubeconfig), "get", *what, "-o", "json"])
        if code != 0:
            first = (err.strip().splitlines() or ["no output"])[0][:300]
            raise AiinfnError(f"site {self.site!r}: kubectl get {' '.join(what)} failed: {first}")
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            raise AiinfnError(f"site {self.site!r}: kubectl get {' '.join(what)} did not answer JSON") from None
        return doc if isinstance(doc, dict) else {}

    def items(self, *what: str) -> list[dict[str, Any]]:
        return [i for i in self.get(*what).get("items", []) if isinstance(i, dict)]

    def running_servers(self, namespace: str) -> list[str]:
        """Users with a running server in ``namespace`` (the hub's ``hub.jupyter.org/username`` annotation)."""
        out = []
        for pod in self.items("pods", "-n", namespace, "-l", SERVER_SELECTOR):
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            meta = pod.get("metadata") or {}
            user = (meta.get("annotations") or {}).get("hub.jupyter.org/username") or meta.get("name", "?")
            out.append(str(user))
        return sorted(out)

    def placeholders(self, namespace: str) -> tuple[int, int]:
        """(placeholders holding a seat, placeholders waiting) in the event's hold namespace."""
        pods = self.items("pods", "-n", namespace)
        running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        return running, len(pods) - running

    def queue_usage(self, cluster_queue: str) -> dict[str, str]:
        """The ClusterQueue's admitted usage per flavor and resource (``flavor/resource`` -> quantity)."""
        cq = self.get("clusterqueue", cluster_queue)
        out: dict[str, str] = {}
        for f in (cq.get("status") or {}).get("flavorsUsage") or []:
            for r in f.get("resources") or []:
                out[f"{f.get('name')}/{r.get('name')}"] = str(r.get("total", "0"))
        return dict(sorted(out.items()))

    def claims(self, namespace: str, skip: tuple[str, ...] = ()) -> list[str]:
        """The claims in ``namespace`` (participants' homes), but ``skip``, each as ``name:uid:gid`` (its
        owner, recorded on it by the hub's spawner: the archive reads each home as its owner). A claim
        without a recorded owner stops here, before anything is archived or destroyed."""
        from ..services.event import ArchiveClaim

        out = []
        for c in self.items("pvc", "-n", namespace):
            name = str((c.get("metadata") or {}).get("name", ""))
            if not name or name in skip:
                continue
            try:
                out.append(str(ArchiveClaim.of(c)))
            except ValueError as e:
                raise AiinfnError(f"site {self.site!r}, namespace {namespace}: {e}; archive it by hand, then pass "
                                  "--no-archive") from None
        return sorted(out)
