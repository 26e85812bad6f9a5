"""Benchmark: submissions the batch service sustains, and their latency, for 1, 10 and 50 concurrent users.

Everything real but the Kubernetes API: the z2jh-pinned JupyterHub with the chart's own config (the
harness of tests/support/hub: the IAM stand-in, configurable-http-proxy), the batch service started as its
Deployment starts it (``python3 -m aiinfn_batch.service`` over the ConfigMap's files and settings), each
user logged in through the OAuth code flow with a JupyterHub token of their own, and the stand-in API of
tests/support/kube behind the official Kubernetes client (it answers at once: the figures are the
service's and the hub's, not an API server's). Every submission is checked by the hub (the token, then
the user's groups and recorded identity), counts the user's unfinished jobs, makes or reads the user's home claim
(none here: the benchmark's users never start a notebook, so their jobs run without a home) and creates the Job.

For each concurrency C (users submitting at once, each from its own thread and connection), every user
submits ``--jobs`` jobs back to back; printed: submissions per second over the run, p50 and p99 latency.

Usage (root, as the hub tests: a mount namespace for the chart's paths; about a minute):
    python benchmarks/batch.py [--jobs 20] [--users 1,10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
for sub in ("hub", "kube"):
    sys.path.insert(0, str(ROOT / "tests" / "support" / sub))

import hub_harness  # noqa: E402
import hub_iam  # noqa: E402
import kube_standin  # noqa: E402

from aiinfn.config.loader import load_site  # noqa: E402
from aiinfn.planning import make_plan  # noqa: E402
from aiinfn.services import batch, jupyterhub, site_bundles  # noqa: E402

TOKEN = "benchmark-batch-service-token"
CLIENT_SECRET = "benchmark-client-secret"
SCRIPT = "print('hello')\n"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def start_service(plan: Any, work: Path, hub: hub_harness.Hub, api: kube_standin.Api) -> subprocess.Popen[bytes]:
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
    env.update({"PYTHONPATH": str(work), "AIINFN_BATCH_SETTINGS": str(work / "settings.json"),
                "AIINFN_BATCH_API_TOKEN_FILE": "", "JUPYTERHUB_API_TOKEN": TOKEN,
                "JUPYTERHUB_API_URL": hub.hub_url + "/hub/api",
                "JUPYTERHUB_SERVICE_URL": hub.service_urls[jupyterhub.BATCH_SERVICE], "AIINFN_BATCH_BIND": "127.0.0.1",
                "KUBECONFIG": str(api.kubeconfig(work / "kubeconfig")), "PATH": os.environ["PATH"]})
    log = (work / "service.log").open("wb")
    return subprocess.Popen([sys.executable, *container["command"][1:]], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def run(concurrency: int, tokens: list[str], url: str, jobs: int) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def user(token: str) -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"token {token}"
        body = {"project": "lhc-ml", "script": {"name": "job.py", "content": SCRIPT}, "cpu": 1, "memory": "2G",
                "time": "1h"}
        for _ in range(jobs):
            t0 = time.perf_counter()
            r = s.post(url + "api/jobs", json=body, timeout=120)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if r.status_code != 201:
                    failures.append(r.status_code)

    threads = [threading.Thread(target=user, args=(t,)) for t in tokens[:concurrency]]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), len(failures)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20, help="submissions per user per run")
    ap.add_argument("--users", default="1,10,50", help="concurrencies")
    a = ap.parse_args()
    levels = [int(x) for x in a.users.split(",")]
    with tempfile.TemporaryDirectory(prefix="aiinfn-batch-bench-") as tmp:
        work = Path(tmp)
        env = work / "cnaf-bench.yaml"
        env.write_text(yaml.safe_dump({"extends": str(ROOT / "environments" / "cnaf.yaml"), "services": {
            "batch": {"max_jobs_per_user": 1000}}}))
        plan = make_plan(load_site(env))
        (release,) = [r for b in site_bundles(plan) for r in b.releases if r.chart == "jupyterhub"]
        with hub_iam.running_iam() as iam, kube_standin.running_api(
                {q.namespace for q in plan.quotas} | {jupyterhub.NAMESPACE}) as api:
            secrets = {(jupyterhub.OAUTH_SECRET, jupyterhub.OAUTH_SECRET_KEY): CLIENT_SECRET,
                       (jupyterhub.BATCH_TOKEN_SECRET, jupyterhub.BATCH_TOKEN_KEY): TOKEN,
                       # the areas provisioner is not started: logins and tokens do not call it
                       (jupyterhub.PROVISIONER_TOKEN_SECRET, jupyterhub.PROVISIONER_TOKEN_KEY): "unused"}
            hub = hub_harness.start_hub(json.loads(json.dumps(release.values)), iam.url, work / "hub", secrets,
                                        auth_refresh_age=300, kube_url=api.url)
            proc = None
            try:
                proc = start_service(plan, work / "service", hub, api)
                url = hub.service_urls[jupyterhub.BATCH_SERVICE] + batch.PREFIX
                for _ in range(300):
                    try:
                        if requests.get(url + "health", timeout=1).status_code == 200:
                            break
                    except requests.RequestException:
                        time.sleep(0.1)
                tokens = []
                for i in range(max(levels)):
                    name = f"bench{i:02d}"
                    user = iam.add_user(name, ["ai-infn/users", "ai-infn/lhc"])
                    session, r = hub.login(user.sub, iam.url)
                    assert r.status_code == 302, r.text
                    tokens.append(hub.new_token(session, name))
                print(f"{'users':>6} {'submissions':>12} {'per second':>11} {'p50 ms':>8} {'p99 ms':>8} {'refused':>8}")
                for c in levels:
                    rate, p50, p99, bad = run(c, tokens, url, a.jobs)
                    print(f"{c:>6} {c * a.jobs:>12} {rate:>11.1f} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {bad:>8}")
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=15)
                hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
