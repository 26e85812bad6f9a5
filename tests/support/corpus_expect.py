"""The bad-input corpora's first line: ``# expect: <file>: <field path or ->: <message substring>``.

``<file>`` is the file holding the mistake, relative to tests/corpus/; the path may end in a line number
(a roster CSV's row). Used by the event and federation corpus runners.
"""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXPECT_RE = re.compile(r"^# expect: (?P<file>[^\s:]+): (?P<path>-|[^\s:]+(?: [0-9]+)?): (?P<message>.+)$")


def expectation(path: Path) -> tuple[Path, str | None, str]:
    """The file blamed, the field path (None for ``-``) and the message a corpus file expects."""
    first = path.read_text().splitlines()[0]
    m = EXPECT_RE.match(first)
    assert m, f"{path.name}: first line must be '# expect: <file>: <path or ->: <message>'"
    holder = CORPUS / m.group("file")
    assert holder.is_file(), f"{path.name}: {m.group('file')} is not a file under tests/corpus/"
    return holder, None if m.group("path") == "-" else m.group("path"), m.group("message")
