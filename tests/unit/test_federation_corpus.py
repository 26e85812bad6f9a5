"""The bad-input corpus of federations: each file gives exactly one clear line and exit code 2.

Every ``tests/corpus/federations/*.yaml`` but ``valid.yaml`` states its expectation on its first line,
as the site and event corpora do::

    # expect: <file>: <field path or ->: <message substring>

The member sites live in ``tests/corpus/federations/sites/`` (site-a, site-b, site-c over the corpus's
valid site, and variants each changing one thing). The corpus covers two issuers, other admin groups, a
federated project missing at a site or with another IAM group, overlapping networks, the manager listed
as its worker, unknown sites, a missing/loopback/uncertified/plain-http worker API, the registry's and
the shared volume's prerequisites. Version skew cannot be written in a site file (environments cannot
override ``aiinfn.versions``): it is tested below with the versions two deployed sites would report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn.config.loader import load
from aiinfn.config.models import Federation
from aiinfn.config.validate_federation import mismatches, pinned_versions
from aiinfn.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))
from corpus_expect import expectation  # noqa: E402 - tests/support/corpus_expect.py, found through SUPPORT

FEDERATIONS = sorted(p for p in (CORPUS / "federations").glob("*.yaml") if p.stem != "valid")


def test_the_corpus_covers_what_the_issue_names() -> None:
    names = {p.stem for p in FEDERATIONS}
    for must in ("two-issuers", "project-missing-at-a-site", "pod-networks-overlap", "manager-listed-as-worker",
                 "api-server-loopback", "registry-replica-without-harbor", "volume-without-juicefs"):
        assert must in names


@pytest.mark.parametrize("path", FEDERATIONS, ids=[p.stem for p in FEDERATIONS])
def test_inconsistent_federation_gives_one_clear_line(path: Path) -> None:
    holder, field, message = expectation(path)
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    text = str(err)
    assert err.exit_code == 2
    assert len(text.splitlines()) == 1, repr(text)
    assert err.file is not None and Path(err.file).resolve() == holder.resolve(), f"blames {err.file}: {text}"
    assert text.startswith(err.file + ": ")
    assert err.path == field, text
    assert message in text, text


def test_the_consistent_federation_and_the_shipped_one_load() -> None:
    fed = load(CORPUS / "federations" / "valid.yaml")
    assert isinstance(fed, Federation) and fed.worker_sites() == ["b", "c"]
    shipped = load("federation")
    assert isinstance(shipped, Federation)
    assert shipped.manager == "cnaf" and shipped.worker_sites() == ["recas"]
    assert mismatches(shipped, shipped.site_environments()) == []


def _valid() -> Federation:
    fed = load(CORPUS / "federations" / "valid.yaml")
    assert isinstance(fed, Federation)
    return fed


def test_version_skew_is_one_line_per_pin() -> None:
    """Sites deployed from two checkouts report different pins (a site stack exports `versions`):
    each differing pin is its own line naming the site and the pin."""
    fed = _valid()

    def skewed(env):  # type: ignore[no-untyped-def]
        pins = pinned_versions(env)
        if env.name == "c":
            pins.update({"kueue": "0.18.0", "chart.kueue": "0.18.0"})
        return pins

    found = mismatches(fed, fed.site_environments(), skewed)
    lines = [str(e) for e in found]
    assert len(lines) == 2, lines
    assert all(e.path == "sites[2]" and "site 'c'" in str(e) and "same pinned versions" in str(e) for e in found)
    assert sorted(s.split(": ")[2].split(" ")[0] for s in lines) == ["chart.kueue", "kueue"], lines


def test_rke2_before_1_32_is_refused() -> None:
    """Kueue's MultiKueue hands a Job over through `spec.managedBy`, honoured by Kubernetes 1.32+."""
    fed = _valid()
    found = mismatches(fed, fed.site_environments(), lambda e: {**pinned_versions(e), "rke2": "v1.31.9+rke2r1"})
    assert [e.path for e in found] == ["sites[0]", "sites[1]", "sites[2]"]
    assert all("older than 1.32" in str(e) for e in found)


def _beside_the_corpus(tmp_path: Path, text: str) -> Path:
    """A federation file in ``tmp_path`` over copies of the corpus sites in ``tmp_path/sites`` (outside the
    checkout a file reads only the environments of its own directory and below)."""
    sites = tmp_path / "sites"
    sites.mkdir()
    for f in ("valid-base.yaml", "valid-site.yaml"):
        shutil.copy(CORPUS / f, sites / f)
    for f in (CORPUS / "federations" / "sites").glob("*.yaml"):
        (sites / f.name).write_text(f.read_text().replace("../../valid-site.yaml", "valid-site.yaml"))
    fed = tmp_path / "fed.yaml"
    fed.write_text(text)
    return fed


def test_every_mismatch_is_listed_one_line_each(tmp_path: Path) -> None:
    """A federation wrong in three ways: the loader refuses with the first, `mismatches` lists all three."""
    f = _beside_the_corpus(tmp_path, "kind: federation\nname: x\n"
                           "sites: [sites/site-a.yaml, sites/b-other-issuer.yaml]\nmanager: a\n"
                           "manager_egress: [198.51.100.0/24]\n"
                           "workers: [a, b-other-issuer]\napi_servers: {b-other-issuer: https://127.0.0.1:6443}\n")
    with pytest.raises(ConfigError) as caught:
        load(f)
    assert caught.value.path == "sites[1]"
    fed = load(f, semantic=False)
    assert isinstance(fed, Federation)
    found = mismatches(fed, fed.site_environments())
    assert [e.path for e in found] == ["sites[1]", "workers[0]", "api_servers.b-other-issuer"]
    assert all(len(str(e).splitlines()) == 1 for e in found)


def test_validate_prints_every_mismatch_and_exits_2(tmp_path: Path, root: Path) -> None:
    """Through the command: `aiinfn validate` of a federation wrong in two ways prints two lines."""
    f = _beside_the_corpus(tmp_path, "kind: federation\nname: x\nsites: [sites/site-a.yaml, sites/b-pod-overlap.yaml]\n"
                           "manager: a\nmanager_egress: [198.51.100.0/24]\nworkers: [a, b-pod-overlap]\n"
                           "api_servers: {b-pod-overlap: https://api.b.example.org:6443}\n")
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "validate", str(f)], capture_output=True, text=True,
                         cwd=root, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and "Traceback" not in res.stderr, res.stderr
    assert "sites[1]" in lines[0] and "workers[0]" in lines[1]
