"""The standing guard: a fixed list of source mutants, each a way the platform breaks, must be killed.

Each mutant is one textual change of the product's source (planning, services, rendering, the stack):
the checkout is copied to a temporary directory (with ../shared beside it, as CI lays it out), the
change is applied to the copy, and the fast-suite test files that matter for it run in a subprocess
whose ``PYTHONPATH`` puts the mutated ``src/`` first. The mutant must die: pytest exits 1 (tests
failed), never 0 (it survived: the suite cannot see that breakage) and never another code (an import
or collection error proves nothing about the tests). A baseline run of the same files over an
unmutated copy must pass first, so a broken copy cannot make every mutant look dead.

A mutant whose original text is no longer in its file fails the guard too: the list is kept in step
with the source, never silently skipped. The slower, broader score (mutmut 3 over a sample of the
planning, catalogue and services modules, benchmarks/mutation_score.py) is in docs/benchmarks.md,
"Mutation score".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
#: What a copy of the checkout leaves out (large or generated).
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "mutants", ".mypy_cache", ".ruff_cache",
                                 ".pytest_cache", "__pycache__", "*.pyc", "*.egg-info")


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str
    #: how many times ``old`` is in the file (every one is replaced)
    count: int = 1


@dataclass(frozen=True)
class Mutant:
    name: str
    edits: tuple[Edit, ...]
    #: the fast-suite test files that must kill it
    tests: tuple[str, ...]
    why: str


K8S = "tests/artifacts/test_k8s_objects.py"
SCHED = "tests/artifacts/test_scheduling.py"
KUEUE = "src/aiinfn/services/kueue.py"
#: The Kueue objects name the release they wait for themselves (``after``) on top of the registrar's CRD
#: rule, so dropping one of the two is an equivalent mutant: each dependency mutant drops both paths.
KUEUE_AFTER = Edit(KUEUE, "*manifests(*objects(plan, interactive_namespace), after=(RELEASE,))",
                   "*manifests(*objects(plan, interactive_namespace), after=())")
MUTANTS = [
    Mutant("cohortName-renamed", (Edit(KUEUE, '"cohortName": COHORT', '"cohort": COHORT', count=2),), (K8S,),
           "Kueue v1beta2 prunes `cohort`: every queue leaves the cohort, no borrowing or reclaim"),
    Mutant("kueue-objects-wait-for-no-release",
           (Edit(KUEUE, 'crd_groups=("kueue.x-k8s.io",)', "crd_groups=()"), KUEUE_AFTER), (K8S,),
           "Kueue objects applied before the chart installs their CRDs: the first `pulumi up` fails"),
    Mutant("registrar-ignores-crd-releases",
           (Edit("stacks/overlay/__init__.py", "if isinstance(item, Manifest) and item.api_group in self._crds:",
                 "if False and isinstance(item, Manifest) and item.api_group in self._crds:"), KUEUE_AFTER), (K8S,),
           "no custom resource waits for the release of its CRD unless its service says so itself"),
    Mutant("accelerator-taint-weakened",
           (Edit("src/aiinfn/planning/nodes.py", 'NodeTaint(ACCELERATOR_LABEL, m.name, "NoSchedule")',
                 'NodeTaint(ACCELERATOR_LABEL, m.name, "PreferNoSchedule")'),), (SCHED,),
           "CPU-only pods land on GPU nodes and hold their CPUs and memory"),
    Mutant("stateful-volumes-unprotected",
           (Edit("stacks/infra/storage.py", "pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)",
                 "pulumi.ResourceOptions(parent=self, protect=False, retain_on_delete=True)"),),
           ("tests/stacks/test_infra.py",),
           "`pulumi destroy` or a replacement deletes the NFS data and the Borg repository"),
    Mutant("hub-database-unprotected",
           (Edit("src/aiinfn/services/jupyterhub.py", "hub_db_claim(storage_class), protect=True)",
                 "hub_db_claim(storage_class), protect=False)"),),
           ("tests/stacks/test_jupyterhub.py",),
           "the hub's database claim can be deleted with the release"),
    Mutant("quotas-round-up",
           (Edit("src/aiinfn/planning/quotas.py", "math.floor(share * caps[k].units + 1e-9)",
                 "math.ceil(share * caps[k].units + 1e-9)"),),
           ("tests/unit/test_planning.py", "tests/stacks/test_overlay.py"),
           "guaranteed quotas add up to more accelerators than exist: Kueue over-admits"),
    Mutant("queue-label-key-wrong",
           (Edit("src/aiinfn/planning/labels.py", 'QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"',
                 'QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue"'),),
           ("tests/stacks/test_overlay.py", "tests/stacks/test_jupyterhub.py"),
           "notebooks name no queue Kueue reads: they go to the namespace's default queue or wait"),
]


def _copy_checkout(dest: Path) -> Path:
    """A copy of the checkout at ``dest/main`` with ``dest/shared`` pointing at ../shared."""
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing next to the checkout ({SHARED}): CI provides it there")
    main = dest / "main"
    shutil.copytree(ROOT, main, ignore=IGNORED, symlinks=True)
    (dest / "shared").symlink_to(SHARED, target_is_directory=True)
    return main


def _run(main: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(main / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests],
        cwd=main, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unmutated copy in which every file the guard runs passes, importing the copy's own source."""
    main = _copy_checkout(tmp_path_factory.mktemp("baseline"))
    probe = subprocess.run([sys.executable, "-c", "import aiinfn, sys; print(aiinfn.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(main / "src")}, capture_output=True, text=True)
    assert Path(probe.stdout.strip()).resolve().is_relative_to(main.resolve()), probe.stdout + probe.stderr
    files = tuple(sorted({t for m in MUTANTS for t in m.tests}))
    res = _run(main, files)
    assert res.returncode == 0, f"the unmutated copy fails its own tests:\n{res.stdout[-3000:]}{res.stderr[-2000:]}"
    return main


def test_every_mutant_names_fast_suite_tests() -> None:
    for m in MUTANTS:
        assert m.tests and all(t.split("/")[1] in ("unit", "stacks", "artifacts") for t in m.tests), m.name
        assert all((ROOT / t).is_file() for t in m.tests), m.name


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_critical_mutant_dies(mutant: Mutant, baseline: Path, tmp_path: Path) -> None:
    main = _copy_checkout(tmp_path)
    for edit in mutant.edits:
        target = main / edit.path
        text = target.read_text()
        assert text.count(edit.old) == edit.count, (
            f"{mutant.name}: {edit.old!r} is no longer {edit.count} time(s) in {edit.path}: update the guard's list")
        target.write_text(text.replace(edit.old, edit.new))
    res = _run(main, mutant.tests)
    assert res.returncode != 0, f"mutant {mutant.name} SURVIVED {' '.join(mutant.tests)}: {mutant.why}"
    assert res.returncode == 1, (
        f"mutant {mutant.name}: pytest exited {res.returncode}, not a test failure:\n{res.stdout[-2000:]}"
        f"{res.stderr[-2000:]}")
