"""The corpus of broken environments: each gives exactly one clear line and exit code 2.

Every file under tests/corpus/broken/ states what it expects on its first line:
``# expect: <field path>: <message substring>``. The error must name the file that holds the mistake
(the broken file itself, or the base it extends), that field path, and that message; never a
traceback or another exception type.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiinfn.config import list_environments, load
from aiinfn.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BROKEN = sorted((CORPUS / "broken").glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (?P<path>[^:]*): (?P<message>.+)$")


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_text(errors="replace").splitlines()[0]
    m = EXPECT_RE.match(first)
    assert m, f"{path.name}: first line must be '# expect: <path>: <message>'"
    return m.group("path"), m.group("message")


def test_the_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 40


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_environment_gives_one_clear_line(path: Path) -> None:
    field, message = _expectation(path)
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    text = str(err)
    assert err.exit_code == 2
    assert "\n" not in text, text
    assert err.file is not None and Path(err.file).name == path.name, text
    assert text.startswith(err.file + ": ")
    if field:
        assert err.path == field, text
    assert message in text, text


def test_valid_fixture_and_shipped_environments_load() -> None:
    assert load(CORPUS / "valid-site.yaml").name == "corpus"
    names = list_environments()
    assert {"cnaf", "recas", "example", "hackathon-example"} <= set(names)
    for name in names:
        load(name)


def test_error_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    """A mistake inherited through `extends` is reported against the file that holds it."""
    base = tmp_path / "base.yaml"
    base.write_text((CORPUS / "valid-site.yaml").read_text().replace("extends: valid-base.yaml",
                                                                      f"extends: {CORPUS / 'valid-base.yaml'}")
                    .replace("cidr: 10.50.0.0/22", "cidr: 10.42.0.0/24"))
    site = tmp_path / "site.yaml"
    site.write_text("extends: base.yaml\nname: child\n")
    with pytest.raises(ConfigError) as caught:
        load(site)
    assert caught.value.file is not None and caught.value.file.endswith("base.yaml")
    assert caught.value.path == "network.pod_cidr"


def test_lists_are_replaced_and_mappings_merged(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"extends: {CORPUS / 'valid-site.yaml'}\n"
                    "network:\n  ssh_allow: []\n"
                    "node_pools:\n  a100:\n    mig: [1g.10gb, 1g.10gb]\n")
    env = load(site)
    assert env.node_pools["a100"].mig == ["1g.10gb", "1g.10gb"]  # list replaced, not appended
    assert env.node_pools["a100"].flavor == "gpu-a100x2"  # sibling keys kept from the base
