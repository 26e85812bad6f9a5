"""The platform's notebook images: the managed image and the team images over it (recipes only).

* **the managed image** (``managed_recipe``): the z2jh user image pinned in aiinfn.versions
  (``NOTEBOOK_BASE_IMAGE``) plus Jupyter Server Proxy (pinned) and Apptainer (the official release
  package of the pinned version, checked against its pinned sha256 before it is installed), the managed
  environments' kernel discovery (``jupyter_server_config.py``), ``aiinfn-env`` and the ``aiinfn-batch``
  client. Its text is the project's own: no environment string reaches it.
* **a team image** (``team_recipe``, ``services.jupyterhub.team_images``): ``FROM`` the managed image,
  the team's Debian and pip packages and its web apps (a Jupyter Server Proxy config,
  ``/etc/jupyter/jupyter_server_config.json``). Every environment string is data: each RUN is in
  exec form (a JSON argument list, never a shell line) made with ``json.dumps`` of strings the config
  models already restricted to characters their kind needs (no quotes, braces, ``$``, newlines,
  backslashes); the app config is a JSON file, not Python. ``instructions`` parses a recipe back, for
  the tests.

A recipe is a ``Recipe``: the Containerfile and the files of its build context, and a tag derived from
all of them (a change builds a new image; the same inputs, the same tag).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .. import versions
from ..config.models import TeamImage

#: The notebook user of the z2jh image (jovyan); the hub runs each notebook as the user's own UID anyway.
NOTEBOOK_USER = 1000
APPS_FILE = "aiinfn-apps.json"
#: The server reads ``jupyter_server_config.json`` of each config directory (a ``jupyter_server_config.d``
#: JSON file would only enable extensions): the apps' config is that file of /etc/jupyter, as data.
APPS_PATH = "/etc/jupyter/jupyter_server_config.json"
SERVER_CONFIG = "jupyter_server_config.py"
APPTAINER_URL = ("https://github.com/apptainer/apptainer/releases/download/v{v}/apptainer_{v}_amd64.deb")


@dataclass(frozen=True)
class Recipe:
    """A Containerfile and its build context (file name -> text)."""

    name: str
    containerfile: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        h = hashlib.sha256(self.containerfile.encode())
        for k in sorted(self.files):
            h.update(b"\0" + k.encode() + b"\0" + self.files[k].encode())
        return h.hexdigest()[:16]


def _program(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text()


def managed_recipe(apptainer_sha256: str) -> Recipe:
    """The managed notebook image (``apptainer_sha256``: of the pinned package, aiinfn.versions)."""
    if len(apptainer_sha256) != 64 or any(ch not in "0123456789abcdef" for ch in apptainer_sha256):
        raise ValueError(f"apptainer_sha256: {apptainer_sha256!r} is not a sha256 (64 lowercase hex digits)")
    url = APPTAINER_URL.format(v=versions.APPTAINER)
    text = "\n".join([
        "# The platform's managed notebook image (aiinfn.images.managed_recipe, from aiinfn.versions).",
        f"FROM {versions.NOTEBOOK_BASE_IMAGE}",
        "USER root",
        "# Apptainer from its official release package, checked against the pinned sha256 first",
        "RUN apt-get update \\",
        " && apt-get install -y --no-install-recommends ca-certificates curl \\",
        f" && curl -fsSL -o /tmp/apptainer.deb {url} \\",
        f" && echo '{apptainer_sha256}  /tmp/apptainer.deb' | sha256sum -c - \\",
        " && apt-get install -y --no-install-recommends /tmp/apptainer.deb \\",
        " && rm -f /tmp/apptainer.deb && rm -rf /var/lib/apt/lists/*",
        f'RUN python3 -m pip install --no-cache-dir "jupyter-server-proxy=={versions.JUPYTER_SERVER_PROXY}"',
        f"COPY {SERVER_CONFIG} /etc/jupyter/{SERVER_CONFIG}",
        "COPY aiinfn-env /usr/local/bin/aiinfn-env",
        "COPY aiinfn-batch /usr/local/bin/aiinfn-batch",
        "RUN chmod 0755 /usr/local/bin/aiinfn-env /usr/local/bin/aiinfn-batch",
        f"USER {NOTEBOOK_USER}",
        "",
    ])
    return Recipe("managed", text, {
        SERVER_CONFIG: _program("aiinfn.images", SERVER_CONFIG),
        "aiinfn-env": _program("aiinfn.hub", "envs.py"),
        "aiinfn-batch": _program("aiinfn.batch", "client.py"),
    })


def server_proxy_config(team: TeamImage) -> dict[str, Any]:
    """Jupyter Server Proxy's settings (``c.ServerProxy.servers``) for the team's web apps, as config data."""
    servers = {
        name: {"command": list(app.command), "port": app.port, "absolute_url": False, "timeout": 60,
               "launcher_entry": {"enabled": True, "title": app.title}}
        for name, app in sorted(team.apps.items())
    }
    return {"ServerProxy": {"servers": servers}}


def _run(argv: list[str]) -> str:
    return "RUN " + json.dumps(argv)


def team_recipe(name: str, team: TeamImage, base: str) -> Recipe:
    """Team ``name``'s image over the managed image ``base`` (a reference the platform makes)."""
    lines = [f"# Team image {name} (aiinfn.images.team_recipe): the managed image plus the team's packages.",
             f"FROM {base}", "USER root"]
    if team.apt:
        lines += [_run(["apt-get", "update"]),
                  _run(["apt-get", "install", "-y", "--no-install-recommends", *team.apt]),
                  _run(["rm", "-rf", "/var/lib/apt/lists"])]
    if team.pip:
        lines.append(_run(["python3", "-m", "pip", "install", "--no-cache-dir", "--", *team.pip]))
    files: dict[str, str] = {}
    if team.apps:
        files[APPS_FILE] = json.dumps(server_proxy_config(team), indent=1, sort_keys=True) + "\n"
        lines.append(f"COPY {APPS_FILE} {APPS_PATH}")
    lines += [f"USER {NOTEBOOK_USER}", ""]
    return Recipe(f"team-{name}", "\n".join(lines), files)


def instructions(containerfile: str) -> list[tuple[str, Any]]:
    """A Containerfile as its instructions, the way a builder reads it: comments dropped, lines joined at a
    trailing backslash, each instruction's keyword and argument; a RUN or CMD whose argument is a JSON
    array comes back as that argv (the exec form), else as the shell text."""
    out: list[tuple[str, Any]] = []
    pending = ""
    for raw in containerfile.splitlines():
        if not pending and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line, pending = pending + raw, ""
        if not line.strip():
            continue
        keyword, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        value: Any = arg
        if keyword.upper() in ("RUN", "CMD", "ENTRYPOINT") and arg.startswith("["):
            try:
                parsed = json.loads(arg)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                value = parsed
        out.append((keyword.upper(), value))
    return out
