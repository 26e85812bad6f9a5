"""What ``aiinfn bootstrap`` checks before it runs a playbook, and where it finds the secrets.

Everything here happens before Ansible touches a host: the environment is valid, the playbook exists,
``add-node`` and ``remove-node`` are limited to the nodes they concern (and never to the first server or
the stateful nodes), the inventory exists, and every secret the playbook needs has a value. A problem is
one ``BootstrapError`` naming the thing to fix.

Secrets are looked up, in order, in the environment variable ``AIINFN_SECRET_<NAME>`` (``rke2-token`` ->
``AIINFN_SECRET_RKE2_TOKEN``), in ``--secrets-file`` (a YAML mapping name -> value that only its owner may
read) and in the site's Pulumi stack (the ``rke2_token`` output and the config secrets), when the pulumi CLI
is installed. They are handed to Ansible as extra variables through a file only the operator can read, as
literal values Ansible never templates (``runner.write_extravars``), never on a command line, and never printed.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import project_root
from ..config.models import Environment, Role
from ..errors import AiinfnError
from ..planning import Plan
from .runner import PLAYBOOKS

#: The Pulumi stack output holding the RKE2 join token (stacks/__main__.py).
RKE2_TOKEN = "rke2-token"
#: The Pulumi stack output holding the RKE2 agent token (stacks/infra): the only token agent nodes get.
RKE2_AGENT_TOKEN = "rke2-agent-token"
#: The Pulumi config secret holding the refresh token of the nodes' own IAM identity, issued (offline_access) to
#: ``storage.s3.client_id``: sts-wire on the nodes renews its access tokens with it (roles/sts_wire).
STS_WIRE_REFRESH_TOKEN = "sts-wire-refresh-token"
#: Playbooks that must be limited to the nodes they add or remove.
LIMITED = ("add-node", "remove-node")


class BootstrapError(AiinfnError):
    """The run cannot start: a missing secret, a missing limit, an unusable inventory."""

    exit_code = 2


@dataclass(frozen=True)
class SecretNeed:
    variable: str  # the role input (extra variable)
    name: str  # the secret's name in the stack / file / environment variable
    why: str


def secrets_needed(env: Environment, playbook: str) -> list[SecretNeed]:
    """The secrets ``playbook`` hands to the roles for ``env``."""
    needs: list[SecretNeed] = []
    if playbook in ("site", "add-node"):
        needs.append(SecretNeed("rke2_token", RKE2_TOKEN, "the RKE2 server token (stack output rke2_token)"))
        needs.append(SecretNeed("rke2_agent_token", RKE2_AGENT_TOKEN,
                                "the RKE2 agent token (stack output rke2_agent_token)"))
    if playbook in ("site", "backup-restore", "backup-prune") and env.storage.backup is not None:
        needs.append(SecretNeed("borgbackup_passphrase", env.storage.backup.passphrase_secret,
                                "the Borg repository passphrase (storage.backup.passphrase_secret)"))
    s3 = env.storage.s3
    if playbook in ("site", "add-node") and s3 is not None and s3.client_secret and s3.node_mounts:
        needs.append(SecretNeed("sts_wire_client_secret", s3.client_secret,
                                "the sts-wire IAM client secret (storage.s3.client_secret)"))
        needs.append(SecretNeed("sts_wire_refresh_token", STS_WIRE_REFRESH_TOKEN,
                                "the refresh token of the nodes' IAM client (config secret sts-wire-refresh-token)"))
    grafana = env.services.monitoring.grafana
    if playbook in ("site", "monitoring") and grafana is not None:
        needs.append(SecretNeed("grafana_iam_client_secret", grafana.client_secret,
                                "Grafana's IAM client secret (services.monitoring.grafana.client_secret)"))
    return needs


def env_variable(name: str) -> str:
    return "AIINFN_SECRET_" + name.upper().replace("-", "_")


def read_secrets_file(path: Path) -> dict[str, str]:
    """A YAML mapping of secret name -> value, readable by its owner only."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise BootstrapError(f"{path}: cannot read the secrets file ({e.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BootstrapError(f"{path}: the secrets file may be read by others: `chmod 600 {path}`")
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text())
    except (YAMLError, UnicodeDecodeError) as e:
        raise BootstrapError(f"{path}: not a YAML mapping of secret names to values ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise BootstrapError(f"{path}: not a YAML mapping of secret names to values")
    return {k: str(v) for k, v in data.items() if v is not None}


def pulumi_secrets(stack: str) -> Callable[[str], str | None]:
    """A lookup of the stack's secrets (outputs, then config), or one that finds nothing without the CLI."""
    if shutil.which("pulumi") is None:
        return lambda name: None
    cache: dict[str, Any] = {}

    def lookup(name: str) -> str | None:
        if not cache:
            from pulumi import automation as auto

            try:
                st = auto.select_stack(stack_name=stack, work_dir=str(project_root()))
                cache["outputs"] = {k: v.value for k, v in st.outputs().items()}
                cache["config"] = {k.split(":", 1)[-1]: v.value for k, v in st.get_all_config().items()}
            except Exception as e:  # the automation API raises many types; each means "not usable"
                raise BootstrapError(f"stack {stack}: cannot read its secrets ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        out = cache["outputs"].get(name.replace("-", "_")) or cache["config"].get(name)
        return None if out is None else str(out)

    return lookup


def resolve_secrets(
    needs: list[SecretNeed],
    *,
    secrets_file: Path | None = None,
    stack_lookup: Callable[[str], str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Extra variables for every need, or one error listing every secret without a value."""
    environ = os.environ if environ is None else environ
    from_file = read_secrets_file(secrets_file) if secrets_file else {}
    values: dict[str, str] = {}
    missing: list[SecretNeed] = []
    for need in needs:
        value = environ.get(env_variable(need.name)) or from_file.get(need.name)
        if not value and stack_lookup is not None:
            value = stack_lookup(need.name)
        if value:
            values[need.variable] = value
        else:
            missing.append(need)
    if missing:
        names = ", ".join(f"{m.name} ({m.why})" for m in missing)
        raise BootstrapError(
            f"no value for {names}: set {env_variable(missing[0].name)}, put it in a --secrets-file, "
            "or run where the pulumi CLI can read the site's stack"
        )
    return values


def check_limit(plan: Plan, playbook: str, limit: str | None) -> None:
    """``add-node`` and ``remove-node`` name the nodes they concern, never the first server or stateful nodes."""
    if playbook not in LIMITED:
        return
    if not limit:
        raise BootstrapError(f"--playbook {playbook} needs --limit with the nodes to "
                             f"{'add' if playbook == 'add-node' else 'remove'} (e.g. --limit gpu-a100-02)")
    names = [x.strip() for x in limit.replace(";", ",").replace(":", ",").split(",") if x.strip()]
    known = {n.name: n for n in plan.nodes}
    first_server = next((n.name for n in plan.nodes if n.role is Role.SERVER), None)
    for name in names:
        if any(ch in name for ch in "*?[]!&~") or name.startswith("@"):
            raise BootstrapError(f"--limit {limit}: name the nodes one by one (no patterns) for {playbook}")
        node = known.get(name)
        if playbook == "add-node" and node is None:
            raise BootstrapError(f"--limit: {name} is not a node of environment {plan.env.name}: add it to the "
                                 "environment and run `pulumi up` first")
        if node is not None and (name == first_server or node.role in (Role.NFS, Role.BACKUP, Role.BASTION)):
            raise BootstrapError(f"--limit: {name} is the {'first server' if name == first_server else node.role.value}"
                                 f" node; {playbook} handles cluster nodes only (use site.yml)")


def default_inventory(env_name: str) -> Path:
    """The dynamic inventory script (servers found by their tags in the site's cloud)."""
    return project_root() / "inventory" / "openstack.py"


def check_playbook(name: str) -> Path:
    if name not in PLAYBOOKS:
        raise BootstrapError(f"--playbook {name}: not one of {', '.join(PLAYBOOKS)}")
    path = project_root() / "playbooks" / PLAYBOOKS[name]
    if not path.is_file():
        raise BootstrapError(f"playbook {path} is missing from this checkout")
    return path
