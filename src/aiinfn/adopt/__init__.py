"""Bring a site's existing VMs under aiinfn without rebuilding them (`aiinfn adopt`).

``live`` reads the project (list calls only), ``match`` pairs what it holds with the resources the
offline plan registers and reports every difference with its effect on `pulumi up`, ``imports``
writes what makes Pulumi adopt them, and ``run`` ties the three together for the CLI.
"""

from __future__ import annotations

from .run import AdoptResult, adopt

__all__ = ["AdoptResult", "adopt"]
