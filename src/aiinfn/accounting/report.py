"""An accounting report: who used how many accelerator unit-hours in a period, and a plot of it.

Exact arithmetic: Prometheus returns, for each day of the period and each (project, user, kind), the sum
of the recorded samples (whole units, one sample per recording interval), so each figure is an integer
number of unit-seconds. Hours are printed with two decimals; the rows' hours are apportioned (largest
remainder) so that they add up to the printed total exactly, and the exact unit-seconds are in the CSV
and JSON. ``device`` hours are whole accelerators (GPUs, FPGAs), ``slice`` hours MIG instances (the kind
names the profile, ``A100-80GB/1g.10gb``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..services.monitoring import ALLOCATED, NO_PROJECT, RECORD_INTERVAL_SECONDS
from .prometheus import AccountingError, ArgumentError, Prometheus

DAY = 86400
#: Longest period one report covers (Prometheus keeps at least 400 days; a few years at most).
MAX_DAYS = 3660
#: Seconds in a hundredth of an hour: the printed resolution.
CENTIHOUR = 36


class GroupBy(StrEnum):
    project = "project"
    user = "user"
    kind = "kind"


def parse_time(text: str, what: str) -> dt.datetime:
    """``2026-01-01`` (midnight UTC) or an ISO 8601 time (UTC unless it names its offset)."""
    try:
        if len(text) == 10:
            value = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        else:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentError(f"{what} {text!r}: write a date (2026-01-01) or an ISO time "
                              "(2026-01-01T00:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Period:
    """[start, end): the samples at start belong to it, those at end to the next period."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ArgumentError(f"--to {self.end.isoformat()} is not after --from {self.start.isoformat()}")
        if (self.end - self.start).total_seconds() > MAX_DAYS * DAY:
            raise ArgumentError(f"the period is longer than {MAX_DAYS} days: report it in parts")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def days(self) -> list[dt.datetime]:
        """The start of every window of the period: whole days from ``start``, the last one shorter."""
        out, t = [], self.start
        while t < self.end:
            out.append(t)
            t += dt.timedelta(seconds=DAY)
        return out


@dataclass(frozen=True)
class Usage:
    """Unit-seconds of one (project, user, kind) in the window starting at ``day``."""

    project: str
    user: str
    kind: str
    day: dt.datetime
    unit_seconds: int

    @property
    def is_slice(self) -> bool:
        return "/" in self.kind


@dataclass(frozen=True)
class Row:
    key: str
    device_seconds: int
    slice_seconds: int
    device_hours: float = 0.0
    slice_hours: float = 0.0


@dataclass
class Report:
    site: str
    period: Period
    by: GroupBy
    usage: list[Usage] = field(default_factory=list)

    # ------------------------------------------------------------------ figures

    def key(self, u: Usage) -> str:
        if self.by is GroupBy.user:
            return u.user or "(no user)"
        return u.kind if self.by is GroupBy.kind else u.project

    def rows(self) -> list[Row]:
        device: dict[str, int] = defaultdict(int)
        slices: dict[str, int] = defaultdict(int)
        for u in self.usage:
            (slices if u.is_slice else device)[self.key(u)] += u.unit_seconds
        keys = sorted(set(device) | set(slices), key=lambda k: (k == NO_PROJECT, k))
        dh = apportion([device[k] for k in keys])
        sh = apportion([slices[k] for k in keys])
        return [Row(k, device[k], slices[k], d, s) for k, d, s in zip(keys, dh, sh, strict=True)]

    def total(self) -> Row:
        d = sum(u.unit_seconds for u in self.usage if not u.is_slice)
        s = sum(u.unit_seconds for u in self.usage if u.is_slice)
        return Row("total", d, s, centihours(d) / 100, centihours(s) / 100)

    def daily(self) -> tuple[list[dt.datetime], dict[str, list[float]]]:
        """Unit-hours (devices and slices together) per project and window, for the plot."""
        days = self.period.days()
        index = {d: i for i, d in enumerate(days)}
        out: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
        for u in self.usage:
            out[u.project][index[u.day]] += u.unit_seconds / 3600
        return days, dict(sorted(out.items()))

    # ------------------------------------------------------------------ outputs

    def document(self) -> dict[str, Any]:
        total = self.total()
        return {
            "site": self.site,
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            "by": self.by.value,
            "rows": [_row_doc(r) for r in self.rows()],
            "total": _row_doc(total),
        }

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([self.by.value, "device_hours", "slice_hours", "device_unit_seconds", "slice_unit_seconds"])
        for r in [*self.rows(), self.total()]:
            w.writerow([r.key, f"{r.device_hours:.2f}", f"{r.slice_hours:.2f}", r.device_seconds, r.slice_seconds])
        return buf.getvalue()

    def plot(self, path: Path) -> None:
        """Stacked daily unit-hours of each project over the period (PNG or SVG by the file's suffix)."""
        if path.suffix.lower() not in (".png", ".svg"):
            raise ArgumentError(f"--plot {path}: write a .png or .svg file")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            from ..errors import ToolMissingError

            raise ToolMissingError("--plot needs matplotlib: pip install 'aiinfn[accounting]'") from None
        days, series = self.daily()
        fig, ax = plt.subplots(figsize=(11, 5), layout="constrained")
        bottom = [0.0] * len(days)
        for project, values in series.items():
            # matplotlib takes datetimes through its date converter
            ax.bar(days, values, width=0.9 * min(1.0, self.period.seconds / DAY),  # type: ignore[arg-type]
                   bottom=bottom, label=project, align="edge")
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(f"{self.site}: accelerator unit-hours per day and project, "
                     f"{self.period.start:%Y-%m-%d} to {self.period.end:%Y-%m-%d}")
        ax.set_ylabel("unit-hours per day (devices and MIG slices)")
        ax.legend(loc="upper left", fontsize="small", ncols=2)
        fig.autofmt_xdate()
        try:
            fig.savefig(path, format=path.suffix.lower().lstrip("."))
        except OSError as e:
            raise AccountingError(f"--plot {path}: cannot write it ({e.strerror})") from None
        finally:
            plt.close(fig)


def _row_doc(r: Row) -> dict[str, Any]:
    return {"key": r.key, "device_hours": r.device_hours, "slice_hours": r.slice_hours,
            "device_unit_seconds": r.device_seconds, "slice_unit_seconds": r.slice_seconds}


def centihours(seconds: int) -> int:
    """``seconds`` in hundredths of an hour, rounded half up."""
    return (2 * seconds + CENTIHOUR) // (2 * CENTIHOUR)


def apportion(seconds: list[int]) -> list[float]:
    """Hours with two decimals whose sum is the rounded total exactly (largest remainder, earliest first)."""
    target = centihours(sum(seconds))
    floors = [s // CENTIHOUR for s in seconds]
    left = target - sum(floors)
    order = sorted(range(len(seconds)), key=lambda i: (-(seconds[i] % CENTIHOUR), i))
    for i in order[:left]:
        floors[i] += 1
    return [f / 100 for f in floors]


# --------------------------------------------------------------------------- from Prometheus


def _expr(range_ms: int) -> str:
    return f"sum by (project, user, kind) (sum_over_time({ALLOCATED}[{range_ms}ms]))"


def build(prom: Prometheus, site: str, period: Period, by: GroupBy = GroupBy.project,
          interval: int = RECORD_INTERVAL_SECONDS) -> Report:
    """The report of ``period`` from ``prom``: one query for the whole days, one for a shorter last window.

    Each window [a, b) is asked at b - 1 ms: Prometheus 3 selects (t - range, t], so the range is the
    window's length; Prometheus 2 selects [t - range, t], so it is 1 ms shorter. Either way a sample is in
    exactly one window."""
    short = 1 if prom.major_version() < 3 else 0
    start = period.start.timestamp()
    days = period.days()
    full = int(period.seconds // DAY)
    usage: list[Usage] = []
    if full:
        samples = prom.query_range(_expr(DAY * 1000 - short), start + DAY - 0.001, start + full * DAY - 0.001, DAY)
        for s in samples:
            for t, v in s.values:
                usage.append(_usage(s.labels, days[round((t + 0.001 - start) / DAY) - 1], v, interval))
    rest = period.seconds - full * DAY
    if rest > 0:
        end = period.end.timestamp()
        for s in prom.query(_expr(round(rest * 1000) - short), end - 0.001):
            usage.append(_usage(s.labels, days[-1], s.values[0][1], interval))
    return Report(site, period, by, [u for u in usage if u.unit_seconds])


def _usage(labels: Any, day: dt.datetime, value: float, interval: int) -> Usage:
    units = round(value)
    if abs(value - units) > 1e-6:
        raise AccountingError(f"{ALLOCATED} sums to {value} for {dict(labels)}: not whole units (is the recording "
                              "rule the platform's?)")
    return Usage(str(labels.get("project", "")), str(labels.get("user", "")), str(labels.get("kind", "")), day,
                 units * interval)

