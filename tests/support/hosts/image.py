"""The cached Debian bookworm image the local test hosts boot (see hostlib.py).

Two layers, each a zstd tarball under the cache directory (``AIINFN_TEST_HOSTS_DIR``, default
``/var/tmp/aiinfn-hosts``):

- ``minbase-<hash>.tar.zst``: ``debootstrap --variant=minbase bookworm`` from the mirror apt of this
  machine already uses (/etc/apt/sources.list.d/debian.sources). Keyed on the mirror, so it is built
  once per machine (about a minute).
- ``image-<hash>.tar.zst``: minbase plus the node layer (systemd as init, sshd, python3 for Ansible, the
  packages of image-packages.txt beside this file) and the test-host settings (root login by key, apt
  pointed at the mirror through the relay). Keyed on the package list and this recipe, so appending a
  package to image-packages.txt rebuilds only this layer (about 30 s).

Building takes an exclusive ``fcntl`` lock on ``image.lock``: parallel test sessions on one machine
build once and then share the result. ``ensure_lower()`` unpacks the image once into ``lower-<hash>/``,
the read-only lower directory of every host's overlay root filesystem.

Run ``python image.py`` to build (or find) the image and print its path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
PACKAGES_FILE = HERE / "image-packages.txt"
CACHE_DIR = Path(os.environ.get("AIINFN_TEST_HOSTS_DIR", "/var/tmp/aiinfn-hosts"))
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
SUITE = "bookworm"

#: What every host needs whatever the roles under test do: systemd as PID 1, sshd, python3 for Ansible.
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "sudo", "procps", "iproute2",
    "openssh-server", "ca-certificates",
]

#: Bump when the recipe below changes in a way the package list does not show.
RECIPE_VERSION = "3"

#: Units that must not run on test hosts: apt's timers would take the dpkg lock in the middle of a test.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily.service",
    "apt-daily-upgrade.timer",
    "apt-daily-upgrade.service",
)

SSHD_CONFIG = "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"

#: The mirror here serves a fixed snapshot: its Release files are older than their Valid-Until date.
APT_CONFIG = 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAcquire::Languages "none";\n'


def log(msg: str) -> None:
    print(f"[image {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mirror_urls() -> list[str]:
    """The URIs apt on this machine uses (deb822 sources), in file order, without duplicates."""
    urls: list[str] = []
    for line in SOURCES_FILE.read_text().splitlines():
        if line.startswith("URIs:"):
            urls += [u for u in line.split()[1:] if u not in urls]
    if not urls:
        raise RuntimeError(f"no URIs: line in {SOURCES_FILE}: cannot tell which Debian mirror to use")
    return urls


def mirror_endpoints() -> list[tuple[str, int]]:
    """(host, port) of every mirror in the sources: what the hosts' relays must reach."""
    endpoints: list[tuple[str, int]] = []
    for url in mirror_urls():
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        endpoint = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints


def main_mirror() -> str:
    urls = mirror_urls()
    return next((u for u in urls if u.rstrip("/").endswith("/debian")), urls[0])


def extra_packages() -> list[str]:
    """Packages of image-packages.txt: one a line, ``#`` starts a comment."""
    packages: list[str] = []
    for line in PACKAGES_FILE.read_text().splitlines():
        packages += line.split("#", 1)[0].split()
    return packages


def all_packages() -> list[str]:
    return sorted(set(BASE_PACKAGES) | set(extra_packages()))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def minbase_path() -> Path:
    return CACHE_DIR / f"minbase-{_digest(SUITE, main_mirror())}.tar.zst"


def image_key() -> str:
    return _digest(RECIPE_VERSION, SUITE, minbase_path().name, SOURCES_FILE.read_text(), *all_packages())


def image_path() -> Path:
    return CACHE_DIR / f"image-{image_key()}.tar.zst"


def key_path() -> Path:
    """Private key of root on every host (its public half is baked in and written again at start)."""
    return CACHE_DIR / "id_ed25519"


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "image.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], logfile: Path, **kwargs: Any) -> None:
    with open(logfile, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if result.returncode:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"image build step failed ({result.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_key() -> Path:
    key = key_path()
    if not key.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = key.with_name(f".{key.name}.{os.getpid()}")
        for stale in (tmp, tmp.with_suffix(".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiinfn-test-hosts", "-f", str(tmp)],
                       check=True, stdin=subprocess.DEVNULL)
        os.replace(f"{tmp}.pub", f"{key}.pub")
        os.replace(tmp, key)
    return key


def _untar(tarball: Path, dest: Path) -> None:
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd",
                    "-xf", str(tarball)], check=True, stdin=subprocess.DEVNULL)


def _tar(src: Path, tarball: Path) -> None:
    tmp = tarball.with_name(f".{tarball.name}.{os.getpid()}")
    subprocess.run(["tar", "-C", str(src), "--numeric-owner", "--xattrs", "--xattrs-include=*",
                    "-I", "zstd -T0 -3", "-cf", str(tmp), "."], check=True, stdin=subprocess.DEVNULL)
    os.replace(tmp, tarball)


def _umount_below(path: Path) -> None:
    """Unmount everything mounted at or below path (deepest first)."""
    prefix = str(path)
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, stdin=subprocess.DEVNULL)


def _build_minbase(work: Path, logfile: Path) -> None:
    target = minbase_path()
    root = work / "minbase"
    root.mkdir()
    log(f"debootstrap minbase {SUITE} from {main_mirror()} (log {logfile})")
    _run(["debootstrap", "--variant=minbase", SUITE, str(root), main_mirror()], logfile)
    _umount_below(root)
    _tar(root, target)
    shutil.rmtree(root)


def _build_node(work: Path, logfile: Path) -> None:
    root = work / "node"
    root.mkdir()
    _untar(minbase_path(), root)
    packages = all_packages()
    log(f"node layer: {len(packages)} packages (log {logfile})")
    # apt inside the chroot: the machine's own sources, no daemons started by maintainer scripts
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    shutil.copy(SOURCES_FILE, root / "etc/apt/sources.list.d/debian.sources")
    (root / "etc/apt/apt.conf.d/90aiinfn-test-host").write_text(APT_CONFIG)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", resolv)
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        _run(["chroot", str(root), "apt-get", "update"], logfile, env=env)
        _run(["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends", *packages], logfile, env=env)
        _run(["chroot", str(root), "apt-get", "clean"], logfile, env=env)
        _run(["chroot", str(root), "systemctl", "mask", *MASKED_UNITS], logfile, env=env)
    finally:
        _umount_below(root)
    policy.unlink()
    # no DNS inside hosts: names come from /etc/hosts, which hostlib writes per host
    resolv.write_text("# test host: no DNS, see /etc/hosts\n")
    (root / "etc/ssh/sshd_config.d/aiinfn-test-host.conf").write_text(SSHD_CONFIG)
    # one set of host keys for all hosts (clients do not check them); sshd refuses to start without
    for stale in (root / "etc/ssh").glob("ssh_host_*"):
        stale.unlink()
    subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(f"{ensure_key()}.pub", ssh_dir / "authorized_keys")
    (root / "etc/machine-id").write_text("")  # systemd makes a fresh one at every boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for log_file in (root / "var/log").rglob("*.log"):
        log_file.write_text("")
    _tar(root, image_path())
    shutil.rmtree(root)


def ensure_image() -> Path:
    """The node image tarball for the current package list; builds what is missing (under the lock)."""
    target = image_path()
    if target.exists():
        return target
    with cache_lock():
        if target.exists():
            return target
        for tool in ("debootstrap", "zstd", "chroot", "ssh-keygen"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is missing: run scripts/install-host-fixture-deps.sh")
        ensure_key()
        work = CACHE_DIR / f"build-{os.getpid()}"
        logfile = CACHE_DIR / f"build-{image_key()}.log"
        logfile.write_text("")
        work.mkdir(parents=True)
        started = time.monotonic()
        try:
            if not minbase_path().exists():
                _build_minbase(work, logfile)
            _build_node(work, logfile)
        finally:
            _umount_below(work)
            shutil.rmtree(work, ignore_errors=True)
        log(f"built {target} in {time.monotonic() - started:.0f} s")
        prune()
    return target


def prune() -> None:
    """Remove images and unpacked lowers of other package lists that no host is using (under the lock)."""
    mounted = Path("/proc/self/mountinfo").read_text()
    keep = image_key()
    for lower in CACHE_DIR.glob("lower-*"):
        key = lower.name.removeprefix("lower-")
        if re.fullmatch(r"[0-9a-f]{12}", key) and key != keep and str(lower) not in mounted:
            shutil.rmtree(lower, ignore_errors=True)
    for tarball in CACHE_DIR.glob("image-*.tar.zst"):
        key = tarball.name.removeprefix("image-").removesuffix(".tar.zst")
        if re.fullmatch(r"[0-9a-f]{12}", key) and key != keep and not (CACHE_DIR / f"lower-{key}").exists():
            tarball.unlink(missing_ok=True)
            (CACHE_DIR / f"build-{key}.log").unlink(missing_ok=True)


def ensure_lower() -> Path:
    """The image unpacked once, read-only lower directory of every host's overlay root filesystem."""
    lower = CACHE_DIR / f"lower-{image_key()}"
    done = lower / ".aiinfn-complete"
    if done.exists():
        return lower
    tarball = ensure_image()
    with cache_lock():
        if not done.exists():
            tmp = CACHE_DIR / f".lower-{image_key()}.{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            _untar(tarball, tmp)
            (tmp / ".aiinfn-complete").write_text("")
            if lower.exists():
                shutil.rmtree(lower)
            os.replace(tmp, lower)
    return lower


# Short names hostlib uses.
def workdir() -> Path:
    return CACHE_DIR


def lower() -> Path:
    return ensure_lower()


def ssh_key() -> Path:
    return ensure_key()


def mirror() -> str:
    return main_mirror()


if __name__ == "__main__":
    print(ensure_image())
