"""The Harbor replication Job's program, run for real against a local HTTP stand-in of Harbor's API.

Gap: no Harbor can run here. The stand-in answers the Harbor v2.0 endpoints the program calls
(registries, replication policies, replication executions) with the status codes Harbor documents (201
on create, 200 on update, 409 on a duplicate name, 401 for a wrong password), never returns a stored
credential (as Harbor does not), and records every request: the tests prove what the program asks for,
that a rerun only reads, and that a changed endpoint (URL or credentials) is updated in place.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from aiinfn.jobs import harbor_replication as job

PASSWORD = "test-admin-password"


class Harbor:
    def __init__(self) -> None:
        self.registries: list[dict[str, Any]] = []
        self.policies: list[dict[str, Any]] = []
        self.executions: list[int] = []
        self.requests: list[tuple[str, str]] = []
        self.ids = 0

    def next_id(self) -> int:
        self.ids += 1
        return self.ids


def _server(state: Harbor) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            raw = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            state.requests.append((method, url.path))
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode():
                return self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
            path, query = url.path.removeprefix("/api/v2.0"), parse_qs(url.query)
            if path == "/registries" and method == "GET":
                q = query.get("q", [""])[0].removeprefix("name=")
                return self._reply(200, [{k: v for k, v in r.items() if k != "credential"}
                                         for r in state.registries if q in r["name"]])
            if path == "/registries" and method == "POST":
                if any(r["name"] == body["name"] for r in state.registries):
                    return self._reply(409)
                state.registries.append({**body, "id": state.next_id()})
                return self._reply(201)
            if path.startswith("/registries/") and method == "PUT":
                rid = int(path.rsplit("/", 1)[1])
                for r in state.registries:
                    if r["id"] == rid:
                        r.update(body)
                        return self._reply(200)
                return self._reply(404)
            if path == "/replication/policies" and method == "GET":
                name = query.get("name", [""])[0]
                return self._reply(200, [p for p in state.policies if name in p["name"]])
            if path == "/replication/policies" and method == "POST":
                if any(p["name"] == body["name"] for p in state.policies):
                    return self._reply(409)
                if not any(r["id"] == body["dest_registry"]["id"] for r in state.registries):
                    return self._reply(400)
                state.policies.append({**body, "id": state.next_id()})
                return self._reply(201)
            if path.startswith("/replication/policies/") and method == "PUT":
                pid = int(path.rsplit("/", 1)[1])
                for p in state.policies:
                    if p["id"] == pid:
                        p.update(body)
                        return self._reply(200)
                return self._reply(404)
            if path == "/replication/executions" and method == "POST":
                state.executions.append(int(body["policy_id"]))
                return self._reply(201)
            return self._reply(404)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def harbor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Harbor]:
    state = Harbor()
    srv = _server(state)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    creds = tmp_path / "credentials"
    creds.write_text("robot$replication:replica-secret\n")
    admin = tmp_path / "admin"
    admin.write_text(PASSWORD + "\n")
    monkeypatch.setenv("HARBOR_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("HARBOR_ADMIN_PASSWORD_FILE", str(admin))
    monkeypatch.setenv("REPLICA_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("PROJECTS", "environments,apptainer")
    monkeypatch.setenv("REPLICAS", json.dumps([{"name": "recas", "url": "https://harbor.recas.example.org"}]))
    yield state
    srv.shutdown()
    srv.server_close()


def _writes(state: Harbor) -> list[tuple[str, str]]:
    return [r for r in state.requests if r[0] != "GET"]


def test_first_run_creates_the_endpoint_the_policies_and_a_first_copy(harbor: Harbor,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert job.main() == 0
    (reg,) = harbor.registries
    assert reg["name"] == "aiinfn-recas" and reg["type"] == "harbor" and reg["insecure"] is False
    assert reg["url"] == "https://harbor.recas.example.org"
    assert reg["credential"] == {"type": "basic", "access_key": "robot$replication", "access_secret": "replica-secret"}
    assert sorted(p["name"] for p in harbor.policies) == ["aiinfn-apptainer-to-recas", "aiinfn-environments-to-recas"]
    for p in harbor.policies:
        project = p["name"].split("-")[1]
        assert p["dest_registry"] == {"id": reg["id"]} and p["src_registry"] is None
        assert p["filters"] == [{"type": "name", "value": f"{project}/**"}] and p["dest_namespace"] == project
        assert p["trigger"] == {"type": "event_based"} and p["deletion"] is False and p["enabled"] is True
    assert sorted(harbor.executions) == sorted(p["id"] for p in harbor.policies)
    out = capsys.readouterr()
    assert "endpoint aiinfn-recas: created" in out.out
    assert "replica-secret" not in out.out + out.err  # the credential is never printed


def test_a_rerun_only_reads(harbor: Harbor) -> None:
    assert job.main() == 0
    before = len(_writes(harbor))
    harbor.requests.clear()
    assert job.main() == 0
    assert _writes(harbor) == [] and harbor.requests  # it looked, and changed nothing
    assert before == 1 + 2 + 2  # endpoint, two policies, two first executions


def test_a_changed_endpoint_is_updated_in_place(harbor: Harbor, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    assert job.main() == 0
    rid = harbor.registries[0]["id"]
    monkeypatch.setenv("REPLICAS", json.dumps([{"name": "recas", "url": "https://registry.recas.example.org/"}]))
    harbor.requests.clear()
    assert job.main() == 0
    assert _writes(harbor) == [("PUT", f"/api/v2.0/registries/{rid}")]
    assert harbor.registries[0]["url"] == "https://registry.recas.example.org" and len(harbor.registries) == 1
    # new credentials (Harbor never returns them: the description's digest tells)
    (tmp_path / "credentials").write_text("robot$replication:rotated\n")
    harbor.requests.clear()
    assert job.main() == 0
    assert _writes(harbor) == [("PUT", f"/api/v2.0/registries/{rid}")]
    assert harbor.registries[0]["credential"]["access_secret"] == "rotated"
    assert "rotated" not in harbor.registries[0]["description"]


def test_a_drifted_policy_is_updated(harbor: Harbor) -> None:
    assert job.main() == 0
    harbor.policies[0]["enabled"] = False
    harbor.policies[0]["filters"] = [{"type": "name", "value": "**"}]
    harbor.requests.clear()
    assert job.main() == 0
    assert _writes(harbor) == [("PUT", f"/api/v2.0/replication/policies/{harbor.policies[0]['id']}")]
    assert harbor.policies[0]["enabled"] is True


def test_failures_are_one_line_and_exit_1(harbor: Harbor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "admin").write_text("wrong\n")
    assert job.main() == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "HTTP 401" in err
    (tmp_path / "admin").write_text(PASSWORD)
    monkeypatch.setenv("REPLICAS", json.dumps([{"name": "recas", "url": "http://harbor.recas.example.org"}]))
    assert job.main() == 1
    assert "not https" in capsys.readouterr().err
    monkeypatch.setenv("REPLICAS", "[]")
    (tmp_path / "credentials").write_text("no-colon")
    assert job.main() == 1
    assert "not '<user>:<password>'" in capsys.readouterr().err
