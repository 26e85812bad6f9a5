"""SSH to a site's nodes through its bastion, with host keys pinned per site.

Every connection ``aiinfn up`` makes (Ansible's, and the kubeconfig fetch) reads one OpenSSH client
configuration written under the site's state directory (``ssh_config``) and pins host keys in the
``known_hosts`` beside it:

* the bastion is a ``Host`` of its own (``aiinfn-<site>-bastion``: its floating address, or a
  ``ProxyCommand`` where the operator reaches it another way); every other node is reached with
  ``ProxyJump`` through it, its fixed address being reachable only from the bastion;
* every host's key is recorded under the node's name (``HostKeyAlias``), not its address, so a key is
  tied to the node the plan names; ``StrictHostKeyChecking accept-new`` learns a key on first contact
  and refuses a changed one (OpenSSH's own check, on every hop); ``HashKnownHosts no`` keeps the file
  readable, ``UpdateHostKeys no`` keeps a host from rotating what was pinned;
* only the site's file is read (``GlobalKnownHostsFile /dev/null``), and it is 0600 in a 0700 directory.

What "first contact" cannot prove (a gap named in docs/operations.md): the first key is taken on trust,
as ``ssh`` does; comparing it with the key the VM printed on its console is left to the operator.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import AiinfnError

#: The SSH options ``aiinfn up`` relies on, by name, for the docs and tests.
PINNING = {
    "StrictHostKeyChecking": "accept-new",
    "HashKnownHosts": "no",
    "UpdateHostKeys": "no",
    "GlobalKnownHostsFile": "/dev/null",
}
#: What OpenSSH prints when a pinned key no longer matches.
_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed|"
                      r"Host key verification failed", re.IGNORECASE)
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$")


class SshError(AiinfnError):
    """A value that cannot go into an SSH configuration, or a connection that failed."""

    exit_code = 1


def _address(value: str, what: str) -> str:
    """An IP address or a host name, nothing that could change the configuration's structure."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _NAME_RE.match(value):
            return value
    raise SshError(f"{what} {value!r}: not an IP address or a host name")


def _path(value: Path, what: str) -> str:
    text = str(value)
    if any(ch in text for ch in '"\n\r\t'):
        raise SshError(f"{what} {text!r}: a path with quotes, tabs or line breaks cannot go into ssh_config")
    return f'"{text}"'


def host_key_changed(message: str) -> bool:
    """Whether ``message`` (ssh's stderr, or Ansible's unreachable message) is a refused changed key."""
    return bool(_CHANGED.search(message))


@dataclass(frozen=True)
class SshAccess:
    """How this machine reaches one site's nodes: its bastion, the login, the state directory."""

    site: str
    state_dir: Path
    #: The bastion node ('' for a site without one: its nodes are then reached directly).
    bastion_name: str
    bastion_address: str
    #: The bastion's address on the site network (its ``ansible_host``), reached here at ``bastion_address``.
    bastion_fixed_address: str = ""
    user: str = "aiinfn"
    identity: Path | None = None
    #: How to reach the bastion when not directly at its address (e.g. through a VPN helper).
    bastion_proxy_command: str | None = None

    @property
    def alias(self) -> str:
        return f"aiinfn-{self.site}-bastion"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def config(self) -> Path:
        return self.state_dir / "ssh_config"

    def config_text(self) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", self.user):
            raise SshError(f"SSH user {self.user!r}: not a login name")
        lines = [
            f"# aiinfn: SSH to the nodes of site {self.site}, written by `aiinfn up`.",
            "# Host keys are pinned in known_hosts beside this file, under each node's name.",
        ]
        if self.bastion_name:
            bastion = _address(self.bastion_address, f"the bastion {self.bastion_name}'s address")
            if not _NAME_RE.match(self.bastion_name):
                raise SshError(f"bastion {self.bastion_name!r}: not a node name")
            # the bastion's fixed address too: that is its ansible_host (the other nodes reach it there)
            names = [self.alias]
            if self.bastion_fixed_address:
                names.append(_address(self.bastion_fixed_address, f"the bastion {self.bastion_name}'s fixed address"))
            lines += [f"Host {' '.join(names)}", f"  HostName {bastion}", f"  HostKeyAlias {self.bastion_name}"]
            if self.bastion_proxy_command:
                if any(ch in self.bastion_proxy_command for ch in "\n\r"):
                    raise SshError("the bastion's proxy command must be one line")
                lines.append(f"  ProxyCommand {self.bastion_proxy_command}")
            lines.append("")
        lines += ["Host *", f"  User {self.user}"]
        if self.identity is not None:
            lines += [f"  IdentityFile {_path(self.identity, 'the SSH key')}", "  IdentitiesOnly yes"]
        lines += [f"  UserKnownHostsFile {_path(self.known_hosts, 'the known_hosts file')}"]
        lines += [f"  {k} {v}" for k, v in PINNING.items()]
        lines += ["  BatchMode yes", "  ConnectTimeout 15", "  ServerAliveInterval 15", "  LogLevel ERROR"]
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        """Write ``ssh_config`` (0600, in a 0700 directory) and create ``known_hosts`` if missing."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        text = self.config_text()
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if not self.known_hosts.exists():
            os.close(os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT, 0o600))
        return self.config

    def common_args(self, node: str) -> str:
        """``ansible_ssh_common_args`` of ``node``: this configuration, its key alias, the jump (not for the
        bastion itself, which is reached at its own address)."""
        args = ["-F", str(self.config), "-o", f"HostKeyAlias={node}"]
        if self.bastion_name and node != self.bastion_name:
            args += ["-o", f"ProxyJump={self.alias}"]
        return shlex.join(args)

    def ssh_argv(self, node: str, address: str) -> list[str]:
        """An ``ssh`` command line (without the remote command) logging into ``node`` at ``address``."""
        if self.bastion_name and node == self.bastion_name:
            target = self.alias
        else:
            target = _address(address, f"{node}'s address")
        return ["ssh", *shlex.split(self.common_args(node)), target]

    def pinned(self) -> dict[str, list[str]]:
        """The pinned keys: node name -> ``<type> <base64>`` lines."""
        out: dict[str, list[str]] = {}
        if not self.known_hosts.exists():
            return out
        for line in self.known_hosts.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                for host in parts[0].split(","):
                    out.setdefault(host, []).append(f"{parts[1]} {parts[2]}")
        return out

    def forget(self, node: str) -> bool:
        """Drop ``node``'s pinned keys (a VM rebuilt on purpose); whether any were there."""
        if node not in self.pinned():
            return False
        subprocess.run(["ssh-keygen", "-R", node, "-f", str(self.known_hosts)], capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)
        old = self.known_hosts.with_name(self.known_hosts.name + ".old")
        old.unlink(missing_ok=True)
        return True

    def changed_key_hint(self, node: str) -> str:
        return (f"its host key differs from the one pinned on first contact in {self.known_hosts}: refused; if "
                f"the VM was rebuilt on purpose, `ssh-keygen -R {node} -f {self.known_hosts}` and run again")

    def run(self, node: str, address: str, command: str, timeout: float = 60) -> str:
        """Run ``command`` on ``node`` (through the bastion); its stdout, or an ``SshError`` in one line."""
        try:
            res = subprocess.run([*self.ssh_argv(node, address), command], capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SshError(f"{node}: no answer over SSH within {timeout:.0f} s") from None
        except FileNotFoundError:
            raise SshError("ssh is not installed on this machine (Debian: openssh-client)") from None
        if res.returncode != 0:
            if host_key_changed(res.stderr):
                raise SshError(f"{node}: {self.changed_key_hint(node)}")
            tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-1:] or [f"exit {res.returncode}"]
            raise SshError(f"{node}: {tail[0]}")
        return res.stdout
