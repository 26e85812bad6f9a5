"""``python -m aiinfn.cli``: the same as the ``aiinfn`` command."""

from . import main

main()
