"""What the stage runner's tests and benchmark give ``aiinfn up``'s stages in place of a cloud and Pulumi.

* ``site_env``: a small site behind a bastion (one RKE2 server, ``agents`` agents, the bastion), as a
  YAML file the loader reads like any environment;
* ``RecordingStack``: the one Pulumi seam (``aiinfn.stages.stack.SiteStack``), recording each call; no
  Pulumi CLI runs on these machines, so this is what the infra and overlay stages drive in tests;
* ``servers``: the test hosts as Nova would list the site's servers (the plan's metadata tags, the host's
  address as fixed IP, a floating IP for the bastion);
* ``playbooks``: small real playbooks in place of site.yml / add-node.yml / remove-node.yml: the project's
  own ``inventory_check`` role on the inventory the stage wrote, then a task recording, on each node, the
  playbook and the address its SSH connection came from (``$SSH_CONNECTION``): the bastion's for a node
  reached through it;
* ``ListReporter``: the runner's progress, kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiinfn.openstack.inventory import FoundServer, site_network
from aiinfn.planning import Plan
from aiinfn.planning.nodes import server_metadata
from aiinfn.stages.runner import StageResult
from aiinfn.stages.stack import Preview

ENV = """name: {name}
site:
  name: {name}
  cloud: unused
  image: debian-12
  external_network: public
  domain: {name}.test
  ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjygPwno6xIZsG0LPS0RRRpkCmshAsvHKW9WdarCwhF ops@example.org"
# a test site: the stage tests log in as the shared bootstrap account throughout
bootstrap: {{keep_bootstrap_account: true}}
network: {{cidr: 10.254.0.0/24, pod_cidr: 10.72.0.0/16, service_cidr: 10.73.0.0/16}}
flavors:
  cpu: {{vcpus: 2, ram_gb: 4, disk_gb: 20}}
node_pools:
  bastion: {{role: bastion, flavor: cpu, nodes: [bastion-01]}}
  server: {{role: server, flavor: cpu, count: 1, name_prefix: k8s-server}}
  agent: {{role: agent, flavor: cpu, count: {agents}, name_prefix: k8s-agent}}
iam:
  issuer: https://iam.{name}.test/
  client_id: platform
  client_secret: iam-client-secret
  user_groups: [stages/users]
  admin_groups: [stages/admins]
"""
RKE2_TOKEN = "K10-stages-join-token-0123456789abcdef"
RKE2_AGENT_TOKEN = "K10-stages-agent-token-fedcba9876543210"
#: Where the test playbook records each run on a node.
RECORD = "/var/lib/aiinfn-stages.log"
FLOATING = "192.0.2.10"

SITE_PLAYBOOK = """- name: Validate the inventory and variables
  hosts: all
  gather_facts: false
  any_errors_fatal: true
  roles:
    - role: inventory_check
      vars:
        inventory_check_playbook: "{{{{ aiinfn_playbook | default('site') }}}}"
        # this small playbook installs no artifact (site.yml's pins are test_site's and the roles' tests')
        inventory_check_require_pins: false

- name: Record the run and where the connection came from
  hosts: all
  gather_facts: false
  tasks:
    - name: Record
      ansible.builtin.shell: >-
        echo "{{{{ aiinfn_playbook | default('site') }}}} ${{SSH_CONNECTION%% *}}" >> {record}
      changed_when: true
"""
ADD_NODE_PLAYBOOK = """- name: Site playbook, limited to the new nodes
  ansible.builtin.import_playbook: site.yml
  vars:
    aiinfn_playbook: add-node
"""
REMOVE_NODE_PLAYBOOK = """- name: Validate the inventory, the variables and the limit
  hosts: all
  gather_facts: false
  any_errors_fatal: true
  roles:
    - role: inventory_check
      vars:
        inventory_check_playbook: remove-node

- name: Record the drain
  hosts: all
  gather_facts: false
  tasks:
    - name: Record
      ansible.builtin.shell: echo "remove-node ${{SSH_CONNECTION%% *}}" >> {record}
      changed_when: true
"""


def site_env(directory: Path, agents: int, name: str = "stages") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(ENV.format(name=name, agents=agents))
    return path


def node_names(agents: int) -> list[str]:
    return ["bastion-01", "k8s-server-01", *[f"k8s-agent-{i:02d}" for i in range(1, agents + 1)]]


def playbooks(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    books = {"site": SITE_PLAYBOOK, "add-node": ADD_NODE_PLAYBOOK, "remove-node": REMOVE_NODE_PLAYBOOK}
    out = {}
    for name, text in books.items():
        path = directory / f"{name}.yml"
        path.write_text(text.format(record=RECORD))
        out[name] = path
    return out


def servers(plan: Plan, address: Callable[[str], str], present: list[str]) -> list[FoundServer]:
    """The plan's nodes among ``present`` as Nova lists them: tags, fixed IP, the bastion's floating IP."""
    net = site_network(plan)
    out = []
    for node in plan.nodes:
        if node.name not in present:
            continue
        addrs: list[dict[str, Any]] = [{"addr": address(node.name), "version": 4, "OS-EXT-IPS:type": "fixed"}]
        if node.role.value == "bastion":
            addrs.append({"addr": FLOATING, "version": 4, "OS-EXT-IPS:type": "floating"})
        out.append(FoundServer(node.name, server_metadata(plan.env, node), {net: addrs}, "ACTIVE", f"id-{node.name}"))
    return out


@dataclass
class RecordingStack:
    """The site's stack, in memory: previews show ``changes`` and ``up`` applies them once."""

    name: str
    changes: dict[str, int] = field(default_factory=lambda: {"create": 3})
    outputs_: dict[str, Any] = field(default_factory=lambda: {"rke2_token": RKE2_TOKEN,
                                                                         "rke2_agent_token": RKE2_AGENT_TOKEN})
    calls: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    fail_up: str | None = None

    def preview(self, on_output: Callable[[str], None] | None = None) -> Preview:
        self.calls.append("preview")
        return Preview(dict(self.changes), text="Previewing update (stand-in)\n")

    def up(self, on_output: Callable[[str], None] | None = None) -> dict[str, int]:
        self.calls.append("up")
        if self.fail_up:
            from aiinfn.stages.stack import StackError

            raise StackError(self.fail_up)
        if on_output:
            on_output("Updating (stand-in)")
        applied, self.changes = self.changes, {"same": 10}
        return applied

    def outputs(self) -> dict[str, Any]:
        self.calls.append("outputs")
        return dict(self.outputs_)

    def set_secret(self, key: str, value: str) -> None:
        self.calls.append(f"set_secret {key}")
        if key == "aiinfn:kubeconfig" and self.secrets.get(key) != value:
            self.changes = {"create": 40}  # the program now registers the overlay (stacks/scopes.py)
        self.secrets[key] = value


@dataclass
class ListReporter:
    started: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    events: list[Mapping[str, Any]] = field(default_factory=list)
    results: list[StageResult] = field(default_factory=list)

    def start(self, stage: str, index: int, total: int) -> None:
        self.started.append(stage)

    def line(self, text: str) -> None:
        self.lines.append(text)

    def ansible_event(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)

    def done(self, result: StageResult) -> None:
        self.results.append(result)

    def text(self) -> str:
        return "\n".join([*self.lines, *(f"{r.stage}: {r.summary}" for r in self.results)])


#: A kubeconfig as RKE2 writes it (the certificate data are placeholders of the real shape).
RKE2_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0Jn
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJrVENDQVRlZ0F3SUJBZ0lJYzJ0YWdlcy1jbGllbnQ=
    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCnN0YWdlcy1jbGllbnQta2V5LXNlY3JldC0wMTIzNDU2Nzg5
"""
CLIENT_KEY = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCnN0YWdlcy1jbGllbnQta2V5LXNlY3JldC0wMTIzNDU2Nzg5"
