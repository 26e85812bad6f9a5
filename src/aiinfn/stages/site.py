"""The stages of ``aiinfn up SITE``: what each one does to a site, on top of the runner.

* ``drain``: nodes the last bootstrap converged that the plan no longer has are drained and cleaned
  (``remove-node.yml`` limited to them, on the inventory of the last run, where they still are) before
  the infra stage deletes their VMs; nothing to do otherwise.
* ``infra``: ``pulumi preview`` of the stack, shown and confirmed (unless ``--yes``), then ``pulumi up``.
  With stable node names a new node's resources are the only ones it creates (tests/stacks prove it).
* ``inventory``: the site's servers in the live cloud, matched to the plan (``aiinfn.openstack.inventory``);
  a planned node without a server, a drifted or duplicated one stops here. It writes the site's
  ``ssh_config`` (the bastion as jump host, host keys pinned: ``aiinfn.ansible.known_hosts``) and the
  inventory Ansible runs on, every node behind the bastion carrying ``ProxyJump`` through it.
* ``bootstrap``: ``site.yml`` on every node, or, when the site was bootstrapped before and the plan has
  gained nodes, ``add-node.yml`` limited to the new ones (``aiinfn.ansible.checks.check_limit``).
* ``kubeconfig``: RKE2's kubeconfig read from the first server through the bastion, its address
  rewritten to the API endpoint, stored as the stack's secret ``aiinfn:kubeconfig``.
* ``overlay``: ``pulumi preview`` and ``pulumi up`` again: the stack now has the kubeconfig, so the
  program registers the overlay of services (and a grown site's quota and profile changes).

Pulumi is reached only through ``SiteStack`` (``stages.stack``), built on first use, so the stages between
the two Pulumi ones run without the Pulumi CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ansible import checks
from ..ansible.known_hosts import SshAccess, SshError, host_key_changed
from ..ansible.runner import PlaybookResult, playbook_path, run_playbook
from ..config.models import Environment, Role
from ..errors import AiinfnError
from ..openstack.inventory import FoundServer, Inventory, build
from ..planning import Plan
from ..render import ADMIN_USER, ansible_inventory
from . import kubeconfig as kc
from .runner import Reporter, Skip, StageFailed, UpState
from .stack import KUBECONFIG_KEY, Preview, SiteStack

INVENTORY_FILE = "inventory.yaml"


def default_state_dir(stack: str) -> Path:
    """Where ``aiinfn up`` keeps a site's state: ``$XDG_STATE_HOME/aiinfn/<stack>`` (``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aiinfn" / stack


def floating_ip(addresses: Mapping[str, list[dict[str, Any]]]) -> str | None:
    """The floating IPv4 address in Nova's ``addresses`` mapping of a server."""
    for name in sorted(addresses):
        for a in addresses[name] or []:
            if a.get("OS-EXT-IPS:type") == "floating" and a.get("version", 4) == 4 and a.get("addr"):
                return str(a["addr"])
    return None


@dataclass
class SiteRun:
    """One ``aiinfn up`` of a site: what the stages need, the seams (stack, servers) included."""

    env_ref: str
    environment: Environment
    plan: Plan
    stack_name: str
    state_dir: Path
    reporter: Reporter
    #: Builds the site's stack on first use (``AutomationStack`` in the CLI).
    make_stack: Callable[[], SiteStack]
    #: The site's servers in the live cloud (``openstack.inventory.site_servers`` in the CLI).
    list_servers: Callable[[], list[FoundServer]]
    confirm: Callable[[str], bool]
    yes: bool = False
    ssh_user: str = ADMIN_USER
    identity: Path | None = None
    bastion_proxy_command: str | None = None
    bastion_address: str | None = None
    api_endpoint: str | None = None
    secrets_file: Path | None = None
    #: Playbook per role of it (site, add-node, remove-node): the project's by default.
    playbooks: dict[str, Path] = field(default_factory=dict)
    extravars: dict[str, Any] = field(default_factory=dict)
    #: Seconds spent in ansible-playbook and in the stack, per stage (benchmarks/stages.py reads them).
    timings: dict[str, float] = field(default_factory=dict)
    _stack: SiteStack | None = None

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def site(self) -> str:
        return self.environment.site.name

    @property
    def inventory_file(self) -> Path:
        return self.state_dir / INVENTORY_FILE

    def stack(self) -> SiteStack:
        if self._stack is None:
            self._stack = self.make_stack()
        return self._stack

    def state(self) -> UpState:
        return UpState.load(self.state_dir)

    def bastion(self) -> str:
        return next((n.name for n in self.plan.nodes if n.role is Role.BASTION), "")

    def first_server(self) -> str:
        return next((n.name for n in self.plan.nodes if n.role is Role.SERVER), "")

    def access(self, st: UpState | None = None) -> SshAccess:
        st = st or self.state()
        return SshAccess(site=self.site, state_dir=self.state_dir, bastion_name=st.bastion,
                         bastion_address=st.bastion_address, bastion_fixed_address=st.addresses.get(st.bastion, ""),
                         user=self.ssh_user, identity=self.identity, bastion_proxy_command=self.bastion_proxy_command)

    def steps(self) -> dict[str, Callable[[], str]]:
        return {"drain": self.drain, "infra": self.infra, "inventory": self.inventory, "bootstrap": self.bootstrap,
                "kubeconfig": self.kubeconfig, "overlay": self.overlay}

    # -- Pulumi stages ------------------------------------------------------------------------------------
    def _apply(self, stage: str) -> str:
        t0 = time.monotonic()
        st = self.stack()
        preview: Preview = st.preview()
        if not preview.has_changes:
            self.timings[stage] = time.monotonic() - t0
            raise Skip(f"stack {st.name}: no changes")
        if not self.yes:
            if preview.text:
                self.reporter.line(preview.text.rstrip())
            self.reporter.line(f"stack {st.name}: {preview.summary()}")
            if not self.confirm(f"apply these changes to stack {st.name!r}?"):
                raise StageFailed(stage, f"stack {st.name}", "not confirmed: nothing applied")
        changes = st.up(on_output=lambda ln: self.reporter.line(ln.rstrip()))
        self.timings[stage] = time.monotonic() - t0
        done = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if n and op != "same") or "no changes"
        return f"stack {st.name}: {done}"

    def infra(self) -> str:
        return self._apply("infra")

    def overlay(self) -> str:
        return self._apply("overlay")

    # -- inventory ----------------------------------------------------------------------------------------
    def inventory(self) -> str:
        servers = self.list_servers()
        inv = build(self.plan, servers)
        self._refuse(inv)
        for note in inv.notes():
            self.reporter.line(f"note: {note}")
        found = {s.name: s for s in servers}
        st = self.state()
        st.addresses = dict(inv.addresses)
        st.bastion = self.bastion()
        if st.bastion:
            address = self.bastion_address or floating_ip(found[st.bastion].addresses)
            if not address:
                raise StageFailed("inventory", st.bastion, "the bastion has no floating IP: give --bastion-address")
            st.bastion_address = address
        access = self.access(st)
        try:
            access.write()
        except SshError as e:
            raise StageFailed("inventory", st.bastion or self.site, str(e)) from None
        text = ansible_inventory(inv.plan, inv.addresses, ssh_args={n.name: access.common_args(n.name)
                                                                    for n in inv.plan.nodes},
                                 ssh_user=self.ssh_user if self.ssh_user != ADMIN_USER else None)
        fd = os.open(self.inventory_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        st.save(self.state_dir)
        via = f" behind {st.bastion} ({st.bastion_address})" if st.bastion else ""
        return f"{len(inv.plan.nodes)} servers{via}; inventory {self.inventory_file}"

    def _refuse(self, inv: Inventory) -> None:
        """A planned node the cloud does not have as planned stops the run: bootstrap would miss it."""
        if inv.missing:
            raise StageFailed("inventory", inv.missing[0], "planned node has no server in the cloud "
                              f"({len(inv.missing)} such: {', '.join(inv.missing)}): run the infra stage")
        for name in inv.duplicates:
            raise StageFailed("inventory", name, "more than one server has this name: delete the strays")
        for name, diffs in inv.drift.items():
            raise StageFailed("inventory", name, f"server tags differ from the plan ({'; '.join(diffs)})")
        for name, status in inv.not_active.items():
            raise StageFailed("inventory", name, f"server is {status}, not ACTIVE")
        for name in inv.no_address:
            raise StageFailed("inventory", name, "server has no fixed IPv4 address on the site network")

    # -- Ansible stages -----------------------------------------------------------------------------------
    def _playbook(self, name: str) -> Path:
        return self.playbooks.get(name) or playbook_path(name)

    def _secrets(self, playbook: str) -> dict[str, str]:
        def from_stack(key: str) -> str | None:
            try:
                value = self.stack().outputs().get(key.replace("-", "_"))
            except AiinfnError:  # no pulumi CLI, no stack: the error below names the other ways
                return None
            return None if value is None else str(value)

        needs = checks.secrets_needed(self.environment, playbook)
        return checks.resolve_secrets(needs, secrets_file=self.secrets_file, stack_lookup=from_stack)

    def _run(self, stage: str, playbook: str, inventory: Path, limit: str | None) -> PlaybookResult:
        access = self.access()
        envvars = {
            "ANSIBLE_HOST_KEY_CHECKING": "True",  # the site's known_hosts decides (accept-new, never "no")
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.state_dir / "cp"),
            "ANSIBLE_TIMEOUT": "30",
            "AIINFN_ENV": self.env_ref,
            "OS_CLOUD": self.environment.site.cloud,
        }
        extravars = {**self.extravars, **self._secrets(playbook)}
        self.reporter.line(f"{playbook}{f' --limit {limit}' if limit else ''} on {inventory.name}")
        t0 = time.monotonic()
        result = run_playbook(self._playbook(playbook), inventory, extravars=extravars, limit=limit,
                              envvars=envvars, on_event=self.reporter.ansible_event)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.monotonic() - t0
        if not result.ok:
            f = result.failures[0]
            if host_key_changed(f.message):
                cause = access.changed_key_hint(f.host)
            else:
                cause = f"{f.task}: {'unreachable' if f.unreachable else 'failed'}: {f.message}"
            more = f" (and {len(result.failures) - 1} more failures)" if len(result.failures) > 1 else ""
            raise StageFailed(stage, f.host, cause + more)
        return result

    def drain(self) -> str:
        st = self.state()
        planned = {n.name for n in self.plan.nodes}
        leaving = [n for n in st.bootstrapped if n not in planned]
        if not leaving:
            raise Skip("no node leaves the site")
        if not self.inventory_file.exists():
            raise StageFailed("drain", ", ".join(leaving), f"no inventory of the last run ({self.inventory_file})")
        limit = ",".join(leaving)
        try:
            checks.check_limit(self.plan, "remove-node", limit)
        except checks.BootstrapError as e:
            raise StageFailed("drain", limit, str(e)) from None
        self._run("drain", "remove-node", self.inventory_file, limit)
        st = self.state()
        st.bootstrapped = [n for n in st.bootstrapped if n not in leaving]
        for n in leaving:
            st.addresses.pop(n, None)
            self.access(st).forget(n)  # a later node of the same name is another VM
        st.save(self.state_dir)
        return f"drained and cleaned {limit}"

    def bootstrap(self) -> str:
        if not self.inventory_file.exists():
            raise StageFailed("bootstrap", str(self.inventory_file), "no inventory: run `--from inventory`")
        st = self.state()
        present = [n for n in st.addresses if n in {p.name for p in self.plan.nodes}]
        new = [n for n in present if n not in st.bootstrapped]
        if st.bootstrapped and new:
            playbook, limit = "add-node", ",".join(new)
            try:
                checks.check_limit(self.plan, playbook, limit)
            except checks.BootstrapError as e:
                raise StageFailed("bootstrap", limit, str(e)) from None
        else:
            playbook, limit = "site", None
        result = self._run("bootstrap", playbook, self.inventory_file, limit)
        st = self.state()
        st.bootstrapped = sorted({*st.bootstrapped, *(new if limit else present)})
        st.save(self.state_dir)
        changed = sorted(h for h, n in result.changed.items() if n)
        return f"{playbook}{f' on {limit}' if limit else ''}: {len(result.stats)} hosts, {len(changed)} changed"

    # -- kubeconfig ---------------------------------------------------------------------------------------
    def api_server(self, address: str) -> str:
        host = self.api_endpoint or next(iter(self.environment.kubernetes.tls_sans), None) or address
        return kc.api_url(str(host))

    def kubeconfig(self) -> str:
        st = self.state()
        server = self.first_server()
        address = st.addresses.get(server)
        if not server or not address:
            raise StageFailed("kubeconfig", server or self.site, "no address of the first server: run `--from "
                              "inventory`")
        try:
            text = kc.fetch(self.access(st), server, address)
            url = self.api_server(address)
            rewritten = kc.rewrite(text, url)
        except (SshError, kc.KubeconfigError) as e:
            raise StageFailed("kubeconfig", server, str(e)) from None
        self.stack().set_secret(KUBECONFIG_KEY, rewritten)
        via = f" through {st.bastion}" if st.bastion else ""
        return f"from {server}{via}, server {url}: stored as the stack's secret {KUBECONFIG_KEY}"
