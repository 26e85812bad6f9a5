"""Real local test hosts for the Ansible roles and playbooks, and a way to run playbooks on them.

Each host is a Debian bookworm system with systemd as PID 1 (``systemd-nspawn -b``), its own network
namespace ``<prefix><i>`` with the address ``<net>.<10+i>`` on a bridge that lives in a namespace of its
own (``<prefix>hub``: this machine's namespace gets no address, route or interface), its own copy-on-write
root (overlayfs over the cached image of image.py), sshd, its name as hostname and an /etc/hosts naming
every host. Ansible reaches a host with ``ip netns exec <ns> socat STDIO TCP:127.0.0.1:22`` as SSH
ProxyCommand; hosts reach each other by name over the bridge. apt inside a host reaches the Debian mirror
through a relay (a socat on the host's loopback, over a unix socket, to a socat in this machine's
namespace that dials the mirror), and nothing else is reachable.

What the hosts cannot do (tests needing it say so): load kernel modules or set ``vm.*``/``kernel.*``
sysctls (they share this machine's kernel), serve or mount NFS, use a GPU or an FPGA.

Several sessions run side by side with different prefixes and nets (``prefix``/``net`` arguments, or
AIINFN_TEST_HOSTS_PREFIX / AIINFN_TEST_HOSTS_NET); a lock file makes a second user of a prefix fail at
once instead of destroying the first one's hosts. ``Hosts.stop()`` removes everything its instance made;
``cleanup_stale(prefix)`` (run by every start) removes what a crashed run with the prefix left behind:
processes in its namespaces or started on its files, overlay mounts, namespaces. It never touches
another prefix.

Background processes (nspawn, socat) write to log files under ``<cache>/run/<prefix>/logs`` (kept
after ``stop()`` until the next start with the prefix) and never inherit the caller's stdout.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import image

REPO = Path(__file__).resolve().parents[3]
DEFAULT_PREFIX = "ah"
DEFAULT_NET = "10.254.0"
#: Seconds a start may take before it gives up (boot to ``is-system-running`` of every host).
BOOT_TIMEOUT = float(os.environ.get("AIINFN_TEST_HOSTS_BOOT_TIMEOUT", "180"))

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_NET_RE = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){2}$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MIRROR_LOOPBACK = "127.0.2"
#: Commands this module starts outside a host's namespace (the mirror relays, nspawn, ``ip netns exec``).
_OWN_COMMANDS = {"socat", "systemd-nspawn", "ip"}  # the k-th mirror is 127.0.2.<k> inside every host


class HostsError(RuntimeError):
    """The test hosts could not be started or used; the message names the host and where to look."""


def default_prefix() -> str:
    return os.environ.get("AIINFN_TEST_HOSTS_PREFIX") or DEFAULT_PREFIX


def default_net() -> str:
    return os.environ.get("AIINFN_TEST_HOSTS_NET") or DEFAULT_NET


def run_dir(prefix: str) -> Path:
    return image.CACHE_DIR / "run" / prefix


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise HostsError(f"{name} is missing: run scripts/install-host-fixture-deps.sh")
    return path


def _mac(address: str) -> str:
    """A fixed, locally administered MAC for an IPv4 address: a revived host (and the hub) keeps its own, so
    neighbours' ARP entries stay right (a new random one makes the first connection after revive() hang)."""
    return "02:00:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([_tool("ip"), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and res.returncode:
        raise HostsError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


# -- finding and removing what belongs to one prefix -----------------------------------------------------


def _is_ours(ns: str, prefix: str) -> bool:
    rest = ns[len(prefix):] if ns.startswith(prefix) else None
    return rest is not None and (rest == "hub" or rest.isdigit())


def _namespaces(prefix: str) -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip() and _is_ours(line.split()[0], prefix)]


def _ns_inode(ns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _procs_of(namespaces: list[str], path_mark: str | None) -> list[int]:
    """Processes inside one of ``namespaces`` (by netns inode) or whose command line names ``path_mark``."""
    inodes = {f"net:[{ino}]" for ns in namespaces if (ino := _ns_inode(ns)) is not None}
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if inodes and os.readlink(f"/proc/{entry.name}/ns/net") in inodes:
                found.append(int(entry.name))
                continue
            if path_mark:
                # only the kinds of process hosts are made of (never, say, a shell looking at the files)
                with open(f"/proc/{entry.name}/comm") as fh:
                    if fh.read().strip() not in _OWN_COMMANDS:
                        continue
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    if path_mark.encode() in fh.read():
                        found.append(int(entry.name))
        except OSError:
            continue
    return found


def _kill_all(pids: list[int], timeout: float = 10) -> list[int]:
    """SIGKILL ``pids`` and wait until they are gone (or zombies); return those still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
    return left


def _mounts_below(path: Path) -> list[str]:
    mark = str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == mark or target.startswith(mark + "/"):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def _umount(target: str) -> None:
    for _ in range(20):
        if subprocess.run(["umount", target], capture_output=True, stdin=subprocess.DEVNULL).returncode == 0:
            return
        if target not in _mounts_below(Path(target)):
            return
        time.sleep(0.05)
    subprocess.run(["umount", "-l", target], capture_output=True, stdin=subprocess.DEVNULL)


def _cgroup_roots() -> list[Path]:
    """Mount points of the cgroup hierarchies systemd uses: cgroup2 and, on hybrid hosts, name=systemd."""
    roots = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _src, opts = [*post.split(), "", "", ""][:3]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in opts.split(",")):
            roots.append(Path(pre.split()[4]))
    return roots


def _cgroups(prefix: str) -> list[Path]:
    """Where the hosts of ``prefix`` live in each hierarchy: one cgroup per host below these."""
    return [root / "aiinfn-test-hosts" / prefix for root in _cgroup_roots()]


def _remove_cgroups(prefix: str) -> None:
    for top in _cgroups(prefix):
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        with contextlib.suppress(OSError):
            os.rmdir(top.parent)  # only when no other prefix uses it


def _sweep(prefix: str, keep_logs: bool) -> None:
    """Remove every trace of ``prefix`` (its lock must be held): processes, mounts, namespaces, files."""
    base = run_dir(prefix)
    namespaces = _namespaces(prefix)
    left = _kill_all(_procs_of(namespaces, f"{base}/"))
    if left:
        raise HostsError(f"processes of test hosts {prefix}* do not die: {left}")
    for target in _mounts_below(base):
        _umount(target)
    for ns in namespaces:
        _ip("netns", "del", ns, check=False)
    _remove_cgroups(prefix)
    if base.exists():
        for entry in base.iterdir():
            if keep_logs and entry.name == "logs":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    stuck = [ns for ns in _namespaces(prefix)] + _mounts_below(base)
    if stuck:
        raise HostsError(f"could not remove {stuck} of test hosts {prefix}*")


def _prefix_lock(prefix: str) -> IO[str]:
    """Take the prefix's lock (an open file; closing it releases the lock), or fail if another run holds it."""
    lock_dir = image.CACHE_DIR / "run"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fh = open(lock_dir / f"{prefix}.lock", "a+")  # noqa: SIM115 - held for the life of a Hosts instance
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise HostsError(
            f"test hosts with prefix {prefix!r} are in use by another run (lock {lock_dir / prefix}.lock): "
            "stop them first, or pick another prefix/net (AIINFN_TEST_HOSTS_PREFIX, AIINFN_TEST_HOSTS_NET)"
        ) from None
    return fh


def cleanup_stale(prefix: str) -> None:
    """Remove what an earlier run with ``prefix`` left behind (fails if a live run holds the prefix)."""
    if not _PREFIX_RE.match(prefix):
        raise HostsError(f"bad test-host prefix {prefix!r}: 1-6 lower-case letters/digits, starting with a letter")
    fh = _prefix_lock(prefix)
    try:
        _sweep(prefix, keep_logs=True)
    finally:
        fh.close()


# -- the hosts ----------------------------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    index: int
    ns: str
    address: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    alive: bool = False

    @property
    def root(self) -> Path:
        """The host's merged root filesystem as this machine sees it."""
        return self.dir / "merged"

    @property
    def veth(self) -> str:
        return f"{self.ns[:-len(str(self.index))]}v{self.index}"


def _resolve(root: Path, path: str) -> Path:
    """``path`` inside the tree at ``root``, following symlinks as the host would (never out of root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"too many levels of symbolic links: {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
        else:
            done.append(part)
    return root.joinpath(*done)


_LIVE: weakref.WeakSet[Hosts] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for hosts in list(_LIVE):
        with contextlib.suppress(Exception):
            hosts.stop()


@dataclass(eq=False)
class Hosts:
    """Hosts started by ``start_hosts``; a context manager that always stops them."""

    prefix: str
    net: str
    hosts: dict[str, Host] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _lock: IO[str] | None = None
    _relays: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _mirrors: list[tuple[str, int]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    # -- what tests use -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    @property
    def base(self) -> Path:
        return run_dir(self.prefix)

    def _host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise HostsError(f"no test host {name!r} (hosts: {', '.join(self.hosts)})") from None

    def address(self, name: str) -> str:
        return self._host(name).address

    def proxy_command(self, name: str) -> str:
        return f"{_tool('ip')} netns exec {self._host(name).ns} {_tool('socat')} STDIO TCP:127.0.0.1:22"

    def connection_vars(self, name: str) -> dict[str, Any]:
        return {
            "ansible_host": self.address(name),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(image.ensure_key()),
            "ansible_ssh_common_args": (
                f'-o ProxyCommand="{self.proxy_command(name)}" '
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
        """An ansible-runner inventory: every host with its connection, plus ``groups`` and variables.

        ``hostvars`` maps a host to its variables. ``group_vars`` are variables of group ``all`` (the
        site-level vars); an entry whose key is ``all`` or a group of ``groups`` and whose value is a dict
        holds that group's variables instead.
        """
        groups = dict(groups or {})
        for group, members in groups.items():
            unknown = [m for m in members if m not in self.hosts]
            if unknown:
                raise HostsError(f"group {group}: no test host {', '.join(unknown)}")
        all_vars: dict[str, Any] = {}
        per_group: dict[str, dict[str, Any]] = {}
        for key, value in (group_vars or {}).items():
            if (key == "all" or key in groups) and isinstance(value, Mapping):
                per_group[key] = dict(value)
            else:
                all_vars[key] = value
        all_vars.update(per_group.pop("all", {}))
        hv = hostvars or {}
        hosts = {n: {**self.connection_vars(n), **dict(hv.get(n) or {})} for n in self.hosts}
        children = {
            g: {"hosts": {m: {} for m in members}, **({"vars": per_group[g]} if g in per_group else {})}
            for g, members in groups.items()
        }
        return {"all": {"hosts": hosts, "children": children, "vars": all_vars}}

    def ssh_argv(self, name: str) -> list[str]:
        """An ssh command line (without the remote command) that logs into ``name`` as root."""
        return [
            _tool("ssh"), "-q", "-i", str(image.ensure_key()), "-o", "IdentitiesOnly=yes",
            "-o", f"ProxyCommand={self.proxy_command(name)}",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
            f"root@{self.address(name)}",
        ]

    def exec(
        self,
        name: str,
        cmd: str | list[str],
        check: bool = False,
        timeout: float | None = 900,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on host ``name`` as root over SSH (a string goes through the remote shell)."""
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        res = subprocess.run(
            [*self.ssh_argv(name), remote], capture_output=True, text=True, timeout=timeout, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise HostsError(
                f"{name}: {remote!r} exited {res.returncode}\n"
                f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
            )
        return res

    def path(self, name: str, path: str) -> Path:
        """``path`` of host ``name`` on its root filesystem, as this machine sees it (symlinks resolved)."""
        h = self._host(name)
        return _resolve(h.root, path)

    def _live_path(self, name: str, path: str) -> Path:
        # a running host's own view (its /run and /tmp are mounts of its own); else its root filesystem
        h = self._host(name)
        init = self._init_pid(h)
        if init is not None:
            return _resolve(Path(f"/proc/{init}/root"), path)
        return _resolve(h.root, path)

    def read(self, name: str, path: str) -> bytes:
        """Content of file ``path`` on host ``name``."""
        return self._live_path(name, path).read_bytes()

    def exists(self, name: str, path: str) -> bool:
        try:
            return self._live_path(name, path).exists()
        except OSError:
            return False

    def kill(self, name: str) -> None:
        """Hard power-off of host ``name`` (every process of it dies at once, its address goes away)."""
        h = self._host(name)
        left = _kill_all(_procs_of([h.ns], None))
        if h.proc is not None:
            try:
                h.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait(timeout=10)
        if left:
            raise HostsError(f"{name}: processes {left} survive SIGKILL")
        h.alive = False
        _ip("netns", "del", h.ns, check=False)

    def revive(self, name: str, timeout: float = BOOT_TIMEOUT) -> None:
        """Boot a killed host again on the same root filesystem (a rebooted machine)."""
        h = self._host(name)
        if h.alive:
            raise HostsError(f"{name} is running: kill() it first")
        self._network(h)
        self._boot(h)
        self._wait_ready([h], timeout)

    # -- life cycle ---------------------------------------------------------------------------------------
    def _log(self, name: str) -> IO[bytes]:
        fh = open(self.base / "logs" / name, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(fh)
        return fh

    def start(self, names: list[str], timeout: float = BOOT_TIMEOUT) -> None:
        t0 = time.monotonic()
        if not names:
            raise HostsError("start_hosts needs at least one host name")
        bad = [n for n in names if not _NAME_RE.match(n)]
        if bad:
            raise HostsError(f"not a valid host name: {', '.join(bad)} (lower-case letters, digits, '-')")
        if len(set(names)) != len(names):
            raise HostsError(f"host names repeat: {names}")
        if len(names) > 200:
            raise HostsError("at most 200 hosts")
        for tool in ("ip", "socat", "systemd-nspawn", "ssh", "mount"):
            _tool(tool)
        self._lock = _prefix_lock(self.prefix)
        _LIVE.add(self)
        _sweep(self.prefix, keep_logs=False)
        lower = image.ensure_lower()
        image.ensure_key()
        self.timings["image"] = time.monotonic() - t0
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        self._mirrors = image.mirror_endpoints()
        self._start_relays()
        hub = f"{self.prefix}hub"
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", "br0", "address", _mac(f"{self.net}.1"), "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{self.net}.1/24", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            ns = f"{self.prefix}{i}"
            self.hosts[name] = Host(name, i, ns, f"{self.net}.{10 + i}", self.base / ns)
        for h in self.hosts.values():
            self._network(h)
            self._rootfs(h, lower)
        for h in self.hosts.values():
            self._boot(h)
        self._wait_ready(list(self.hosts.values()), timeout)
        self.timings["up"] = time.monotonic() - t0

    def _start_relays(self) -> None:
        for k, (host, port) in enumerate(self._mirrors, start=1):
            sock = self.base / f"mirror-{k}.sock"
            log = self._log(f"relay-{k}.log")
            self._relays.append(subprocess.Popen(
                [_tool("socat"), f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:{host}:{port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            ))
        deadline = time.monotonic() + 5
        for k in range(1, len(self._mirrors) + 1):
            while not (self.base / f"mirror-{k}.sock").exists():
                if time.monotonic() > deadline or self._relays[k - 1].poll() is not None:
                    raise HostsError(f"the mirror relay did not start: see {self.base / 'logs' / f'relay-{k}.log'}")
                time.sleep(0.01)

    def _network(self, h: Host) -> None:
        hub = f"{self.prefix}hub"
        _ip("netns", "add", h.ns)
        _ip("-n", h.ns, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "address", _mac(h.address),
            "netns", h.ns)
        _ip("-n", hub, "link", "set", h.veth, "master", "br0", "up")
        _ip("-n", h.ns, "addr", "add", f"{h.address}/24", "dev", "eth0")
        _ip("-n", h.ns, "link", "set", "eth0", "up")
        _ip("-n", h.ns, "route", "add", "default", "via", f"{self.net}.1")  # dead end: facts need a route
        log = self._log(f"{h.ns}.relay.log")
        for k, (_host, port) in enumerate(self._mirrors, start=1):
            # started in the host's namespace; found and killed by that namespace at stop
            subprocess.Popen(
                [_tool("ip"), "netns", "exec", h.ns, _tool("socat"),
                 f"TCP-LISTEN:{port},bind={_MIRROR_LOOPBACK}.{k},fork,reuseaddr",
                 f"UNIX-CONNECT:{self.base / f'mirror-{k}.sock'}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )

    def _rootfs(self, h: Host, lower: Path) -> None:
        for d in ("upper", "work", "merged"):
            (h.dir / d).mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={h.dir / 'upper'},workdir={h.dir / 'work'}", str(h.root)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if res.returncode:
            raise HostsError(f"{h.name}: overlay mount failed: {res.stderr.strip()}")
        r = h.root
        (r / "etc/hostname").write_text(h.name + "\n")
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{o.address} {o.name}" for o in self.hosts.values()]
        lines += [f"{_MIRROR_LOOPBACK}.{k} {host}" for k, (host, _port) in enumerate(self._mirrors, start=1)]
        (r / "etc/hosts").write_text("\n".join(lines) + "\n")
        ssh_dir = r / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_bytes(Path(f"{image.ensure_key()}.pub").read_bytes())

    def _boot(self, h: Host) -> None:
        log = self._log(f"{h.ns}.console.log")
        env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}  # live net.* sysctls
        # Every host gets a cgroup of its own: with --keep-unit, nspawn puts the host's systemd below the
        # cgroup it was started in, and two hosts sharing one would share (and kill) each other's services.
        procs_files = []
        for top in _cgroups(self.prefix):
            (top / h.ns).mkdir(parents=True, exist_ok=True)
            procs_files.append(str(top / h.ns / "cgroup.procs"))

        def enter_cgroups() -> None:
            for procs in procs_files:
                with open(procs, "w") as fh:
                    fh.write("0")

        h.proc = subprocess.Popen(
            [_tool("systemd-nspawn"), "-q", "-b", "-D", str(h.root), "-M", h.name, "--register=no", "--keep-unit",
             "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
             f"--network-namespace-path=/run/netns/{h.ns}", "--capability=CAP_NET_ADMIN"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
            preexec_fn=enter_cgroups,  # only writes a file, before exec
        )
        h.alive = True

    def _init_pid(self, h: Host) -> int | None:
        """PID (here) of the host's systemd: the child of its nspawn in another PID namespace."""
        if not h.alive or h.proc is None or h.proc.poll() is not None:
            return None
        own = os.readlink(f"/proc/{h.proc.pid}/ns/pid")
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/ns/pid") != own:
                        return int(child)
        return None

    def _console_tail(self, h: Host) -> str:
        try:
            lines = (self.base / "logs" / f"{h.ns}.console.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-25:])

    def _wait_ready(self, hosts: list[Host], timeout: float) -> None:
        """Wait until every host answers SSH and its systemd has finished booting (running or degraded)."""
        deadline = time.monotonic() + timeout
        pending = {h.name: h for h in hosts}
        probes: dict[str, subprocess.Popen[str]] = {}
        states: dict[str, str] = {}
        while pending:
            for name, h in list(pending.items()):
                if h.proc is not None and h.proc.poll() is not None:
                    raise HostsError(f"host {name} stopped while booting:\n{self._console_tail(h)}")
                probe = probes.get(name)
                if probe is None:
                    probes[name] = subprocess.Popen(
                        [*self.ssh_argv(name), "systemctl is-system-running --wait"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )
                    continue
                if probe.poll() is None:
                    continue
                out, err = probe.communicate()
                del probes[name]
                states[name] = (out.strip() or err.strip()).splitlines()[-1:][0] if (out or err).strip() else ""
                if states[name] in ("running", "degraded"):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                for probe in probes.values():
                    probe.kill()
                    probe.communicate()
                detail = "\n".join(
                    f"--- {n} (last answer: {states.get(n, 'none')!r}):\n{self._console_tail(h)}"
                    for n, h in pending.items()
                )
                raise HostsError(f"test hosts not up after {timeout:.0f} s: {', '.join(pending)}\n{detail}")
            if pending:
                time.sleep(0.05)

    def stop(self) -> None:
        """Tear down everything this instance started; safe to call twice and after a failed start."""
        if self._lock is None:
            return
        t0 = time.monotonic()
        try:
            for h in self.hosts.values():
                h.alive = False
            _sweep(self.prefix, keep_logs=True)
            for p in [h.proc for h in self.hosts.values() if h.proc is not None] + self._relays:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)  # reap: killed by the sweep
        finally:
            for fh in self._logs:
                fh.close()
            self._logs.clear()
            self._lock.close()
            self._lock = None
            _LIVE.discard(self)
            self.timings["stop"] = time.monotonic() - t0

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_hosts(names: list[str], *, prefix: str | None = None, net: str | None = None) -> Hosts:
    """Start one real host per name (see the module docstring); stop them with ``stop()`` or ``with``."""
    prefix = prefix or default_prefix()
    net = net or default_net()
    if not _PREFIX_RE.match(prefix):
        raise HostsError(f"bad test-host prefix {prefix!r}: 1-6 lower-case letters/digits, starting with a letter")
    if not _NET_RE.match(net):
        raise HostsError(f"bad test-host net {net!r}: the first three octets of an IPv4 /24, like 10.254.0")
    hosts = Hosts(prefix, net)
    try:
        hosts.start(list(names))
    except BaseException:
        hosts.stop()
        raise
    return hosts


@contextlib.contextmanager
def running(names: list[str], **kw: Any) -> Iterator[Hosts]:
    with start_hosts(names, **kw) as hosts:
        yield hosts


# -- playbooks ------------------------------------------------------------------------------------------------


@dataclass
class PlaybookRun:
    """A finished playbook run, as the tests look at it."""

    rc: int
    status: str
    #: host -> number of changed tasks (every host that took part, 0 when nothing changed)
    changed: dict[str, int]
    #: (host, task, message) of every failure that was not ignored, unreachable hosts included
    failed: list[tuple[str, str, str]]
    events: list[dict[str, Any]]
    #: hosts on which at least one task ran (fact gathering included)
    hosts_touched: set[str]
    changed_hosts: set[str]
    stdout: str
    result: Any = None


def run_playbook(
    playbook: str | Path,
    inventory: Mapping[str, Any],
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: list[str] | None = None,
) -> PlaybookRun:
    """Run ``playbook`` (a path, or a name under playbooks/) on test hosts through aiinfn's own runner.

    Same code path as ``aiinfn bootstrap``: ansible-runner, this repository's ansible.cfg and roles/.
    """
    # ansible-runner starts ansible-playbook by name: the virtualenv's bin directory must be on PATH
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    from aiinfn.ansible.runner import run_playbook as _run

    path = Path(playbook)
    if not path.is_absolute() and not path.exists():
        path = REPO / "playbooks" / str(playbook)
    events: list[dict[str, Any]] = []
    result = _run(
        path.resolve(), inventory, extravars=extravars, limit=limit, tags=tags,
        envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_TIMEOUT": "30"},
        on_event=events.append,
    )
    changed = {h: 0 for h in sorted(result.touched)}
    changed.update(result.changed)
    return PlaybookRun(
        rc=result.rc,
        status=result.status,
        changed=changed,
        failed=[(f.host, f.task, f.message) for f in result.failures],
        events=events,
        hosts_touched=set(result.touched),
        changed_hosts=set(result.changed_hosts),
        stdout=result.stdout,
        result=result,
    )
