"""The environment reference in docs/ is generated from the models and must match them."""

from pathlib import Path

from aiinfn.config import reference


def test_environment_reference_is_up_to_date(root: Path) -> None:
    committed = (root / "docs" / "environment-reference.md").read_text()
    assert committed == reference.render(), (
        "docs/environment-reference.md is stale: run `python -m aiinfn.config.reference > "
        "docs/environment-reference.md`"
    )
