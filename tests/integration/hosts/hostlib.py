"""Real local test hosts for the Ansible roles and playbooks, and a way to run playbooks on them.

Each host is a Debian bookworm system with systemd as PID 1 (systemd-nspawn -b), its own network namespace
``<prefix><i>`` with the address ``<net>.<10+i>`` on a bridge that lives in a namespace of its own
(``<prefix>hub``, so this machine's own namespace gets no address or route), its own copy-on-write root
(overlayfs over the cached image, image.py) and sshd. Ansible reaches a host through ``ip netns exec <ns>
socat STDIO TCP:127.0.0.1:22`` as its SSH ProxyCommand; hosts reach each other by name over the bridge; apt
inside a host reaches the Debian mirror through a relay (a socat on the host's loopback port 80, over a unix
socket, to a socat in this namespace that dials the mirror), and nothing else.

What these hosts cannot do (the tests that need it say so): load kernel modules or set ``vm.*`` /
``kernel.*`` sysctls (they share this machine's kernel), mount NFS, use a GPU or an FPGA.

Several sessions can run side by side with different prefixes and nets (AIINFN_TEST_HOSTS_PREFIX,
AIINFN_TEST_HOSTS_NET). ``stop()`` removes everything one instance created, and ``cleanup_stale`` removes
what a crashed earlier run with the same prefix left behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import image

from aiinfn.ansible.runner import PlaybookResult
from aiinfn.ansible.runner import run_playbook as _run_playbook

REPO = Path(__file__).resolve().parents[3]


def default_prefix() -> str:
    return os.environ.get("AIINFN_TEST_HOSTS_PREFIX", "ah")


def default_net() -> str:
    return os.environ.get("AIINFN_TEST_HOSTS_NET", "10.254.0")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _netns_list() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_pidfile(path: Path, sig: int = signal.SIGTERM) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
    return pid


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def cleanup_stale(prefix: str) -> None:
    """Remove what an earlier run with ``prefix`` left: processes, mounts, namespaces, directories."""
    base = image.workdir() / "run" / prefix
    pids = []
    for pidfile in base.glob("**/*.pid") if base.exists() else []:
        pid = _kill_pidfile(pidfile)
        if pid:
            pids.append(pid)
    _wait_gone(pids, 10)
    if base.exists():
        for merged in base.glob("*/merged"):
            subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)
    for ns in _netns_list():
        if ns == f"{prefix}hub" or (ns.startswith(prefix) and ns[len(prefix):].isdigit()):
            _ip("netns", "del", ns, check=False)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Host:
    name: str
    index: int
    ns: str
    address: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.dir / "merged"


@dataclass
class Hosts:
    """Hosts started by ``start_hosts``; a context manager that always stops them."""

    prefix: str
    net: str
    hosts: dict[str, Host] = field(default_factory=dict)
    base: Path = field(default_factory=Path)
    relay: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    # -- what tests use -------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def connection_vars(self, name: str) -> dict[str, Any]:
        h = self.hosts[name]
        return {
            "ansible_host": h.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(image.ssh_key()),
            "ansible_ssh_common_args": (
                f'-o ProxyCommand="ip netns exec {h.ns} socat STDIO TCP:127.0.0.1:22" '
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            ),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(
        self,
        groups: Mapping[str, list[str]] | None = None,
        hostvars: Mapping[str, Mapping[str, Any]] | None = None,
        group_vars: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An ansible-runner inventory dict: every host with its connection, plus groups and variables."""
        hv = hostvars or {}
        hosts = {n: {**(hv.get(n) or {}), **self.connection_vars(n)} for n in self.hosts}
        children = {g: {"hosts": {m: {} for m in members}} for g, members in (groups or {}).items()}
        return {"all": {"hosts": hosts, "children": children, "vars": dict(group_vars or {})}}

    def ssh_argv(self, name: str) -> list[str]:
        h = self.hosts[name]
        return [
            "ssh", "-q", "-i", str(image.ssh_key()),
            "-o", f"ProxyCommand=ip netns exec {h.ns} socat STDIO TCP:127.0.0.1:22",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"root@{h.address}",
        ]

    def exec(self, name: str, cmd: str | list[str], check: bool = False, timeout: float = 120,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on host ``name`` as root, over SSH (as Ansible does)."""
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        res = subprocess.run([*self.ssh_argv(name), remote], capture_output=True, text=True, timeout=timeout,
                             check=False, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{name}: {remote!r} exited {res.returncode}: {res.stderr.strip() or res.stdout}")
        return res

    def read(self, name: str, path: str) -> bytes:
        """A file of host ``name``, read from its root filesystem."""
        return (self.hosts[name].root / path.lstrip("/")).read_bytes()

    def exists(self, name: str, path: str) -> bool:
        return (self.hosts[name].root / path.lstrip("/")).exists()

    def path(self, name: str, path: str) -> Path:
        """``path`` of host ``name`` as seen from this machine (to write fixtures into a host)."""
        return self.hosts[name].root / path.lstrip("/")

    def kill(self, name: str) -> None:
        """Power the host off hard (SIGKILL to its nspawn): a host dying mid-run."""
        h = self.hosts[name]
        if h.proc and h.proc.poll() is None:
            # the container's init is nspawn's child: killing PID 1 of its PID namespace kills every
            # process in it at once, with no shutdown, like pulling a VM's power
            children = Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children")
            with suppress(OSError):
                for pid in children.read_text().split():
                    with suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                h.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait(timeout=10)
        # nspawn's payload dies with it; its sshd with the payload. Cut the link too.
        _ip("-n", f"{self.prefix}hub", "link", "set", f"v{h.ns}", "down", check=False)

    def revive(self, name: str) -> None:
        """Boot a killed host again on the same root filesystem (what a rebooted VM looks like)."""
        h = self.hosts[name]
        _ip("-n", f"{self.prefix}hub", "link", "set", f"v{h.ns}", "up", check=False)
        self._boot(h)
        self._wait_ssh([h], timeout=60)

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self, names: list[str]) -> None:
        self.started = time.monotonic()
        cleanup_stale(self.prefix)
        lower = image.lower()
        self.base = image.workdir() / "run" / self.prefix
        self.base.mkdir(parents=True, exist_ok=True)
        self._start_relay()
        hub = f"{self.prefix}hub"
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{self.net}.1/24", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            ns = f"{self.prefix}{i}"
            h = Host(name, i, ns, f"{self.net}.{10 + i}", self.base / ns)
            self.hosts[name] = h
            self._network(h)
            self._rootfs(h, lower)
        for h in self.hosts.values():
            self._hosts_file(h)
            self._boot(h)
        self._wait_ssh(list(self.hosts.values()), timeout=90)

    def _start_relay(self) -> None:
        url = urlparse(image.mirror())
        port = url.port or 80
        sock = self.base / "mirror.sock"
        log = (self.base / "relay.log").open("ab")
        self.relay = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:{url.hostname}:{port}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        (self.base / "relay.pid").write_text(str(self.relay.pid))
        for _ in range(100):
            if sock.exists():
                return
            time.sleep(0.02)
        raise RuntimeError("the mirror relay did not start")

    def _network(self, h: Host) -> None:
        hub = f"{self.prefix}hub"
        _ip("netns", "add", h.ns)
        _ip("-n", h.ns, "link", "set", "lo", "up")
        _ip("link", "add", f"v{h.ns}", "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        _ip("-n", hub, "link", "set", f"v{h.ns}", "master", "br0", "up")
        _ip("-n", h.ns, "addr", "add", f"{h.address}/24", "dev", "eth0")
        _ip("-n", h.ns, "link", "set", "eth0", "up")
        _ip("-n", h.ns, "route", "add", "default", "via", f"{self.net}.1")
        log = (h.dir.parent / f"{h.ns}.relay.log").open("ab")
        h.dir.mkdir(parents=True, exist_ok=True)
        h.relay = subprocess.Popen(
            ["ip", "netns", "exec", h.ns, "socat", "TCP-LISTEN:80,bind=127.0.0.1,fork,reuseaddr",
             f"UNIX-CONNECT:{self.base / 'mirror.sock'}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        (h.dir / "relay.pid").write_text(str(h.relay.pid))

    def _rootfs(self, h: Host, lower: Path) -> None:
        for d in ("upper", "work", "merged"):
            (h.dir / d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={h.dir / 'upper'},workdir={h.dir / 'work'}", str(h.root)],
                       check=True)
        (h.root / "etc/hostname").write_text(h.name + "\n")

    def _hosts_file(self, h: Host) -> None:
        mirror_host = urlparse(image.mirror()).hostname
        lines = [f"127.0.0.1 localhost {mirror_host}"]
        lines += [f"{o.address} {o.name}" for o in self.hosts.values()]
        (h.root / "etc/hosts").write_text("\n".join(lines) + "\n")

    def _boot(self, h: Host) -> None:
        log = (h.dir / "console.log").open("ab")
        env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
        h.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-b", "-D", str(h.root), "-M", h.ns, "--register=no", "--keep-unit",
             "--console=passive", f"--network-namespace-path=/run/netns/{h.ns}", "--capability=CAP_NET_ADMIN"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        (h.dir / "nspawn.pid").write_text(str(h.proc.pid))

    def _wait_ssh(self, hosts: list[Host], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending and time.monotonic() < deadline:
            for h in list(pending):
                if h.proc is not None and h.proc.poll() is not None:
                    raise RuntimeError(f"host {h.name} stopped while booting; console: {h.dir / 'console.log'}")
                res = subprocess.run(
                    [*self.ssh_argv(h.name), "systemctl is-active ssh.service"],
                    capture_output=True, text=True, check=False, timeout=20,
                )
                if res.returncode == 0:
                    pending.remove(h)
            if pending:
                time.sleep(0.2)
        if pending:
            raise RuntimeError(f"sshd not reachable on {', '.join(h.name for h in pending)} after {timeout:.0f} s")

    def stop(self) -> None:
        procs = [h.proc for h in self.hosts.values() if h.proc is not None and h.proc.poll() is None]
        for p in procs:
            with suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)  # nspawn: clean power-off of the container
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for h in self.hosts.values():
            if h.relay is not None and h.relay.poll() is None:
                h.relay.kill()
                h.relay.wait(timeout=10)
        if self.relay is not None and self.relay.poll() is None:
            self.relay.kill()
            self.relay.wait(timeout=10)
        cleanup_stale(self.prefix)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_hosts(names: list[str], *, prefix: str | None = None, net: str | None = None) -> Hosts:
    """Start one real host per name (see the module docstring); stop them with ``stop()`` or ``with``."""
    hosts = Hosts(prefix or default_prefix(), net or default_net())
    try:
        hosts.start(names)
    except BaseException:
        hosts.stop()
        raise
    return hosts


@contextmanager
def running(names: list[str], **kw: Any) -> Iterator[Hosts]:
    h = start_hosts(names, **kw)
    try:
        yield h
    finally:
        h.stop()


@dataclass
class PlaybookRun:
    """A finished playbook run, as the tests look at it."""

    result: PlaybookResult

    @property
    def rc(self) -> int:
        return self.result.rc

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def changed(self) -> dict[str, int]:
        return self.result.changed

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        return [(f.host, f.task, f.message) for f in self.result.failures]

    @property
    def hosts_touched(self) -> set[str]:
        return set(self.result.touched)

    @property
    def changed_hosts(self) -> set[str]:
        return set(self.result.changed_hosts)

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def events(self) -> list[dict[str, Any]]:
        return self._events

    _events: list[dict[str, Any]] = field(default_factory=list)


def run_playbook(
    playbook: str | Path,
    inventory: Mapping[str, Any],
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: list[str] | None = None,
) -> PlaybookRun:
    """Run ``playbook`` (a path, or a name under playbooks/) on the test hosts through aiinfn's runner."""
    events: list[dict[str, Any]] = []
    path = Path(playbook)
    if not path.is_absolute() and not path.exists():
        path = REPO / "playbooks" / str(playbook)
    result = _run_playbook(path.resolve(), inventory, extravars=extravars, limit=limit, tags=tags,
                           envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_TIMEOUT": "30"},
                           on_event=events.append)
    run = PlaybookRun(result)
    run._events = events
    return run
