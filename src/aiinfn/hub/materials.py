#!/usr/bin/env python3
"""Event materials: exercises into each participant's home, solutions released, one copy reset.

**The mechanism.** The hub runs it for each participant, as the participant: an init container of
the participant's event notebook (same image as the notebook, same UID, Pod Security
``restricted``, no privilege and no API access) clones the event's materials repository into a
scratch directory and then, in the participant's home under ``<event>/``:

* ``sync``: copies every exercise file that is new; a file the participant has edited, deleted or
  made themselves is never touched (each copied file's digest is kept in ``.aiinfn-materials.json``;
  an unedited file whose upstream changed is updated);
* ``release``: once the solutions are released (``released``, or ``solutions_at`` has passed, UTC),
  syncs them into ``<event>/solutions/`` the same way;
* ``reset``: when the registration asks for a reset of this participant newer than the last one done,
  moves their copy aside (``<event>.reset-<stamp>``, never deleted) and copies afresh.

It never stops the notebook from starting: any failure is one line in the init container's log and
exit code 0. The events CLI (``aiinfn event``) drives it through the event's hub registration: the
``materials`` block of ``event.json`` (``block()`` builds and checks it); changing it (release now,
reset a participant) takes effect at each participant's next start.

Library interface (``aiinfn.hub.materials``), used by the hub and the events CLI:

* ``block(repo, branch, ...) -> dict``: the registration's ``materials`` block (checked);
* ``sync(source, dest) -> Report``, ``reset(dest, stamp) -> Path``: the copying rules on a filesystem;
* ``init_container(materials, event, image, home, user) -> dict``: the container the hub adds.

Shipped to the hub as ``aiinfn_materials.py`` (the hub embeds this file in the init container's
command: the event namespace needs no ConfigMap). Standard library only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE = ".aiinfn-materials.json"
RESETS = ".aiinfn-resets.json"
#: https git URLs only (no ssh, no file://, no options).
REPO = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9._~/-]+")
REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
SUBDIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}")
USER = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")
CLONE_SECONDS = 120


@dataclass
class Report:
    copied: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(root).parts)


def sync(source: Path, dest: Path) -> Report:
    """Copy ``source`` into ``dest`` without ever overwriting a participant's edit (see the module)."""
    dest.mkdir(parents=True, exist_ok=True)
    state_file = dest / STATE
    try:
        state: dict[str, str] = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    report = Report()
    for rel in _files(source):
        key, src, dst = str(rel), source / rel, dest / rel
        upstream = _digest(src)
        if dst.is_symlink() or (dst.exists() and not dst.is_file()):
            report.kept.append(key)
            continue
        if not dst.exists():
            if key in state:  # the participant deleted it: leave it deleted
                report.kept.append(key)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            state[key] = upstream
            report.copied.append(key)
            continue
        mine = _digest(dst)
        if key not in state or mine != state[key]:  # theirs, or edited by them
            report.kept.append(key)
        elif upstream != mine:  # unedited, and upstream changed
            shutil.copyfile(src, dst)
            state[key] = upstream
            report.updated.append(key)
    tmp = state_file.with_name(STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(state_file)
    return report


def reset(dest: Path, stamp: str) -> Path:
    """Move the participant's copy aside (kept, never deleted); the next ``sync`` copies afresh."""
    aside = dest.with_name(f"{dest.name}.reset-{re.sub(r'[^0-9A-Za-z]', '', stamp)[:20]}")
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{aside.name.split('~')[0]}~{n}")
    if dest.exists():
        dest.rename(aside)
    return aside


def released(materials: Mapping[str, Any], now: dt.datetime | None = None) -> bool:
    if materials.get("released"):
        return True
    at = materials.get("solutions_at")
    if not at:
        return False
    when = dt.datetime.fromisoformat(str(at))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (now or dt.datetime.now(dt.UTC)) >= when


def block(repo: str, branch: str = "main", *, exercises: str = "exercises", solutions: str = "solutions",
          solutions_at: dt.datetime | None = None, released: bool = False,
          resets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``materials`` block of an event's hub registration, every value checked (ValueError)."""
    doc = {"repo": repo, "branch": branch, "exercises": exercises, "solutions": solutions,
           "solutions_at": solutions_at.isoformat() if solutions_at else None, "released": bool(released),
           "resets": dict(resets or {})}
    return check(doc)


def check(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A materials block as read from a registration, checked; ValueError naming the bad field."""
    def match(key: str, rx: re.Pattern[str]) -> str:
        v = doc.get(key)
        if not isinstance(v, str) or not rx.fullmatch(v) or ".." in v.split("/"):
            raise ValueError(f"materials.{key}: {v!r} is not allowed")
        return v

    out: dict[str, Any] = {"repo": match("repo", REPO), "branch": match("branch", REF),
                           "exercises": match("exercises", SUBDIR), "solutions": match("solutions", SUBDIR),
                           "released": bool(doc.get("released")), "solutions_at": doc.get("solutions_at")}
    if out["solutions_at"] is not None:
        dt.datetime.fromisoformat(str(out["solutions_at"]))
    resets = doc.get("resets") or {}
    if not isinstance(resets, Mapping):
        raise ValueError("materials.resets is not a mapping of user -> time")
    for user, stamp in resets.items():
        if not isinstance(user, str) or not USER.fullmatch(user):
            raise ValueError(f"materials.resets: {user!r} is not a username")
        dt.datetime.fromisoformat(str(stamp))
    out["resets"] = {str(k): str(v) for k, v in resets.items()}
    return out


def run(settings: Mapping[str, Any]) -> str:
    """What the init container does (see the module docstring); returns one line for its log."""
    m = check(settings["materials"])
    home, event, user = Path(settings["home"]), str(settings["event"]), str(settings["user"])
    dest = home / event
    with tempfile.TemporaryDirectory(prefix="aiinfn-materials-") as tmp:
        clone = Path(tmp) / "src"
        subprocess.run(["git", "clone", "--quiet", "--single-branch", "--branch", m["branch"], "--", m["repo"],
                        str(clone)], check=True, timeout=CLONE_SECONDS, capture_output=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
                            "HOME": tmp})
        done_file = home / f".{event}{RESETS}"
        try:
            done: dict[str, str] = json.loads(done_file.read_text())
        except (OSError, ValueError):
            done = {}
        wanted = m["resets"].get(user)
        note = ""
        if wanted and done.get(user) != wanted:
            aside = reset(dest, wanted)
            done[user] = wanted
            done_file.write_text(json.dumps(done))
            note = f"; reset (previous copy in {aside.name})"
        exercises = clone / m["exercises"]
        report = sync(exercises, dest) if exercises.is_dir() else Report()
        line = f"{len(report.copied)} exercise files copied, {len(report.updated)} updated, {len(report.kept)} kept"
        if released(m) and (clone / m["solutions"]).is_dir():
            sol = sync(clone / m["solutions"], dest / "solutions")
            line += f"; solutions released ({len(sol.copied)} new)"
    return line + note


def init_container(materials: Mapping[str, Any], event: str, image: str, home: str, user: str,
                   program: str) -> dict[str, Any]:
    """The init container the hub adds to a participant's notebook (``program``: this file's text)."""
    settings = json.dumps({"materials": check(materials), "event": event, "home": home, "user": user},
                          sort_keys=True)
    return {
        "name": "aiinfn-materials",
        "image": image,
        "command": ["python3", "-c", program, "init", settings],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 2 and args[0] == "init":
            print(f"aiinfn-materials: {run(json.loads(args[1]))}")
        elif len(args) == 3 and args[0] == "sync":
            r = sync(Path(args[1]), Path(args[2]))
            print(json.dumps({"copied": r.copied, "updated": r.updated, "kept": r.kept}))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Exception as e:  # the notebook starts whatever happened here
        print(f"aiinfn-materials: not updated: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 0 if args[:1] == ["init"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
