"""A stand-in sts-wire release for tests: there is no FUSE in the test hosts and no IAM to talk to.

``build_release(artifacts)`` writes ``<artifacts>/sts-wire/<version>/sts-wire_linux``, the only asset sts-wire's
releases carry (no checksum file: the roles check the binary against a pinned sha256, here ``SHA256``, passed as
``sts_wire_sha256_override``). The stand-in checks its arguments and its IAM client environment as sts-wire v2.1.3
uses it (pkg/core/commands.go: the client id and secret are used only with a REFRESH_TOKEN; without one sts-wire
registers a new client and asks for a login on the terminal, which a unit cannot answer), writes what it got under
the mount point (``.sts-wire-standin``) and stays up, like a mount would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

VERSION = "v2.1.3"
STANDIN = """#!/bin/sh
# stand-in sts-wire (aiinfn tests): <iam> <bucket> <endpoint> [role region] /<bucket> <mountpoint> flags...
[ -n "$IAM_CLIENT_ID" ] && [ -n "$IAM_CLIENT_SECRET" ] || { echo "no IAM client credentials" >&2; exit 2; }
[ -n "$REFRESH_TOKEN" ] || { echo "no REFRESH_TOKEN: sts-wire would register a client, ask for a login" >&2; exit 2; }
[ "$#" -ge 5 ] || { echo "usage: sts-wire <iam> <bucket> <endpoint> [role region] /<bucket> <mountpoint>" >&2; exit 2; }
mount=""; prev=""
for a; do case "$a" in --*) mount="$prev"; break;; esac; prev="$a"; done
[ -d "$mount" ] || { echo "mount point $mount missing" >&2; exit 2; }
printf '%s\\n' "$@" > "$mount/.sts-wire-standin"
exec sleep infinity
"""
#: sha256 of the genuine stand-in binary: what a test passes as the role's pinned value.
SHA256 = hashlib.sha256(STANDIN.encode()).hexdigest()


def build_release(root: Path, body: str = STANDIN) -> None:
    d = root / "sts-wire" / VERSION
    d.mkdir(parents=True, exist_ok=True)
    (d / "sts-wire_linux").write_text(body)
