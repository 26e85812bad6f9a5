"""The corpus of broken environments: each gives exactly one clear line and exit code 2.

Every file under tests/corpus/broken/ states what it expects on its first line::

    # expect: <file>: <field path>: <message substring>

``<file>`` is the file that holds the mistake, relative to tests/corpus/: the broken file itself
(``broken/x.yaml``) or, for a mistake inherited through ``extends``, the base that holds it
(``bases/y.yaml``). ``<field path>`` is the exact path the error names, ``-`` when there is none (a
YAML syntax error, an empty file). The error must be a ConfigError (never a traceback or another
exception), exit code 2, one line starting with that file, then the path, with the message in it.

The broken files extend tests/corpus/valid-site.yaml (over valid-base.yaml), never the shipped
environments/, so operators can edit the sites freely. The CLI (which prints these lines) is tested
on its own, not here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiinfn.config.loader import list_environments, load
from aiinfn.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BROKEN = sorted((CORPUS / "broken").glob("*.yaml"))
#: path: plain characters, or a quoted key (which may hold spaces, dots or colons)
EXPECT_RE = re.compile(
    r'^# expect: (?P<file>[^\s:]+): (?P<path>-|(?:[^\s"]|"(?:[^"\\]|\\.)*")+): (?P<message>.+)$'
)


def _expectation(path: Path) -> tuple[Path, str | None, str]:
    first = path.read_bytes().decode("utf-8", "replace").splitlines()[0]
    m = EXPECT_RE.match(first)
    assert m, f"{path.name}: first line must be '# expect: <file>: <path or ->: <message>'"
    holder = CORPUS / m.group("file")
    assert holder.is_file(), f"{path.name}: {m.group('file')} is not a file under tests/corpus/"
    return holder, None if m.group("path") == "-" else m.group("path"), m.group("message")


#: Top-level fields of a site that no broken file blames yet: a ratchet (a new corpus entry for one of
#: them must remove it here), so the list can only shrink.
NOT_YET_BLAMED = {"kubernetes", "offload", "name"}


def test_the_corpus_covers_every_section_once_per_mistake() -> None:
    """Every section of a site file has broken files blaming it (but the ratchet's), every file tests a
    mistake no other file tests, and YAML-level and `extends` mistakes are among them."""
    from aiinfn.config.models import Environment

    expectations = [_expectation(p) for p in BROKEN]
    keys = [(str(h.resolve()), f, m) for h, f, m in expectations]
    assert len(set(keys)) == len(keys), [k for k in keys if keys.count(k) > 1]
    blamed = {re.split(r"[.\[]", f)[0] for _, f, _ in expectations if f}
    sections = set(Environment.model_fields) - {"description"}
    assert sections - blamed == NOT_YET_BLAMED, sorted(sections - blamed)
    assert sum(1 for _, f, _ in expectations if f is None) >= 5  # syntax errors, empty files, bad encodings
    assert sum(1 for _, f, _ in expectations if f == "extends") >= 5  # cycles, missing bases, kinds


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_environment_gives_one_clear_line(path: Path) -> None:
    holder, field, message = _expectation(path)
    try:
        load(path)
    except ConfigError as e:
        err = e
    except Exception as e:  # anything but the project's ConfigError is a bug in the loader
        pytest.fail(f"{path.name}: {type(e).__name__} escaped instead of ConfigError: {e}")
    else:
        pytest.fail(f"{path.name} loaded; expected: {message}")
    text = str(err)
    assert err.exit_code == 2
    assert len(text.splitlines()) == 1 and "\n" not in text and "\r" not in text, repr(text)
    # starts with the file that holds the mistake, as the operator would type it
    assert err.file is not None, text
    assert Path(err.file).resolve() == holder.resolve(), f"blames {err.file}, expected {holder}: {text}"
    assert err.file.endswith(str(holder.relative_to(CORPUS))), text
    assert text.startswith(err.file + ": "), text
    # then the field path (or none), then the message
    assert err.path == field, text
    rest = text[len(err.file) + 2:]
    if field is not None:
        assert rest.startswith(field + ": "), text
        rest = rest[len(field) + 2:]
    assert message in rest, text
    assert rest == err.message.replace("\r", "\\r").replace("\n", "\\n")


def test_every_broken_file_is_loaded_alone() -> None:
    """The bases under tests/corpus/bases/ are only ever extended; nothing under broken/ is."""
    extended = {
        (p.parent / m.group(1)).resolve()
        for p in BROKEN
        for m in re.finditer(r"^extends: (\S+)$", p.read_bytes().decode("utf-8", "replace"), re.M)
    }
    cycle = {p.resolve() for p in BROKEN if p.stem.startswith("extends-cycle-")}
    assert {p.resolve() for p in BROKEN} & extended <= cycle


def test_valid_fixture_loads() -> None:
    env = load(CORPUS / "valid-site.yaml")
    assert env.name == "corpus"
    assert env.node_pools["a100"].mig == ["1g.10gb"] * 7


def test_shipped_environments_load() -> None:
    names = list_environments()
    assert {"cnaf", "recas", "example", "hackathon-example"} <= set(names)
    for name in names:
        load(name)


def test_error_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    """A mistake inherited through `extends` is reported against the file that holds it."""
    base = tmp_path / "base.yaml"
    base.write_text(f"extends: {CORPUS / 'valid-site.yaml'}\nnetwork:\n  pod_cidr: 10.50.0.0/24\n")
    site = tmp_path / "site.yaml"
    site.write_text("extends: base.yaml\nname: child\n")
    with pytest.raises(ConfigError) as caught:
        load(site)
    assert caught.value.file is not None and Path(caught.value.file).resolve() == base.resolve()
    assert caught.value.path == "network.pod_cidr"


def test_lists_are_replaced_and_mappings_merged(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"extends: {CORPUS / 'valid-site.yaml'}\n"
                    "network:\n  ssh_allow: []\n"
                    "node_pools:\n  a100:\n    mig: [1g.10gb, 1g.10gb]\n")
    env = load(site)
    assert env.node_pools["a100"].mig == ["1g.10gb", "1g.10gb"]  # list replaced, not appended
    assert env.node_pools["a100"].flavor == "gpu-a100x2"  # sibling keys kept from the base


def test_extends_through_a_symlink_loop(tmp_path: Path) -> None:
    """Not a file the corpus can ship (git would check the loop out), so written here."""
    (tmp_path / "loop-a.yaml").symlink_to(tmp_path / "loop-b.yaml")
    (tmp_path / "loop-b.yaml").symlink_to(tmp_path / "loop-a.yaml")
    site = tmp_path / "site.yaml"
    site.write_text("extends: loop-a.yaml\nname: x\n")
    with pytest.raises(ConfigError) as caught:
        load(site)
    assert caught.value.path == "extends" and "is not a usable file name" in str(caught.value)
    assert caught.value.file is not None and Path(caught.value.file).resolve() == site.resolve()
