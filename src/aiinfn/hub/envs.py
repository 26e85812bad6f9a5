#!/usr/bin/env python3
"""aiinfn-env: the platform's managed Python environments, in every notebook.

    aiinfn-env list                     the environments of this site, built or not, and their maintainers
    aiinfn-env build NAME [PIP ARGS]    (maintainers) build NAME onto the platform filesystem
    aiinfn-env clone NAME [DEST]        your own copy in your home (default ~/envs/NAME), as a kernel of yours

An environment is defined in the site's environment file (``services.jupyterhub.environments``: its
packages or lock file and its maintainers' IAM group); the notebooks get the definitions as
``AIINFN_ENVS_FILE`` (JSON). ``build`` makes a Python virtual environment (``python -m venv`` and
pip, of the notebook image's Python) at ``/envs/NAME/<stamp>``: the wheels of everything it installs
are kept in ``<stamp>/wheels``, the exact versions in ``<stamp>/aiinfn-lock.txt``, and its Jupyter
kernel spec in ``<stamp>/share/jupyter/kernels/aiinfn-NAME/``; then ``/envs/NAME/current`` is switched to
it in one step (a notebook using the previous build keeps it). ``/envs/NAME`` belongs to the
maintainers' group (2775): only they can build, everyone else reads. Every notebook lists
``/envs/*/current/share/jupyter`` in ``JUPYTER_PATH``, so the kernel shows up in JupyterLab without
anything installed in the user's home.

``clone`` makes a new virtual environment in your home from the build's own wheels (no download, the
same versions), and registers it as your kernel ``NAME (my copy)`` in ``~/.local/share/jupyter/kernels``.
Errors: one line on stderr, exit code 1. Standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
ENVS = Path(os.environ.get("AIINFN_ENVS_DIR", "/envs"))
KERNEL_PACKAGE = "ipykernel"


class Failure(Exception):
    pass


def definitions() -> dict[str, Any]:
    path = os.environ.get("AIINFN_ENVS_FILE")
    if not path:
        raise Failure("AIINFN_ENVS_FILE is not set (is this a notebook of the platform?)")
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"cannot read the environments' definitions {path}: {e}") from None
    return doc


def definition(name: str) -> dict[str, Any]:
    defs = definitions()
    if not NAME.fullmatch(name) or name not in defs:
        raise Failure(f"no managed environment {name!r} (known: {', '.join(sorted(defs)) or 'none'})")
    return dict(defs[name])


def current(name: str) -> Path:
    path = ENVS / name / "current"
    if not (path / "bin" / "python").exists():
        raise Failure(f"{name} is not built yet: its maintainers run `aiinfn-env build {name}`")
    return path


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise Failure(f"{what} failed: {tail[-1] if tail else proc.returncode}")


def kernel_spec(python: Path, display: str) -> dict[str, Any]:
    return {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": display, "language": "python", "metadata": {"debugger": True}}


def _requirements(d: dict[str, Any], where: Path) -> list[str]:
    if d.get("lock"):
        lock = where / "aiinfn-requested.txt"
        lock.write_text(str(d["lock"]))
        return ["-r", str(lock)]
    return [str(p) for p in d.get("packages") or []]


def build(name: str, pip_args: list[str]) -> Path:
    """Build ``name`` at ``/envs/NAME/<stamp>`` and switch ``current`` to it; returns the new build."""
    d = definition(name)
    home = ENVS / name
    if not os.access(home, os.W_OK):
        raise Failure(f"{home} is not writable by you: only members of {d.get('maintainers')} build {name}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = home / stamp
    _run([sys.executable, "-m", "venv", str(target)], "python -m venv")
    pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    reqs = [KERNEL_PACKAGE, *_requirements(d, target)]
    _run([*pip, "wheel", "--quiet", "-w", str(target / "wheels"), *pip_args, *reqs], "pip wheel")
    _run([*pip, "install", "--quiet", "--no-index", "--find-links", str(target / "wheels"), *reqs], "pip install")
    frozen = subprocess.run([*pip, "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    (target / "aiinfn-lock.txt").write_text(frozen)
    kernels = target / "share" / "jupyter" / "kernels" / f"aiinfn-{name}"
    kernels.mkdir(parents=True, exist_ok=True)
    python = home / "current" / "bin" / "python"
    spec = kernel_spec(python, f"{name} (managed){': ' + d['description'] if d.get('description') else ''}")
    (kernels / "kernel.json").write_text(json.dumps(spec, indent=1))
    for root, dirs, files in os.walk(target):  # read-only for everyone but the maintainers' group
        for n in dirs + files:
            p = Path(root) / n
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~0o002)
    link = home / "current.new"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(stamp)
    link.replace(home / "current")
    return target


def clone(name: str, dest: Path | None = None) -> Path:
    """A copy of ``name`` in the user's home, from the build's wheels, registered as the user's kernel."""
    definition(name)
    source = current(name)
    dest = dest or Path.home() / "envs" / name
    if dest.exists():
        raise Failure(f"{dest} exists already: give another destination (aiinfn-env clone {name} DIR)")
    _run([sys.executable, "-m", "venv", str(dest)], "python -m venv")
    pip = [str(dest / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "install", "--quiet", "--no-index", "--find-links", str(source / "wheels"),
          "-r", str(source / "aiinfn-lock.txt")], "pip install")
    kernels = Path.home() / ".local" / "share" / "jupyter" / "kernels" / f"{name}-mine"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps(kernel_spec(dest / "bin" / "python", f"{name} (my copy)"),
                                                    indent=1))
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["list"]:
            for name, d in sorted(definitions().items()):
                built = (ENVS / name / "current" / "bin" / "python").exists()
                print(f"{name}\t{'built' if built else 'not built'}\tmaintainers {d.get('maintainers')}"
                      f"\t{d.get('description', '')}")
        elif len(args) >= 2 and args[0] == "build":
            print(f"built {build(args[1], args[2:])}")
        elif len(args) in (2, 3) and args[0] == "clone":
            print(f"cloned into {clone(args[1], Path(args[2]) if len(args) == 3 else None)}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as e:
        print(f"aiinfn-env: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
