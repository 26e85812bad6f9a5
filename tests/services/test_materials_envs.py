"""Event materials and managed environments, for real on a real filesystem.

* Materials (aiinfn/hub/materials.py): the copying rules on directories of this machine, then the init
  container's whole run (``init``) against a real git repository (a local one: git's own ``file``
  transport is refused by the program, so the test serves the repository over git's dumb HTTP
  protocol from a local HTTP server; gap: no TLS, the program's https-only rule is relaxed through
  ``REPO`` for this run only).
* Managed environments (aiinfn/hub/envs.py): ``aiinfn-env build`` makes a real virtual environment with
  pip from a wheelhouse (a tiny package built here and ipykernel with its dependencies downloaded from
  PyPI once), registers its kernel, and a real ``jupyter kernelspec list`` in a notebook-like
  environment (``JUPYTER_PATH`` as notebooks get it) finds it; another UID cannot write it; ``clone``
  makes the user's own copy, from the build's wheels, that imports the package. Gap: conda cannot be
  installed here; the same mechanism (an environment directory on the shared filesystem, its kernel
  spec on ``JUPYTER_PATH``, a clone into the home) is what a conda environment would use.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aiinfn.hub import envs, materials

ROOT = Path(__file__).resolve().parents[2]
ENVS_PROGRAM = ROOT / "src" / "aiinfn" / "hub" / "envs.py"


# --------------------------------------------------------------------------- materials


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_a_participants_edit_survives_every_later_copy(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home" / "hack"
    _write(src, {"01-intro.ipynb": "v1", "data/train.csv": "a,b", "02-cnn.ipynb": "cnn v1"})
    first = materials.sync(src, home)
    assert sorted(first.copied) == ["01-intro.ipynb", "02-cnn.ipynb", "data/train.csv"]
    (home / "01-intro.ipynb").write_text("my answer")  # the participant edits one
    (home / "data" / "train.csv").unlink()  # deletes another
    (home / "notes.md").write_text("mine")  # and writes their own
    _write(src, {"01-intro.ipynb": "v2", "02-cnn.ipynb": "cnn v2", "03-new.ipynb": "new", "notes.md": "upstream"})
    second = materials.sync(src, home)
    assert (home / "01-intro.ipynb").read_text() == "my answer", "an edited file is never overwritten"
    assert not (home / "data" / "train.csv").exists(), "a deleted file stays deleted"
    assert (home / "notes.md").read_text() == "mine", "their own file of the same name is theirs"
    assert (home / "02-cnn.ipynb").read_text() == "cnn v2", "an unedited file follows upstream"
    assert (home / "03-new.ipynb").read_text() == "new"
    assert second.updated == ["02-cnn.ipynb"] and second.copied == ["03-new.ipynb"]
    assert sorted(second.kept) == ["01-intro.ipynb", "data/train.csv", "notes.md"]
    assert materials.sync(src, home).copied == [] and materials.sync(src, home).updated == []


def test_a_reset_moves_the_copy_aside_and_copies_afresh(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home" / "hack"
    _write(src, {"ex.ipynb": "v1"})
    materials.sync(src, home)
    (home / "ex.ipynb").write_text("broken")
    aside = materials.reset(home, "2026-12-02T10:00:00+00:00")
    assert (aside / "ex.ipynb").read_text() == "broken", "the previous copy is kept"
    materials.sync(src, home)
    assert (home / "ex.ipynb").read_text() == "v1"


def test_the_block_refuses_what_is_not_data() -> None:
    ok = materials.block("https://git.example.org/ai-infn/hack.git", "main",
                         solutions_at=dt.datetime(2026, 12, 2, 17, tzinfo=dt.UTC))
    assert ok["solutions_at"] == "2026-12-02T17:00:00+00:00"
    for bad in ({"repo": "file:///etc"}, {"repo": "https://h/x; rm -rf /"}, {"branch": "--upload-pack=x"},
                {"exercises": "../../etc"}, {"resets": {"Bob Smith": "2026-12-01"}}):
        doc = {**ok, **bad}
        with pytest.raises(ValueError):
            materials.check(doc)
    assert not materials.released(ok, dt.datetime(2026, 12, 2, 16, 59, tzinfo=dt.UTC))
    assert materials.released(ok, dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.UTC))


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real git repository of exercises and solutions, served over git's dumb HTTP protocol."""
    if shutil.which("git") is None:
        pytest.fail("git is missing (apt-get install git)")
    work = tmp_path / "work"
    _write(work, {"exercises/01.ipynb": "exercise 1", "solutions/01.ipynb": "solution 1"})
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "."], ["git", "commit", "-qm", "m"]):
        subprocess.run(argv, cwd=work, check=True, env=env)
    bare = tmp_path / "serve" / "hack.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(bare.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hack.git", work
    finally:
        server.shutdown()


def test_the_init_container_run_copies_releases_and_resets(served_repo: tuple[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = served_repo
    monkeypatch.setattr(materials, "REPO", __import__("re").compile(r"http://127\.0\.0\.1:[0-9]+/[a-z.]+"))
    home = tmp_path / "home"
    home.mkdir()
    block = {"repo": url, "branch": "main", "exercises": "exercises", "solutions": "solutions",
             "solutions_at": None, "released": False, "resets": {}}
    settings = {"materials": block, "event": "hack", "home": str(home), "user": "olga"}
    line = materials.run(settings)
    assert line.startswith("1 exercise files copied") and "solutions" not in line
    assert (home / "hack" / "01.ipynb").read_text() == "exercise 1" and not (home / "hack" / "solutions").exists()
    (home / "hack" / "01.ipynb").write_text("olga's work")
    line = materials.run({**settings, "materials": {**block, "released": True}})
    assert "solutions released (1 new)" in line
    assert (home / "hack" / "01.ipynb").read_text() == "olga's work", "the second copy keeps the edit"
    assert (home / "hack" / "solutions" / "01.ipynb").read_text() == "solution 1"
    reset = {**block, "resets": {"olga": "2026-12-02T09:00:00+00:00"}}
    line = materials.run({**settings, "materials": reset})
    assert "reset (previous copy in hack.reset-20261202T0900000000)" in line
    assert (home / "hack" / "01.ipynb").read_text() == "exercise 1"
    assert (home / "hack.reset-20261202T0900000000" / "01.ipynb").read_text() == "olga's work"
    assert "reset" not in materials.run({**settings, "materials": reset}), "a reset is done once"
    # a broken source never stops the notebook: exit 0 and one line
    proc = subprocess.run([sys.executable, materials.__file__, "init",
                           json.dumps({**settings, "materials": {**block, "repo": "https://127.0.0.1:9/x.git"}})],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stderr.startswith("aiinfn-materials: not updated:")
    assert proc.stderr.count("\n") == 1


def test_the_hub_gives_the_participant_an_unprivileged_init_container() -> None:
    block = materials.block("https://git.example.org/hack.git")
    c = materials.init_container(block, "hack", "img:1", "/home/jovyan", "olga", "print('x')")
    assert c["command"][:3] == ["python3", "-c", "print('x')"] and c["command"][3] == "init"
    assert json.loads(c["command"][4])["materials"]["repo"] == "https://git.example.org/hack.git"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


# --------------------------------------------------------------------------- managed environments


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny package of ours as a wheel, and ipykernel with its dependencies from PyPI."""
    house = tmp_path_factory.mktemp("wheels")
    # the smallest wheel there is, written by hand (PEP 427: the package, METADATA, WHEEL, RECORD)
    info = "aiinfn_demo-1.0.dist-info"
    files = {"aiinfn_demo/__init__.py": "ANSWER = 42\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: aiinfn-demo\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: aiinfn-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(house / "aiinfn_demo-1.0-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
        whl.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    got = subprocess.run([*pip, "download", "-d", str(house), "ipykernel"], capture_output=True, text=True,
                         check=False, timeout=600)
    if got.returncode != 0:
        pytest.fail(f"pip could not download ipykernel from PyPI: {got.stderr.strip().splitlines()[-1:]}")
    return house


def _jupyter_kernels(env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True,
                          text=True, env=env, check=True, timeout=120)
    return dict(json.loads(proc.stdout)["kernelspecs"])


@pytest.mark.integration
@pytest.mark.slow
def test_a_managed_environment_is_built_found_as_a_kernel_read_only_and_cloned(wheelhouse: Path,
                                                                              tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="aiinfn-envs-", dir="/tmp"))  # traversable by another UID
    base.chmod(0o755)
    try:
        _managed_environment(wheelhouse, tmp_path, base / "envs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _managed_environment(wheelhouse: Path, tmp_path: Path, shared: Path) -> None:
    (shared / "demo").mkdir(parents=True)
    defs = tmp_path / "environments.json"
    defs.write_text(json.dumps({"demo": {"packages": ["aiinfn-demo==1.0"], "maintainers": "ai-infn/ml-ops",
                                         "description": "a demo"}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "AIINFN_ENVS_FILE": str(defs),
           "AIINFN_ENVS_DIR": str(shared), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
           "JUPYTER_PATH": f"{shared}/demo/current/share/jupyter"}
    run = partial(subprocess.run, capture_output=True, text=True, env=env, timeout=600, check=False)
    build = run([sys.executable, str(ENVS_PROGRAM), "build", "demo"])
    assert build.returncode == 0, build.stderr
    current = shared / "demo" / "current"
    assert current.is_symlink() and (current / "aiinfn-lock.txt").read_text().count("aiinfn-demo==1.0") == 1
    # a real `jupyter kernelspec list` with the notebooks' JUPYTER_PATH finds it
    specs = _jupyter_kernels(env)
    assert "aiinfn-demo" in specs, specs
    spec = specs["aiinfn-demo"]["spec"]
    assert spec["argv"][0] == str(shared / "demo" / "current" / "bin" / "python")
    assert spec["display_name"].startswith("demo (managed)")
    proc = run([spec["argv"][0], "-c", "import aiinfn_demo, ipykernel; print(aiinfn_demo.ANSWER)"])
    assert proc.stdout.strip() == "42", proc.stderr
    # read-only for users: nothing in the build is writable by others, and another UID cannot write it
    writable = [p for p in current.resolve().rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o002]
    assert not writable
    for p in (shared, shared / "demo"):
        p.chmod(0o755)
    other = subprocess.run(["/usr/bin/python3", "-c", f"open({str(current / 'intruder')!r}, 'w')"],
                           user=65534, capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "Permission denied" in other.stderr
    # one command: the user's own copy, from the build's own wheels (no index), as the user's kernel
    clone = run([sys.executable, str(ENVS_PROGRAM), "clone", "demo"])
    assert clone.returncode == 0, clone.stderr
    mine = home / "envs" / "demo"
    proc = run([str(mine / "bin" / "python"), "-c", "import aiinfn_demo; print(aiinfn_demo.ANSWER)"])
    assert proc.stdout.strip() == "42"
    specs = _jupyter_kernels(env)
    assert specs["demo-mine"]["spec"]["argv"][0] == str(mine / "bin" / "python")
    again = run([sys.executable, str(ENVS_PROGRAM), "clone", "demo"])
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "exists already" in again.stderr


def test_bad_commands_are_one_line(tmp_path: Path) -> None:
    defs = tmp_path / "environments.json"
    defs.write_text(json.dumps({"demo": {"packages": ["x"], "maintainers": "g"}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AIINFN_ENVS_FILE": str(defs),
           "AIINFN_ENVS_DIR": str(tmp_path)}
    for argv, msg in ((["clone", "nope"], "no managed environment 'nope'"), (["clone", "demo"], "is not built yet"),
                      (["build", "demo"], "only members of g build demo")):
        proc = subprocess.run([sys.executable, str(ENVS_PROGRAM), *argv], capture_output=True, text=True,
                              env=env, check=False)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and msg in proc.stderr, proc.stderr
    assert envs.kernel_spec(Path("/p"), "x")["argv"][:3] == ["/p", "-m", "ipykernel_launcher"]
