"""Who a hub user is, for ever: their name bound to the IAM subject, and their POSIX identity.

Shipped to the hub as ``aiinfn_identity.py`` (standard library only). One sqlite file on the hub's
protected database claim holds three tables:

* ``identities``: hub username <-> IAM ``sub``, both unique (a name is never given to another account);
* ``posix``: per ``sub`` its UID (its private group's GID is the same number) and the name of its home
  directory on the platform filesystem, both unique;
* ``posix_groups``: per IAM group its GID (the owner group of ``shared/<area>``) and its area name.

A UID is *derived* from the IAM subject (``UID_BASE + sha256(sub) mod UID_SPAN``), so the first choice
is the same on every hub that ever sees that account; a collision with an account already recorded
moves on to the next free number, and the result is *recorded*: once given, a UID never changes and
is never given to anyone else. Group GIDs are derived from the group's name in a range of their own
(``GID_BASE``), so no group can ever share a GID with a user's private group.

The home directory is the hub username when that is a portable file name that nobody holds yet, else
the name reduced to ``[a-z0-9._-]`` plus ``-<uid>``: two accounts whose names reduce to the same text
(``mario.rossi@x`` and ``mario.rossi+x``) still get two homes. A group's area is its name with ``/``
as ``.`` (``ai-infn/lhc`` -> ``ai-infn.lhc``), likewise made unique.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from dataclasses import dataclass

#: The users' UIDs: [UID_BASE, UID_BASE + UID_SPAN). Far above distribution and LDAP ranges.
UID_BASE = 200_000
UID_SPAN = 1 << 24
#: The groups' GIDs: [GID_BASE, GID_BASE + GID_SPAN), disjoint from the users' (private groups).
GID_BASE = 20_000_000
GID_SPAN = 1 << 24
#: The platform's own owner of the area directories (home/, shared/, public/, envs/, events/).
AREAS_UID = 100_000
#: A portable directory name, taken as it is.
PORTABLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Posix:
    """A user's POSIX identity on the platform filesystem."""

    name: str
    uid: int
    gid: int
    home: str


def derived(key: str, base: int, span: int) -> int:
    """The first-choice number of ``key`` in [base, base + span)."""
    digest = hashlib.sha256(key.encode()).digest()
    return base + int.from_bytes(digest[:8], "big") % span


def portable(name: str) -> str:
    """``name`` reduced to a portable file name (lowercase letters, digits, ``.``, ``_``, ``-``)."""
    out = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    return out[:40].rstrip("._-") or "user"


class Identities:
    """The binding of hub usernames to IAM subjects, and the POSIX identities derived from it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS identities ("
                " sub TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, bound_at REAL NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS posix ("
                " sub TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE, home TEXT NOT NULL UNIQUE,"
                " recorded_at REAL NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS posix_groups ("
                " name TEXT PRIMARY KEY, gid INTEGER NOT NULL UNIQUE, area TEXT NOT NULL UNIQUE,"
                " recorded_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    # ----------------------------------------------------------------- name <-> sub

    def name_for(self, sub: str) -> str | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT name FROM identities WHERE sub = ?", (sub,)).fetchone()
        return row[0] if row else None

    def sub_for(self, name: str) -> str | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT sub FROM identities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def bind(self, sub: str, name: str) -> bool:
        """Bind ``name`` to ``sub``; False when either is already bound to someone else."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT name FROM identities WHERE sub = ?", (sub,)).fetchone()
            if row:
                return bool(row[0] == name)
            try:
                db.execute("INSERT INTO identities (sub, name, bound_at) VALUES (?, ?, ?)", (sub, name, time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    # ----------------------------------------------------------------- POSIX

    def posix(self, name: str) -> Posix:
        """The POSIX identity of hub user ``name`` (bound to its ``sub``), recorded at the first call."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT sub FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise LookupError(f"{name} is not bound to an IAM account")
            sub = str(row[0])
            got = db.execute("SELECT uid, home FROM posix WHERE sub = ?", (sub,)).fetchone()
            if got is None:
                uid = derived(f"aiinfn-uid:{sub}", UID_BASE, UID_SPAN)
                while db.execute("SELECT 1 FROM posix WHERE uid = ?", (uid,)).fetchone():
                    uid = UID_BASE + (uid - UID_BASE + 1) % UID_SPAN
                home = self._free(db, "posix", "home", name if PORTABLE.fullmatch(name) else None,
                                  f"{portable(name)}-{uid}")
                db.execute("INSERT INTO posix (sub, uid, home, recorded_at) VALUES (?, ?, ?, ?)",
                           (sub, uid, home, time.time()))
                got = (uid, home)
        return Posix(name, int(got[0]), int(got[0]), str(got[1]))

    def group_gid(self, group: str) -> tuple[int, str]:
        """The GID and area name of IAM group ``group``, recorded at the first call."""
        with self._lock, self._connect() as db:
            got = db.execute("SELECT gid, area FROM posix_groups WHERE name = ?", (group,)).fetchone()
            if got is None:
                gid = derived(f"aiinfn-gid:{group}", GID_BASE, GID_SPAN)
                while db.execute("SELECT 1 FROM posix_groups WHERE gid = ?", (gid,)).fetchone():
                    gid = GID_BASE + (gid - GID_BASE + 1) % GID_SPAN
                wanted = group.replace("/", ".")
                area = self._free(db, "posix_groups", "area", wanted if PORTABLE.fullmatch(wanted) else None,
                                  f"{portable(wanted)}-{gid}")
                db.execute("INSERT INTO posix_groups (name, gid, area, recorded_at) VALUES (?, ?, ?, ?)",
                           (group, gid, area, time.time()))
                got = (gid, area)
        return int(got[0]), str(got[1])

    @staticmethod
    def _free(db: sqlite3.Connection, table: str, column: str, first: str | None, fallback: str) -> str:
        """``first`` if no row holds it, else ``fallback`` (made unique with a counter if need be)."""
        def taken(value: str) -> bool:
            return db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)).fetchone() is not None

        if first is not None and not taken(first):
            return first
        candidate, n = fallback, 1
        while taken(candidate):
            n += 1
            candidate = f"{fallback}-{n}"
        return candidate
