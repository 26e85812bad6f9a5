"""Benchmark: what keeping a site's Prometheus for 400 days costs on disk (issue 15).

1. Bytes per sample, measured: synthetic series shaped like the site's (the accounting rules' gauges, which hold
   an integer for hours; counters that grow, as node-exporter's and cAdvisor's; gauges that move, as DCGM's) are
   written as OpenMetrics and turned into TSDB blocks by Debian's `promtool tsdb create-blocks-from openmetrics`;
   the blocks' size on disk divided by the samples written is the cost of one sample after compression.
2. Series per site, from the plan: the accounting recording rules (``aiinfn:accelerator_allocated:by_project``
   every minute, its hourly sums every hour) hold at most one series per accelerator unit (a unit is held by one
   pod at a time, and a pod is one (project, user, kind)); the scraped series are estimated per target from the
   figures below (node-exporter's measured on the test hosts, the others stated, not measured here).
3. Disk for ``accounting_retention_days`` = series x samples a day x days x bytes per sample, against the volume
   the environment gives Prometheus (``storage_gb``; the TSDB is capped at 90 % of it).

Usage: python benchmarks/monitoring_storage.py [--series 400] [--days 7] [--sites cnaf,recas]
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiinfn.config.loader import load  # noqa: E402 - after the path
from aiinfn.planning import make_plan  # noqa: E402 - after the path
from aiinfn.services import monitoring  # noqa: E402 - after the path

SCRAPE_SECONDS = 30  # kube-prometheus-stack's default scrape interval
#: Series per scrape target. node-exporter: counted on a test host (Debian's 1.5 with the node_exporter role's
#: collectors, 2 CPUs, a few filesystems; tests/integration/hosts/test_role_node_exporter.py), rounded up for VMs
#: with more CPUs and devices. The others are estimates (not measured here): dcgm-exporter's default counters
#: per GPU or MIG instance; kube-state-metrics and the kubelet's cAdvisor per pod; the control plane (API server,
#: etcd, scheduler, controller manager, CoreDNS) per server.
PER_NODE = 1500
PER_DEVICE = 25
PER_POD = 120
PER_SERVER = 8000
PLATFORM_PODS = 90


SHAPES = ("accounting", "counter", "gauge")


def _openmetrics(path: Path, shape: str, series: int, days: int, step: int) -> int:
    """Write ``series`` series of ``shape`` over ``days`` at ``step`` seconds; return the samples written.

    accounting: units held, an integer that changes when a pod starts or ends (every ~4 h here); counter: seconds
    that grow by a varying amount each scrape (node_cpu_seconds_total, container_cpu_usage_seconds_total); gauge:
    an integer percentage that moves at every scrape (DCGM_FI_DEV_GPU_UTIL)."""
    rng = random.Random(15)
    end = int(time.time()) // 3600 * 3600 - 3 * 3600
    start = end - days * 86400
    n = 0
    with path.open("w") as f:
        f.write(f"# TYPE aiinfn_bench_{shape} gauge\n")
        for s in range(series):
            value, t = float(rng.randint(0, 7)), start
            while t < end:
                if shape == "accounting" and rng.random() < step / 14400:
                    value = float(rng.randint(0, 7))
                elif shape == "counter":
                    value = round(value + rng.uniform(0.5, 1.5) * step, 2)
                elif shape == "gauge":
                    value = float(rng.randint(0, 100))
                f.write(f'aiinfn_bench_{shape}{{series="{s}",node="gpu-{s % 40:02d}"}} {value} {t}\n')
                t += step
                n += 1
        f.write("# EOF\n")
    return n


def bytes_per_sample(shape: str, series: int, days: int) -> tuple[float, int, float]:
    """Size on disk of the TSDB blocks promtool makes of ``shape``'s series, per sample."""
    promtool = shutil.which("promtool")
    if promtool is None:
        sys.exit("promtool is not installed: run scripts/install-monitoring-test-deps.sh (as root)")
    step = monitoring.RECORD_INTERVAL_SECONDS if shape == "accounting" else SCRAPE_SECONDS
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "series.om", Path(tmp) / "tsdb"
        samples = _openmetrics(src, shape, series, days, step)
        started = time.monotonic()
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration",
                        f"{days * 24}h", str(src), str(out)], check=True, capture_output=True)
        took = time.monotonic() - started
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return size / samples, samples, took


def site_series(name: str) -> dict[str, int]:
    plan = make_plan(load(name))
    units = sum(c.units for c in plan.capacity.values())
    devices = sum(c.units if c.kind.profile else c.devices for c in plan.capacity.values())
    servers = sum(1 for n in plan.nodes if n.role.value == "server")
    return {
        "accounting (per minute)": units,
        "accounting, hourly sums (per hour)": units,
        "node-exporter": PER_NODE * len(plan.nodes),
        "dcgm-exporter": PER_DEVICE * devices,
        "kube-state-metrics + cAdvisor": PER_POD * (PLATFORM_PODS + units),
        "control plane": PER_SERVER * servers,
    }


#: Which measured shape each kind of series costs like.
SHAPE_OF = {"accounting (per minute)": "accounting", "accounting, hourly sums (per hour)": "accounting",
            "node-exporter": "counter", "dcgm-exporter": "gauge", "kube-state-metrics + cAdvisor": "counter",
            "control plane": "counter"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100, help="series of each shape")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sites", default="cnaf,recas")
    args = ap.parse_args()
    bps: dict[str, float] = {}
    for shape in SHAPES:
        bps[shape], samples, took = bytes_per_sample(shape, args.series, args.days)
        print(f"promtool, {shape}: {samples} samples of {args.series} series over {args.days} d -> "
              f"{bps[shape]:.2f} bytes/sample ({took:.1f} s)")
    for name in args.sites.split(","):
        env = load(name)
        days = env.services.monitoring.accounting_retention_days
        cap_gb = env.services.monitoring.storage_gb * 0.9
        series = site_series(name)
        per_day = {k: v * (24 if "hourly" in k else 1440 if "accounting" in k else 86400 // SCRAPE_SECONDS)
                   for k, v in series.items()}
        worst = {k: v * bps[SHAPE_OF[k]] / 1e9 for k, v in per_day.items()}  # every series like its shape
        acc = sum(v for k, v in worst.items() if "accounting" in k) * days
        samples = sum(per_day.values()) * days
        print(f"{name}: {sum(series.values())} series ({', '.join(f'{k} {v}' for k, v in series.items())})")
        print(f"  {days} days: accounting alone {acc * 1000:.0f} MB; the whole TSDB ({samples / 1e9:.1f} G samples) "
              f"{samples / 1e9:.0f}-{2 * samples / 1e9:.0f} GB at Prometheus' 1-2 bytes/sample, "
              f"{sum(worst.values()) * days:.0f} GB if every scraped series were as busy as the measured shapes; "
              f"storage_gb {env.services.monitoring.storage_gb} gives {cap_gb:.0f} GB "
              f"({math.floor(cap_gb * 1e9 / (2 * samples / days))} days at 2 bytes/sample)")
    print(f"recording interval {monitoring.RECORD_INTERVAL_SECONDS} s, scrape interval {SCRAPE_SECONDS} s")


if __name__ == "__main__":
    main()
