"""The IAM access token of an offload target's virtual kubelet (OIDC targets), kept fresh in a file.

Mounted over the interLink chart's own ``/opt/refresh.py`` in its ``refresh-token`` container (the
chart runs ``python3 /opt/refresh.py``), because the chart passes the client secret and the refresh
token as plain environment values from Helm values; here those values only name files of a Secret
mount (``file:/path``), so no secret is ever a Helm value, an artifact or a pod spec field.

Environment (the chart's names): IAM_TOKEN_ENDPOINT, IAM_CLIENT_ID, IAM_CLIENT_SECRET and
IAM_REFRESH_TOKEN (``file:<path>``), IAM_VK_AUD (audience, optional), IAM_GRANT_TYPE
(``refresh_token``), TOKEN_PATH (where the virtual kubelet reads it). Every ``REFRESH_SECONDS`` (or
sooner when the token says it expires) the refresh-token grant is run at the platform's IAM and the
access token written atomically, mode 0600. Failures are one line on stderr and a retry; nothing
secret is printed. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REFRESH_SECONDS = 600
RETRY_SECONDS = 30
TIMEOUT = 30


class Failure(Exception):
    pass


def value(name: str) -> str:
    """An environment value, or the content of the file it names (``file:/path``)."""
    raw = os.environ.get(name, "")
    if raw.startswith("file:"):
        try:
            with open(raw[len("file:"):]) as f:
                return f.read().strip()
        except OSError as e:
            raise Failure(f"{name}: cannot read {raw[len('file:'):]}: {e.strerror}") from None
    return raw


def fetch() -> tuple[str, int]:
    """A new access token and its lifetime in seconds."""
    form = {
        "grant_type": os.environ.get("IAM_GRANT_TYPE") or "refresh_token",
        "refresh_token": value("IAM_REFRESH_TOKEN"),
        "client_id": value("IAM_CLIENT_ID"),
        "client_secret": value("IAM_CLIENT_SECRET"),
    }
    audience = value("IAM_VK_AUD")
    if audience:
        form["audience"] = audience
    req = urllib.request.Request(value("IAM_TOKEN_ENDPOINT"), data=urllib.parse.urlencode(form).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise Failure(f"IAM refused the refresh ({e.code})") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Failure(f"IAM unreachable or unreadable: {e}") from None
    token = answer.get("access_token")
    if not token:
        raise Failure("IAM answered without an access token")
    return str(token), int(answer.get("expires_in") or REFRESH_SECONDS)


def write(path: str, token: str) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)


def once() -> int:
    """Refresh once; returns the seconds to wait before the next refresh."""
    token, lifetime = fetch()
    write(os.environ.get("TOKEN_PATH") or "/opt/interlink/token", token)
    return max(RETRY_SECONDS, min(REFRESH_SECONDS, lifetime // 2))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    while True:
        try:
            wait = once()
        except Failure as e:
            print(f"interlink-token: {e}", file=sys.stderr, flush=True)
            if args == ["--once"]:
                return 1
            wait = RETRY_SECONDS
        else:
            if args == ["--once"]:
                return 0
        time.sleep(wait)


if __name__ == "__main__":
    sys.exit(main())
