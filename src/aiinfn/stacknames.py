"""Stack names: which stack of the one Pulumi project holds a site, an event at a site, a federation.

The program (stacks/scopes.py) reads other stacks by these names through ``StackReference``; the
offline plan answers those reads under the same names.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The Pulumi project (Pulumi.yaml).
PROJECT = "aiinfn"
#: Organisation part of fully qualified stack names; "organization" is what self-managed backends use.
#: A stack sets another with `pulumi config set aiinfn:stack_org <org>`.
DEFAULT_ORG = "organization"
SCOPES = ("site", "event", "federation")


def site_stack_name(site: str, org: str | None = None, names: Mapping[str, str] | None = None) -> str:
    """The fully qualified name of ``site``'s stack (``names`` maps a site to another stack name)."""
    return f"{org or DEFAULT_ORG}/{PROJECT}/{(names or {}).get(site, site)}"


def event_stack_name(event: str, site: str) -> str:
    """The stack of event ``event`` at ``site``."""
    return f"{event}-{site}"
