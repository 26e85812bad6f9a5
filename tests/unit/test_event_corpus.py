"""The bad-input corpus of events: each file gives exactly one clear line and exit code 2.

Every ``tests/corpus/events/*.yaml`` but the site it extends states its expectation on its first line,
as the site corpus does (tests/unit/test_corpus.py)::

    # expect: <file>: <field path or ->: <message substring>

``<file>`` is the file holding the mistake, relative to tests/corpus/: the event file or its roster CSV.
Loading the event runs every rule of the file; what only ``aiinfn event up`` can judge (the dates
against today, the shortfall) is then checked as ``up`` checks it, before any stack is touched. The
corpus covers: an unknown site, a kind no site offers (or one reserved for a group), roster duplicates,
unknown columns, sites and roles, formula-like values, a missing roster or one outside the checkout, more
tutors than capacity (counted and in a roster), dates reversed or in the past at ``up``, an event file
setting site fields, and the teardown and materials rules.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn.errors import ConfigError
from aiinfn.events import report as rep
from aiinfn.events import stacks

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))
from corpus_expect import expectation  # noqa: E402 - tests/support/corpus_expect.py, found through SUPPORT

EVENTS = sorted(p for p in (CORPUS / "events").glob("*.yaml") if p.stem != "site-with-reserve")


def _refusal(path: Path) -> ConfigError:
    try:
        report = rep.build(path)
        stacks.check_window(report, dt.date.today(), now=False)  # what `up` judges before anything changes
        stacks.check_shortfall(report, allow=True)
    except ConfigError as e:
        return e
    except Exception as e:  # anything but ConfigError is a bug
        pytest.fail(f"{path.name}: {type(e).__name__} escaped instead of ConfigError: {e}")
    pytest.fail(f"{path.name} was accepted")


def test_the_corpus_is_there() -> None:
    assert len(EVENTS) >= 20
    names = {p.stem for p in EVENTS}
    for must in ("unknown-site", "kind-no-site-offers", "roster-duplicate", "roster-unknown-column",
                 "more-tutors-than-capacity", "dates-reversed", "dates-in-the-past-at-up", "sets-site-field"):
        assert must in names


@pytest.mark.parametrize("path", EVENTS, ids=[p.stem for p in EVENTS])
def test_broken_event_gives_one_clear_line(path: Path) -> None:
    holder, field, message = expectation(path)
    err = _refusal(path)
    text = str(err)
    assert err.exit_code == 2
    assert len(text.splitlines()) == 1, repr(text)
    assert err.file is not None and Path(err.file).resolve() == holder.resolve(), f"blames {err.file}: {text}"
    assert text.startswith(err.file + ": ")
    assert err.path == field, text
    assert message in text, text


def test_the_cli_prints_one_line_and_exits_2(root: Path) -> None:
    """Through the command itself: `aiinfn event plan` of a broken roster."""
    path = CORPUS / "events" / "roster-duplicate.yaml"
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "event", "plan", str(path), "--no-stacks",
                          "--build-dir", "/nonexistent/never-written"], capture_output=True, text=True, cwd=root,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and "roster-duplicate.csv: line 3: username 'Alice' is also on line 2" in line
    assert res.stdout == ""
