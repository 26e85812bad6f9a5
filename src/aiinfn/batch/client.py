#!/usr/bin/env python3
"""aiinfn-batch: run a script or a notebook as a batch job of your project, here or on an HPC system.

    aiinfn-batch submit train.py [--project P | --event E] [--gpu KIND] [--gpus N] [--cpu N]
                        [--memory 16G] [--time 4h] [--image NAME] [--offload TARGET] [--no-home]
                        [-- ARGS ...]
    aiinfn-batch list                 your jobs, newest first, with their Kueue state
    aiinfn-batch logs NAME [--tail N] the job's output
    aiinfn-batch cancel NAME          stop it (queued or running)
    aiinfn-batch whoami               your projects, the kinds their queues hold, images, targets

KIND is an accelerator kind as the hub's profiles name it (``A100-80GB/1g.10gb``, ``T4``); the image is
your session's (JUPYTER_IMAGE_SPEC) unless --image names another managed one. A notebook (.ipynb) runs
headless and its executed copy lands beside your home's files; it is sent without its outputs.
Everything comes from the notebook's environment: JUPYTERHUB_API_TOKEN (your server's hub token) and
AIINFN_BATCH_URL (the service). Errors: one line on stderr, exit code 1 (2 for a wrong command line).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TIMEOUT = 60


class Failure(Exception):
    pass


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise Failure(f"{name} is not set (is this a notebook of the platform?)")
    return value


def call(method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    url = _env("AIINFN_BATCH_URL").rstrip("/") + "/" + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"token {_env('JUPYTERHUB_API_TOKEN')}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            reason = json.loads(raw).get("error") or e.reason
        except ValueError:
            reason = e.reason
        raise Failure(f"refused ({e.code}): {reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise Failure(f"the batch service is unreachable at {os.environ.get('AIINFN_BATCH_URL')}: {e}") from None


def strip_outputs(text: str) -> str:
    """A notebook without its outputs (what is sent: code, not results)."""
    try:
        nb = json.loads(text)
    except ValueError:
        raise Failure("the notebook is not valid JSON") from None
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return json.dumps(nb)


def submission(a: argparse.Namespace) -> dict[str, Any]:
    path = Path(a.script)
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise Failure(f"cannot read {a.script}: {e}") from None
    if path.suffix == ".ipynb":
        content = strip_outputs(content)
    body: dict[str, Any] = {"script": {"name": path.name, "content": content}, "args": list(a.args),
                            "cpu": a.cpu, "memory": a.memory, "time": a.time}
    for key in ("project", "event", "gpu", "offload"):
        if getattr(a, key):
            body[key] = getattr(a, key)
    if a.gpus is not None:
        body["gpus"] = a.gpus
    image = a.image or os.environ.get("JUPYTER_IMAGE_SPEC")
    if image:
        body["image"] = image
    if a.no_home:
        body["home"] = False
    return body


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiinfn-batch", description="batch jobs of your project, from a notebook")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="queue a script or a notebook")
    s.add_argument("script")
    s.add_argument("--project", help="whose queue (needed when you are in several projects)")
    s.add_argument("--event", help="an event's queue (its participants and tutors, during the event)")
    s.add_argument("--gpu", help="accelerator kind, as the hub's profiles name it (A100-80GB/1g.10gb, T4)")
    s.add_argument("--gpus", type=int, help="units of that kind (default 1)")
    s.add_argument("--cpu", default="1", help="cores (default 1)")
    s.add_argument("--memory", default="4G", help="memory (default 4G)")
    s.add_argument("--time", default="1h", help="time limit: 30m, 4h, 1d12h, 02:30:00 (default 1h)")
    s.add_argument("--image", help="a managed image by name (default: this session's image)")
    s.add_argument("--offload", metavar="TARGET", help="run on an HPC system through interLink")
    s.add_argument("--no-home", action="store_true", help="do not mount your home")
    sub.add_parser("list", help="your jobs")
    lg = sub.add_parser("logs", help="a job's output")
    lg.add_argument("name")
    lg.add_argument("--tail", type=int, default=1000)
    c = sub.add_parser("cancel", help="stop a job")
    c.add_argument("name")
    sub.add_parser("whoami", help="your projects, kinds, images and offload targets")
    return p


def run(a: argparse.Namespace) -> None:
    if a.command == "submit":
        _, raw = call("POST", "api/jobs", submission(a))
        job = json.loads(raw)
        where = f" on {job['offload']}" if job.get("offload") else ""
        print(f"{job['name']} queued in {job.get('project') or job.get('event')}{where} "
              f"(aiinfn-batch logs {job['name']})")
    elif a.command == "list":
        _, raw = call("GET", "api/jobs")
        rows = json.loads(raw)["jobs"]
        if not rows:
            print("no jobs")
        for j in rows:
            where = j.get("offload") or ",".join(j.get("flavors") or []) or "-"
            queue = j.get("project") or j.get("event") or "-"
            print(f"{j['name']:<50} {queue:<16} {j['state']:<12} {where:<24} {j.get('created') or ''}")
    elif a.command == "logs":
        _, raw = call("GET", f"api/jobs/{a.name}/logs?tail={a.tail}")
        sys.stdout.write(raw.decode(errors="replace"))
    elif a.command == "cancel":
        _, raw = call("DELETE", f"api/jobs/{a.name}")
        print(f"{json.loads(raw)['name']} cancelled")
    elif a.command == "whoami":
        _, raw = call("GET", "api/whoami")
        print(json.dumps(json.loads(raw), indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # the script's own arguments follow `--` (they may look like options of ours)
    script_args = args[args.index("--") + 1:] if "--" in args else []
    a = parser().parse_args(args[: args.index("--")] if "--" in args else args)
    a.args = script_args
    try:
        run(a)
    except Failure as e:
        print(f"aiinfn-batch: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
