"""Test hosts for the roles' molecule scenarios (roles/<role>/molecule/default), and the stand-ins they use.

Molecule's default (delegated) driver leaves making the instances to the scenario's create.yml, which runs

    python tests/support/hosts/molecule_hosts.py create INSTANCE_CONFIG NAME...

It starts one real test host per NAME with hostlib.py (prefix and net from AIINFN_TEST_HOSTS_PREFIX and
AIINFN_TEST_HOSTS_NET, which the scenario's molecule.yml sets) and writes INSTANCE_CONFIG as molecule reads
it: per host its address, user (root), port and private key. SSH reaches every host of the prefix through its
hub namespace, with the ProxyCommand molecule.yml gives: ``ip netns exec <prefix>hub socat STDIO TCP:%h:22``.

The hosts must outlive the create playbook: a keeper process in a session of its own (its output in
``<cache>/run/<prefix>.molecule.log``) starts them, holds the prefix's lock while they run and stops them when
told to; ``create`` returns once every host is up, or fails with the reason. destroy.yml runs

    python tests/support/hosts/molecule_hosts.py destroy [INSTANCE_CONFIG]

which stops the keeper (and so the hosts), removes what a keeper that died left behind (hostlib.cleanup_stale)
and the instance config. Both commands are safe to repeat.

    python tests/support/hosts/molecule_hosts.py standins DIR KIND...

builds on the controller what a scenario's prepare.yml puts on its hosts, with the stand-ins the host tests use
(KIND: ``rke2``, ``sts_wire``, ``nvidia``, ``xrt``, ``gpus=<model>:<count>``, ``mig_config``, ``fake_smi``,
``kubectl``), and writes ``DIR/vars.yml``: the versions and paths the scenario's converge.yml and verify.yml read.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gpu_standins
import hostlib
import image
import interlink_standin
import rke2_standin
import sts_wire_standin
import xrt_standin

#: Seconds ``create`` waits for the hosts: the image may have to be built first (a few minutes, once).
CREATE_TIMEOUT = 1200
#: Seconds ``destroy`` gives the keeper to stop its hosts before it is killed.
STOP_TIMEOUT = 120
#: The user molecule logs in as, with the test hosts' key (its public half is in root's authorized_keys).
USER = "root"


def _run_file(prefix: str, suffix: str) -> Path:
    return image.CACHE_DIR / "run" / f"{prefix}.molecule.{suffix}"


def _keeper_pid(prefix: str) -> int | None:
    """PID of the live keeper of ``prefix``, from its pid file (None when there is none or it is gone)."""
    try:
        pid = int(_run_file(prefix, "pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    is_keeper = any(part.endswith(b"molecule_hosts.py") for part in cmdline) and b"keep" in cmdline
    return pid if is_keeper and hostlib._alive(pid) else None


def _log_tail(prefix: str, lines: int = 30) -> str:
    try:
        text = _run_file(prefix, "log").read_text(errors="replace")
    except OSError:
        return "(no keeper log)"
    return "\n".join(text.splitlines()[-lines:])


def _instance_config(hosts: hostlib.Hosts) -> list[dict[str, Any]]:
    key = str(image.ensure_key())
    return [{"instance": n, "address": hosts.address(n), "user": USER, "port": 22, "identity_file": key}
            for n in hosts.names]


def keep(ready_fd: int, config: Path, names: list[str]) -> int:
    """Start the hosts, tell ``create`` through ``ready_fd``, then hold them until SIGTERM (or SIGINT, SIGHUP)."""
    prefix = hostlib.default_prefix()

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    pid_file = _run_file(prefix, "pid")
    with os.fdopen(ready_fd, "w") as ready:
        try:
            hosts = hostlib.start_hosts(names)
        except Exception as exc:  # every reason goes back to create, which prints it
            ready.write(f"{type(exc).__name__}: {exc}\n")
            return 1
        try:
            pid_file.write_text(f"{os.getpid()}\n")
            config.write_text(json.dumps(_instance_config(hosts), indent=2) + "\n")
            print(f"[keeper {os.getpid()}] hosts up: {', '.join(f'{n} {hosts.address(n)}' for n in hosts.names)}",
                  flush=True)
            ready.write("ok\n")
        except BaseException:
            hosts.stop()
            pid_file.unlink(missing_ok=True)
            raise
    try:
        while True:
            signal.pause()
    finally:
        hosts.stop()
        pid_file.unlink(missing_ok=True)
        print(f"[keeper {os.getpid()}] hosts stopped in {hosts.timings.get('stop', 0):.1f} s", flush=True)


def create(config: Path, names: list[str]) -> int:
    prefix = hostlib.default_prefix()
    if _keeper_pid(prefix) is not None:
        print(f"test hosts {prefix}* of a molecule scenario are running: destroy them first", file=sys.stderr)
        return 1
    config.parent.mkdir(parents=True, exist_ok=True)
    _run_file(prefix, "log").parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    with open(_run_file(prefix, "log"), "wb") as log:
        keeper = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "keep", "--ready-fd", str(write_end), str(config), *names],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_end,), start_new_session=True,
        )
    os.close(write_end)
    answer = b""
    deadline = time.monotonic() + CREATE_TIMEOUT
    with os.fdopen(read_end, "rb") as ready:
        while time.monotonic() < deadline:
            if select.select([ready], [], [], 1.0)[0]:
                chunk = os.read(ready.fileno(), 4096)
                if not chunk:
                    break
                answer += chunk
        else:
            keeper.terminate()
            answer = f"no answer from the hosts' keeper after {CREATE_TIMEOUT} s".encode()
    if answer.strip() == b"ok":
        addresses = json.loads(config.read_text())
        print(" ".join(f"{h['instance']}={h['address']}" for h in addresses))
        return 0
    with_status = "" if keeper.poll() is None else f" (keeper exited {keeper.returncode})"
    message = answer.decode(errors="replace").strip() or "the hosts' keeper died"
    print(f"test hosts {', '.join(names)} ({prefix}*) did not start{with_status}: {message}\n"
          f"--- {_run_file(prefix, 'log')}:\n{_log_tail(prefix)}", file=sys.stderr)
    return 1


def destroy(config: Path | None) -> int:
    prefix = hostlib.default_prefix()
    pid = _keeper_pid(prefix)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while hostlib._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if hostlib._alive(pid):
            os.kill(pid, signal.SIGKILL)
    hostlib.cleanup_stale(prefix)  # what a keeper that died left behind; refuses a prefix another run holds
    _run_file(prefix, "pid").unlink(missing_ok=True)
    if config is not None:
        config.unlink(missing_ok=True)
    return 0


def standins(directory: Path, kinds: list[str]) -> int:
    """Build the stand-ins of ``kinds`` under ``directory`` and write ``directory/vars.yml``."""
    from aiinfn import versions

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"molecule_standins": str(directory)}
    for kind in kinds:
        if kind == "rke2":
            release = rke2_standin.build_release(directory / "rke2", versions.RKE2)
            out["molecule_rke2_version"] = versions.RKE2
            out["molecule_rke2_sha256"] = rke2_standin.tarball_sha256(release)
        elif kind == "sts_wire":
            sts_wire_standin.build_release(directory)
            out["molecule_sts_wire_version"] = sts_wire_standin.VERSION
            out["molecule_sts_wire_sha256"] = sts_wire_standin.SHA256
        elif kind == "nvidia":
            shutil.rmtree(directory / "nvidia-repo", ignore_errors=True)
            gpu_standins.build_nvidia_repo(directory / "nvidia-repo", versions.NVIDIA_DRIVER,
                                           versions.NVIDIA_CONTAINER_TOOLKIT)
            out["molecule_nvidia_driver_version"] = versions.NVIDIA_DRIVER
            out["molecule_nvidia_toolkit_version"] = versions.NVIDIA_CONTAINER_TOOLKIT
        elif kind == "xrt":
            xrt_standin.build_release(directory, versions.XRT)
            out["molecule_xrt_version"] = versions.XRT
            out["molecule_xrt_package"] = xrt_standin.package_name(versions.XRT)
            out["molecule_xrt_sha256"] = xrt_standin.published_sha256(directory, versions.XRT)
        elif kind.startswith("gpus="):
            model, _, count = kind.removeprefix("gpus=").partition(":")
            (directory / "gpus.json").write_text(json.dumps(gpu_standins.fake_gpus(model, int(count or 1))))
            out["molecule_gpu_model"] = model
            out["molecule_gpu_count"] = int(count or 1)
        elif kind == "mig_config":
            from aiinfn.config.loader import load
            from aiinfn.planning import make_plan

            out["molecule_mig_config"] = make_plan(load("cnaf", root=hostlib.REPO)).mig_parted_config()
        elif kind == "fake_smi":
            (directory / "nvidia-smi").write_text(gpu_standins.FAKE_SMI)
        elif kind == "kubectl":
            (directory / "kubectl").write_text(rke2_standin.KUBECTL)
        elif kind == "interlink":
            interlink_standin.build_release(directory)
            out.update({"molecule_interlink_version": interlink_standin.VERSION,
                        "molecule_interlink_plugin_version": interlink_standin.PLUGIN_VERSION,
                        "molecule_interlink_api_sha256": interlink_standin.API_SHA256,
                        "molecule_interlink_plugin_sha256": interlink_standin.PLUGIN_SHA256,
                        "molecule_interlink_htcondor_version": interlink_standin.HTCONDOR_VERSION,
                        "molecule_interlink_htcondor_sha256": interlink_standin.HTCONDOR_SHA256})
        else:
            print(f"unknown stand-in {kind!r}", file=sys.stderr)
            return 2
    (directory / "vars.yml").write_text(json.dumps(out, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create", help="start the hosts and write molecule's instance config")
    p.add_argument("instance_config", type=Path)
    p.add_argument("names", nargs="+")
    p = sub.add_parser("destroy", help="stop the hosts and remove the instance config")
    p.add_argument("instance_config", type=Path, nargs="?")
    p = sub.add_parser("keep", help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("instance_config", type=Path)
    p.add_argument("names", nargs="+")
    p = sub.add_parser("standins", help="build stand-ins for a scenario's prepare.yml")
    p.add_argument("directory", type=Path)
    p.add_argument("kinds", nargs="+")
    a = ap.parse_args(argv)
    try:
        if a.command == "create":
            return create(a.instance_config, a.names)
        if a.command == "destroy":
            return destroy(a.instance_config)
        if a.command == "keep":
            return keep(a.ready_fd, a.instance_config, a.names)
        return standins(a.directory, a.kinds)
    except hostlib.HostsError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
