"""Accounting reports: accelerator unit-hours per project, user or kind, from a site's Prometheus.

The overlay records, every ``RECORD_INTERVAL_SECONDS``, the accelerator units charged to each project,
user and kind (``aiinfn:accelerator_allocated:by_project``, services/monitoring.py). A sample is one
interval of use, so unit-seconds are exact integers: the sum of the samples in a period times the
interval. ``prometheus`` asks Prometheus' HTTP API for those sums, day by day; ``report`` groups them,
turns them into hours whose rows add up to the total as printed, writes a table, CSV or JSON, and plots
the use of each project over the period.
"""

from __future__ import annotations

from .prometheus import AccountingError, Prometheus
from .report import Period, Report, build, parse_time

__all__ = ["AccountingError", "Period", "Prometheus", "Report", "build", "parse_time"]
