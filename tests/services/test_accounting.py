"""`aiinfn accounting` against a real Prometheus (Debian's 2.42) started by the tests.

Its TSDB holds a month (March 2026, 31 days) of the accounting series the overlay records
(``aiinfn:accelerator_allocated:by_project``, one sample a minute), written as OpenMetrics and turned
into blocks by ``promtool tsdb create-blocks-from openmetrics``. The synthetic use is made from a small
schedule (who holds how many units of which kind, on which days and hours), and the expected unit-hours
are computed from that schedule, apart from the code under test. The Prometheus serves its API over TLS
(a certificate made here) with basic auth (a bcrypt hash of a generated password), as the site's Ingress
does; the command reads the password from a 0600 file and trusts the certificate through --ca-file.

Not real: the Ingress itself (ingress-nginx with cert-manager's certificate; Prometheus' own web
configuration stands in for it), and the series come from the schedule rather than from the recording
rule over exporters (tests/services/test_prometheus_rules.py proves the rule with promtool).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from aiinfn.services import monitoring

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIINFN = str(Path(sys.executable).with_name("aiinfn"))
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DAYS = 31
STEP = monitoring.RECORD_INTERVAL_SECONDS


@dataclass(frozen=True)
class Use:
    """``units`` of ``kind`` held by ``user`` of ``project`` from ``hour_from`` to ``hour_to`` (UTC) on the
    days ``days`` selects; samples ``offset`` seconds after each minute (a rule group's evaluation offset)."""

    project: str
    user: str
    kind: str
    units: int
    hour_from: int
    hour_to: int
    days: str  # "all", "weekdays", "weekends", "first-half"
    offset: float = 17.25

    def on(self, day: dt.datetime) -> bool:
        return {"all": True, "weekdays": day.weekday() < 5, "weekends": day.weekday() >= 5,
                "first-half": day.day <= 15}[self.days]


SCHEDULE = [
    Use("lhc-ml", "alice", "T4", 2, 8, 20, "weekdays"),
    Use("lhc-ml", "bob", "A100-80GB/1g.10gb", 3, 0, 24, "first-half"),
    Use("theory", "carol", "A100-80GB/1g.10gb", 1, 9, 17, "all", offset=0.0),  # samples exactly on the minute
    Use("theory", "carol", "A30/2g.12gb", 2, 22, 24, "weekends"),
    Use("astro", "dave", "RTX5000", 1, 0, 24, "all"),
    Use("event/school", "erin", "A100-80GB/1g.10gb", 1, 14, 18, "weekends"),
    Use(monitoring.NO_PROJECT, "", "T4", 1, 3, 4, "all"),
]


def samples(use: Use) -> Iterator[float]:
    for d in range(DAYS):
        day = START + dt.timedelta(days=d)
        if use.on(day):
            t0 = day.timestamp() + use.hour_from * 3600
            for m in range((use.hour_to - use.hour_from) * 60):
                yield t0 + m * 60 + use.offset


def expected_seconds(start: dt.datetime, end: dt.datetime, key: str) -> dict[str, dict[str, int]]:
    """unit-seconds per key (project/user/kind), split into devices and slices, straight from the schedule."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"device": 0, "slice": 0})
    a, b = start.timestamp(), end.timestamp()
    for use in SCHEDULE:
        n = sum(1 for t in samples(use) if a <= t < b)
        if n:
            k = {"project": use.project, "user": use.user or "(no user)", "kind": use.kind}[key]
            out[k]["slice" if "/" in use.kind else "device"] += n * use.units * STEP
    return dict(out)


def openmetrics() -> str:
    lines = [f"# HELP {monitoring.ALLOCATED} accelerator units charged", f"# TYPE {monitoring.ALLOCATED} gauge"]
    for use in SCHEDULE:
        acc, _, mig = use.kind.partition("/")
        labels = {"project": use.project, "user": use.user, "kind": use.kind, "accelerator": acc,
                  "mig_profile": mig}
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if v)
        lines += [f"{monitoring.ALLOCATED}{{{text}}} {use.units} {t:.3f}" for t in samples(use)]
    return "\n".join(lines) + "\n# EOF\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    ca: Path
    password_file: Path
    data: Path


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    for tool in ("prometheus", "promtool", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/install-monitoring-test-deps.sh (as root)")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "month.om").write_text(openmetrics())
    data = work / "data"
    started = time.monotonic()
    res = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "month.om"), str(data)],
                         capture_output=True, text=True, timeout=900)
    print(f"\npromtool tsdb create-blocks-from openmetrics: {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert res.returncode == 0, res.stdout + res.stderr
    (work / "month.om").unlink()
    # TLS and basic auth, as the Ingress serves the API
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(work / "key.pem"),
                    "-out", str(work / "cert.pem")], check=True, capture_output=True, timeout=60)
    password = secrets.token_urlsafe(24)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=8)).decode()
    (work / "web.yml").write_text(json.dumps({
        "tls_server_config": {"cert_file": str(work / "cert.pem"), "key_file": str(work / "key.pem")},
        "basic_auth_users": {monitoring.READER_USER: hashed}}))
    (work / "prometheus.yml").write_text("global: {}\n")
    pw = work / "password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    port = _free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - kept open for the server's life
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=3650d", f"--web.listen-address=127.0.0.1:{port}",
         f"--web.config.file={work / 'web.yml'}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=str(work / "cert.pem"))
        ready = urllib.request.Request(f"{url}/-/ready", headers={"Authorization": "Basic " + base64.b64encode(
            f"{monitoring.READER_USER}:{password}".encode()).decode()})
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(ready, timeout=5, context=ctx):
                    break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"prometheus did not start: {(work / 'prometheus.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield Server(url, work / "cert.pem", pw, data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def accounting(server: Server, *args: str, password: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [AIINFN, "accounting", "cnaf", "--prometheus", server.url, "--ca-file", str(server.ca), *args]
    if password:
        cmd += ["--password-file", str(server.password_file)]
    env = {k: v for k, v in os.environ.items() if k != "AIINFN_PROMETHEUS_PASSWORD"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "COLUMNS": "160"})


def _report(server: Server, start: str, end: str, by: str) -> dict:
    res = accounting(server, "--from", start, "--to", end, "--by", by, "-o", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("by", ["project", "user", "kind"])
def test_a_months_totals_are_the_schedules(prometheus: Server, by: str) -> None:
    doc = _report(prometheus, "2026-03-01", "2026-04-01", by)
    want = expected_seconds(START, START + dt.timedelta(days=DAYS), by)
    got = {r["key"]: {"device": r["device_unit_seconds"], "slice": r["slice_unit_seconds"]} for r in doc["rows"]}
    assert got == want
    # the totals add up, exactly in unit-seconds and as printed in hours
    total = doc["total"]
    assert total["device_unit_seconds"] == sum(v["device"] for v in want.values())
    assert total["slice_unit_seconds"] == sum(v["slice"] for v in want.values())
    assert round(sum(r["device_hours"] for r in doc["rows"]), 2) == total["device_hours"]
    assert round(sum(r["slice_hours"] for r in doc["rows"]), 2) == total["slice_hours"]
    assert total["device_hours"] == round(total["device_unit_seconds"] / 3600, 2)


def test_figures_users_can_check_by_hand(prometheus: Server) -> None:
    """lhc-ml in March 2026: alice 2 T4 for 12 h on 22 weekdays (528 GPU-hours), bob 3 A100 slices for 15
    whole days (1080 slice-hours)."""
    doc = _report(prometheus, "2026-03-01", "2026-04-01", "project")
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["lhc-ml"]["device_hours"] == 528.0 and rows["lhc-ml"]["slice_hours"] == 1080.0
    assert rows["astro"]["device_hours"] == 31 * 24.0
    assert list(rows)[-1] == monitoring.NO_PROJECT  # unattributed use last, never dropped


@pytest.mark.parametrize(("start", "end"), [
    ("2026-03-02T09:00:00Z", "2026-03-02T10:30:00Z"),   # inside one day, boundary on carol's minute samples
    ("2026-03-10", "2026-03-17T13:30:00Z"),            # whole days and a shorter last window
    ("2026-03-15T12:00:00+02:00", "2026-03-16"),        # an offset other than UTC
    ("2026-02-20", "2026-03-03"),                       # starts before the data
])
def test_any_period_counts_each_minute_once(prometheus: Server, start: str, end: str) -> None:
    def when(s: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if len(s) > 10 else dt.datetime.fromisoformat(s)
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)

    doc = _report(prometheus, start, end, "kind")
    got = {r["key"]: {"device": r["device_unit_seconds"], "slice": r["slice_unit_seconds"]} for r in doc["rows"]}
    assert got == expected_seconds(when(start), when(end), "kind")


def test_adjacent_periods_add_up_to_the_whole(prometheus: Server) -> None:
    halves = [_report(prometheus, "2026-03-01", "2026-03-16T09:00:00Z", "project"),
              _report(prometheus, "2026-03-16T09:00:00Z", "2026-04-01", "project")]
    whole = _report(prometheus, "2026-03-01", "2026-04-01", "project")
    for col in ("device_unit_seconds", "slice_unit_seconds"):
        assert sum(h["total"][col] for h in halves) == whole["total"][col]


def test_table_csv_and_plot(prometheus: Server, tmp_path: Path) -> None:
    plot = tmp_path / "march.png"
    res = accounting(prometheus, "--from", "2026-03-01", "--to", "2026-04-01", "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    assert "lhc-ml" in res.stdout and "528.00" in res.stdout and "total" in res.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20000
    svg = tmp_path / "march.svg"
    res = accounting(prometheus, "--from", "2026-03-01", "--to", "2026-04-01", "-o", "csv", "--plot", str(svg))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "project,device_hours,slice_hours,device_unit_seconds,slice_unit_seconds"
    assert lines[-1].startswith("total,") and "<svg" in svg.read_text()[:500]
    for project in ("lhc-ml", "theory", "astro", "event/school"):
        assert f">{project}<" in svg.read_text() or project in svg.read_text()


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--from", "2026-04-01", "--to", "2026-03-01"], 2, "is not after --from"),
    (["--from", "March", "--to", "2026-03-01"], 2, "write a date"),
    (["--from", "2026-03-01", "--to", "2026-04-01", "--by", "group"], 2, "choose project, user or kind"),
    (["--from", "2026-03-01", "--to", "2026-04-01", "--plot", "x.pdf"], 2, "write a .png or .svg file"),
])
def test_bad_input_is_one_line(prometheus: Server, args: list[str], code: int, says: str) -> None:
    res = accounting(prometheus, *args)
    assert res.returncode == code and says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_without_the_password_prometheus_refuses_and_the_command_says_why(prometheus: Server) -> None:
    res = accounting(prometheus, "--from", "2026-03-01", "--to", "2026-04-01", password=False)
    assert res.returncode == 1 and "401 unauthorized" in res.stderr and "Traceback" not in res.stderr


def test_an_unreachable_prometheus_is_one_line(prometheus: Server) -> None:
    server = Server(f"https://127.0.0.1:{_free_port()}", prometheus.ca, prometheus.password_file, prometheus.data)
    res = accounting(server, "--from", "2026-03-01", "--to", "2026-04-01")
    assert res.returncode == 1 and "cannot connect" in res.stderr and "Traceback" not in res.stderr


def test_the_month_on_disk(prometheus: Server) -> None:
    """What the accounting series cost: bytes per sample of the month's chunks (docs/accounting.md). Only
    the chunk files count: they hold the compressed samples whatever the blocks' layout, while the
    indexes' share depends on how far Prometheus has compacted the imported 2 h blocks when the test
    reads them (the whole-TSDB figures are benchmarks/monitoring_storage.py's)."""
    for _ in range(30):  # Prometheus compacts the imported blocks after it starts: read a consistent state
        try:
            blocks = [p for p in prometheus.data.iterdir() if p.is_dir() and (p / "meta.json").is_file()]
            meta = [json.loads((p / "meta.json").read_text()) for p in blocks]
            size = sum(f.stat().st_size for p in blocks for f in (p / "chunks").iterdir() if f.is_file())
            break
        except FileNotFoundError:
            time.sleep(1)
    n_samples = sum(m["stats"]["numSamples"] for m in meta)
    assert n_samples == sum(sum(1 for _ in samples(u)) for u in SCHEDULE)
    print(f"\naccounting TSDB: {len(SCHEDULE)} series, {n_samples} samples, {size} chunk bytes, "
          f"{size / n_samples:.2f} bytes/sample")
    assert size / n_samples < 2.0  # Gorilla-compressed constant gauges
