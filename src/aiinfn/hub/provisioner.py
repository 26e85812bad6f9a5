#!/usr/bin/env python3
"""aiinfn-provisioner: the users' areas on the platform filesystem, made before a notebook starts.

The tree (``AIINFN_AREAS``, the ``areas`` directory of the NFS export, mounted in this pod only)::

    home/          1733 areas   each user's home/<name>: <uid>:<uid> 0700
    shared/        0755 areas   shared/<area>: areas:<group gid> 2770 (setgid: new files stay the group's)
    public/        2775 areas:<admins gid>   everyone reads, the platform's admins write
    envs/          0755 areas   envs/<name>: areas:<maintainers gid> 2775 (managed environments)

**Least privilege.** The export squashes root (``root_squash``), so nothing here ever acts as root on
the filesystem, and it needs no capability to change owners: each directory is created *by its owner*
(a child process that has switched to the user's, or the platform's, UID and GID: ``CAP_SETUID`` and
``CAP_SETGID`` are the only capabilities the pod keeps). It has no Kubernetes API access at all. The
hub calls it (``POST /provision`` with the shared token, over a NetworkPolicy that admits only the
hub); the request names what to ensure and every value is checked (names are portable file names,
UIDs and GIDs in the platform's ranges: never 0 nor a system account).

**Idempotent.** Ensuring an area that exists changes nothing but its own mode (a home is put back to
0700, a group area to 2770); contents are never touched. A home owned by someone else is an error
(one line), never "fixed".

    aiinfn-provisioner serve                      the service (AIINFN_AREAS, AIINFN_PROVISIONER_TOKEN_FILE,
                                                  AIINFN_PROVISIONER_PORT)
    aiinfn-provisioner ensure <request.json>      one request, from a file (operators, tests)

Standard library only. Errors: one line on stderr (or in the JSON answer), non-zero exit (or 4xx).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: As aiinfn_identity writes them (this file is shipped alone).
UID_BASE = 200_000
UID_SPAN = 1 << 24
GID_BASE = 20_000_000
GID_SPAN = 1 << 24
AREAS_UID = 100_000
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
MODES = {"home": 0o1733, "shared": 0o755, "public": 0o2775, "envs": 0o755}
HOME_MODE = 0o700
GROUP_MODE = 0o2770
ENV_MODE = 0o2775
MAX_BODY = 1 << 16


class Refused(Exception):
    """A request that cannot be honoured: the message is the one line the caller sees."""


# --------------------------------------------------------------------------- checks


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value) or value in (".", ".."):
        raise Refused(f"{what} {value!r} is not a portable name (a-z, 0-9, '.', '_', '-')")
    return value


def _uid(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not UID_BASE <= value < UID_BASE + UID_SPAN:
        raise Refused(f"{what} {value!r} is outside the users' range [{UID_BASE}, {UID_BASE + UID_SPAN})")
    return value


def _gid(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not GID_BASE <= value < GID_BASE + GID_SPAN:
        raise Refused(f"{what} {value!r} is outside the groups' range [{GID_BASE}, {GID_BASE + GID_SPAN})")
    return value


def check(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request with every value checked: {user: {home, uid, gid}, groups: [{area, gid}],
    public_gid, envs: [{name, gid}]} (each part optional but ``user``)."""
    if not isinstance(request, Mapping):
        raise Refused("the request is not a JSON object")
    unknown = set(request) - {"user", "groups", "public_gid", "envs"}
    if unknown:
        raise Refused(f"unknown fields {sorted(unknown)}")
    out: dict[str, Any] = {"groups": [], "envs": [], "public_gid": None, "user": None}
    user = request.get("user")
    if user is not None:
        if not isinstance(user, Mapping):
            raise Refused("user is not an object")
        uid = _uid(user.get("uid"), "uid")
        if user.get("gid") != uid:
            raise Refused("a user's gid is their private group: the same number as their uid")
        out["user"] = {"home": _name(user.get("home"), "home"), "uid": uid, "gid": uid}
    for g in request.get("groups") or []:
        out["groups"].append({"area": _name(g.get("area"), "area"), "gid": _gid(g.get("gid"), "gid")})
    for e in request.get("envs") or []:
        out["envs"].append({"name": _name(e.get("name"), "environment"), "gid": _gid(e.get("gid"), "gid")})
    if request.get("public_gid") is not None:
        out["public_gid"] = _gid(request.get("public_gid"), "public_gid")
    return out


# --------------------------------------------------------------------------- acting as someone


def as_owner(uid: int, gid: int, op: dict[str, Any]) -> None:
    """Run ``op`` in a child that is ``uid``:``gid`` (and nothing else): it creates what it owns."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "_op", json.dumps(op)],
                          user=uid, group=gid, extra_groups=[], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise Refused(lines[-1] if lines else f"creating {op.get('path')} failed ({proc.returncode})")


def _op(op: Mapping[str, Any]) -> None:
    """In the owner's child: make ``path`` a directory of ``mode`` owned by us (and group ``gid``)."""
    path, mode, gid = Path(op["path"]), int(op["mode"]), op.get("gid")
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{path} exists and is not a directory: ask the platform's administrators")
    if st.st_uid != os.getuid():
        raise Refused(f"{path} belongs to uid {st.st_uid}, not {os.getuid()}: ask the platform's administrators")
    if gid is not None and st.st_gid != gid:
        os.chown(path, -1, gid)  # the owner may give its directory to a group it is in
    os.chmod(path, mode)


# --------------------------------------------------------------------------- the tree


def ensure(root: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """Make (idempotently) what ``request`` asks for under ``root``; returns what exists now."""
    req = check(request)
    if not root.is_dir():
        raise Refused(f"the areas directory {root} does not exist (the nfs_server role makes it)")
    st = root.stat()
    if st.st_uid != AREAS_UID:
        raise Refused(f"the areas directory {root} belongs to uid {st.st_uid}: it must belong to {AREAS_UID}")
    for top, mode in MODES.items():
        gid = req["public_gid"] if top == "public" else None
        if top == "public" and gid is None:
            continue
        as_owner(AREAS_UID, gid if gid is not None else AREAS_UID,
                 {"path": str(root / top), "mode": mode, "gid": gid})
    made: dict[str, Any] = {"groups": [], "envs": []}
    for g in req["groups"]:
        path = root / "shared" / g["area"]
        as_owner(AREAS_UID, g["gid"], {"path": str(path), "mode": GROUP_MODE, "gid": g["gid"]})
        made["groups"].append(str(path.relative_to(root)))
    for e in req["envs"]:
        path = root / "envs" / e["name"]
        as_owner(AREAS_UID, e["gid"], {"path": str(path), "mode": ENV_MODE, "gid": e["gid"]})
        made["envs"].append(str(path.relative_to(root)))
    user = req["user"]
    if user is not None:
        path = root / "home" / user["home"]
        as_owner(user["uid"], user["gid"], {"path": str(path), "mode": HOME_MODE, "gid": None})
        made["home"] = str(path.relative_to(root))
    return made


# --------------------------------------------------------------------------- the service


class Handler(BaseHTTPRequestHandler):
    root: Path = Path("/areas")
    token: str = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write("aiinfn-provisioner: " + fmt % args + "\n")

    def _answer(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, {"ok": True})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/provision":
            self._answer(404, {"error": "not found"})
            return
        given = self.headers.get("Authorization", "")
        if not self.token or not hmac.compare_digest(given.encode(), f"token {self.token}".encode()):
            self._answer(401, {"error": "no or wrong token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": "request too large"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            self._answer(200, ensure(self.root, request))
        except (Refused, ValueError) as e:
            self._answer(400, {"error": str(e)})


def serve() -> None:
    token_file = os.environ.get("AIINFN_PROVISIONER_TOKEN_FILE", "")
    Handler.token = Path(token_file).read_text().strip() if token_file else os.environ.get(
        "AIINFN_PROVISIONER_TOKEN", "")
    if not Handler.token:
        raise Refused("no token (AIINFN_PROVISIONER_TOKEN_FILE)")
    Handler.root = Path(os.environ.get("AIINFN_AREAS", "/areas"))
    bind = os.environ.get("AIINFN_PROVISIONER_BIND", "")
    port = int(os.environ.get("AIINFN_PROVISIONER_PORT", "8080"))
    ThreadingHTTPServer((bind, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["_op"] and len(args) == 2:
            _op(json.loads(args[1]))
        elif args == ["serve"]:
            serve()
        elif args[:1] == ["ensure"] and len(args) == 2:
            print(json.dumps(ensure(Path(os.environ.get("AIINFN_AREAS", "/areas")),
                                    json.loads(Path(args[1]).read_text()))))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Refused, OSError, ValueError) as e:
        print(f"aiinfn-provisioner: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
