"""A small client of Prometheus' HTTP API (``/api/v1/query``, ``/api/v1/query_range``, build info).

HTTPS with the site's basic-auth reader (the password never on a command line: the CLI reads it from
the environment or a 0600 file), an optional CA file for a self-signed certificate, bounded time for
every request. Every failure is an ``AccountingError``: one line naming the URL and what went wrong.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AiinfnError

#: Seconds one request may take (a year of day-by-day sums is one request).
TIMEOUT = 120.0


class AccountingError(AiinfnError):
    """Prometheus could not be asked, or answered something that is not an accounting answer."""


class ArgumentError(AccountingError):
    """A period, option or file the report cannot use."""

    exit_code = 2


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    #: (unix time in seconds, value)
    values: tuple[tuple[float, float], ...]


@dataclass
class Prometheus:
    url: str
    user: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ArgumentError(f"{self.url!r} is not a Prometheus URL (https://host[:port][/prefix])")
        self.url = self.url.rstrip("/")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ArgumentError(f"--ca-file {self.ca_file}: no such file")

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (ssl.SSLError, OSError) as e:
            raise ArgumentError(f"--ca-file {self.ca_file}: not a PEM certificate file ({e})") from None

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The ``data`` of a successful API answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}{path}{query}"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.user and self.password:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        where = f"{self.url}{path}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context()) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            detail = _error_of(e.read())
            if e.code == 401:
                raise AccountingError(
                    f"{where}: 401 unauthorized: give the reader's password (AIINFN_PROMETHEUS_PASSWORD or "
                    "--password-file; docs/accounting.md)") from None
            raise AccountingError(f"{where}: HTTP {e.code}{': ' + detail if detail else ''}") from None
        except urllib.error.URLError as e:
            raise AccountingError(f"{where}: cannot connect ({e.reason})") from None
        except (TimeoutError, OSError) as e:
            raise AccountingError(f"{where}: no answer ({type(e).__name__}: {e})") from None
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise AccountingError(f"{where}: the answer is not JSON (is this Prometheus?)") from None
        if not isinstance(doc, dict) or doc.get("status") != "success" or "data" not in doc:
            raise AccountingError(f"{where}: {doc.get('error') if isinstance(doc, dict) else 'not an API answer'}")
        return doc["data"]

    def major_version(self) -> int:
        """Prometheus' major version (2 or 3: they differ in whether a range includes its left end)."""
        data = self.get("/api/v1/status/buildinfo")
        version = str(data.get("version", "")) if isinstance(data, dict) else ""
        try:
            return int(version.split(".")[0])
        except ValueError:
            raise AccountingError(f"{self.url}: unreadable Prometheus version {version!r}") from None

    def query(self, expr: str, at: float) -> list[Sample]:
        data = self.get("/api/v1/query", {"query": expr, "time": _fmt(at)})
        return [Sample(s["metric"], ((float(s["value"][0]), float(s["value"][1])),)) for s in _vector(data, self.url)]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Sample]:
        data = self.get("/api/v1/query_range", {"query": expr, "start": _fmt(start), "end": _fmt(end),
                                                "step": _fmt(step)})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise AccountingError(f"{self.url}: a range query answered {data.get('resultType')!r}, not a matrix")
        return [Sample(s["metric"], tuple((float(t), float(v)) for t, v in s["values"])) for s in data["result"]]


def _vector(data: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise AccountingError(f"{url}: an instant query answered {data.get('resultType')!r}, not a vector")
    return list(data["result"])


def _fmt(t: float) -> str:
    return f"{t:.3f}"


def _error_of(body: bytes) -> str:
    try:
        doc = json.loads(body)
        return str(doc.get("error", ""))[:200]
    except (ValueError, UnicodeDecodeError, AttributeError):
        return body[:200].decode(errors="replace").strip().splitlines()[0] if body.strip() else ""
