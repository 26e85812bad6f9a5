"""The Harbor setup Job's program, run for real against local HTTP stand-ins.

Gap: no Harbor or Kubernetes API server can run here. The stand-ins below answer the handful of
Harbor v2.0 and Kubernetes core/v1 endpoints the program calls, with the status codes those APIs
document (201 on create, 409 on duplicates, 404 for a missing Secret, 401 for a wrong password), and
record every request, so the test proves what the program asks for and that a rerun changes nothing.
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

from aiinfn.jobs import harbor_setup

PASSWORD = "test-admin-password"


class State:
    def __init__(self) -> None:
        self.projects: set[str] = {"library"}
        self.registry_of: dict[str, int] = {}  # proxy-cache project -> registry endpoint id
        self.registries: list[dict[str, Any]] = []
        self.robots: list[dict[str, Any]] = []
        self.secrets: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []


def _server(state: State) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            raw = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            state.requests.append((method, url.path))
            body = self._body()
            if url.path.startswith("/api/v2.0/"):
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode():
                    return self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                return self._harbor(method, url.path.removeprefix("/api/v2.0"), parse_qs(url.query), body)
            if self.headers.get("Authorization") != "Bearer sa-token":
                return self._reply(401)
            return self._kube(method, url.path, body)

        def _harbor(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
            if path == "/projects" and method == "GET":
                name = query.get("name", [""])[0]
                return self._reply(200, [{"name": p, **({"registry_id": state.registry_of[p]}
                                                        if p in state.registry_of else {})}
                                         for p in sorted(state.projects) if name in p])
            if path == "/projects" and method == "POST":
                if body["project_name"] in state.projects:
                    return self._reply(409)
                if "registry_id" in body:
                    if not any(r["id"] == body["registry_id"] for r in state.registries):
                        return self._reply(400)
                    state.registry_of[body["project_name"]] = body["registry_id"]
                state.projects.add(body["project_name"])
                return self._reply(201)
            if path == "/registries" and method == "GET":
                q = query.get("q", [""])[0]  # name=<name>: Harbor's exact-match query
                name = q.removeprefix("name=")
                return self._reply(200, [r for r in state.registries if not name or r["name"] == name])
            if path == "/registries" and method == "POST":
                if any(r["name"] == body["name"] for r in state.registries):
                    return self._reply(409)
                state.registries.append({**body, "id": len(state.registries) + 1})
                return self._reply(201)
            if path == "/robots" and method == "GET":
                return self._reply(200, [{"id": r["id"], "name": r["name"]} for r in state.robots])
            if path == "/robots" and method == "POST":
                robot = {"id": len(state.robots) + 1, "name": "robot$" + body["name"], "secret": "s1",
                         "permissions": body["permissions"], "level": body["level"]}
                state.robots.append(robot)
                return self._reply(201, {"id": robot["id"], "name": robot["name"], "secret": robot["secret"]})
            if path.startswith("/robots/") and method == "PATCH":
                robot = state.robots[int(path.rsplit("/", 1)[1]) - 1]
                robot["secret"] = "s" + str(int(robot["secret"][1:]) + 1)
                return self._reply(200, {"secret": robot["secret"]})
            return self._reply(404)

        def _kube(self, method: str, path: str, body: Any) -> None:
            parts = path.strip("/").split("/")  # api v1 namespaces <ns> secrets [<name>]
            if len(parts) == 6 and method in ("GET", "PUT"):
                key = f"{parts[3]}/{parts[5]}"
                if key not in state.secrets:
                    return self._reply(404)
                if method == "PUT":
                    state.secrets[key] = body
                return self._reply(200, state.secrets[key])
            if len(parts) == 5 and method == "POST":
                state.secrets[f"{parts[3]}/{body['metadata']['name']}"] = body
                return self._reply(201, body)
            return self._reply(404)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_PATCH(self) -> None:
            self._route("PATCH")

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


CACHES = [
    {"project": "docker-io", "registry": "docker.io", "type": "docker-hub", "url": "https://hub.docker.com"},
    {"project": "quay-io", "registry": "quay.io", "type": "quay", "url": "https://quay.io"},
]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    state = State()
    server = _server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    password = tmp_path / "HARBOR_ADMIN_PASSWORD"  # the Job's Secret mount
    password.write_text(PASSWORD + "\n")
    monkeypatch.delenv("HARBOR_ADMIN_PASSWORD", raising=False)
    for k, v in {"HARBOR_URL": url, "HARBOR_ADMIN_PASSWORD_FILE": str(password),
                 "HARBOR_PROXY_CACHES": json.dumps(CACHES), "HARBOR_PROJECTS": "environments,apptainer",
                 "HARBOR_ROBOT": "nodes", "TARGET_NAMESPACE": "harbor", "TARGET_SECRET": "aiinfn-harbor-robot-nodes",
                 "KUBERNETES_API": url, "KUBE_TOKEN_FILE": str(token)}.items():
        monkeypatch.setenv(k, v)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_first_run_creates_projects_robot_and_secret(world: State) -> None:
    assert harbor_setup.main() == 0
    assert {"environments", "apptainer"} <= world.projects
    (robot,) = world.robots
    assert robot["level"] == "system"
    assert robot["permissions"] == [{"kind": "project", "namespace": "*",
                                     "access": [{"resource": "repository", "action": "pull"}]}]
    secret = world.secrets["harbor/aiinfn-harbor-robot-nodes"]
    assert secret["stringData"] == {"username": "robot$nodes", "password": "s1"}


def test_the_builds_robot_may_push_its_one_project_only(world: State, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"HARBOR_ROBOT": "builds", "HARBOR_ROBOT_PUSH_PROJECT": "environments", "HARBOR_PROXY_CACHES": "[]",
                 "TARGET_NAMESPACE": "aiinfn-image-builds", "TARGET_SECRET": "aiinfn-harbor-robot-builds"}.items():
        monkeypatch.setenv(k, v)
    assert harbor_setup.main() == 0
    (robot,) = world.robots
    assert robot["permissions"] == [{"kind": "project", "namespace": "environments", "access": [
        {"resource": "repository", "action": "push"}, {"resource": "repository", "action": "pull"}]}]
    assert world.secrets["aiinfn-image-builds/aiinfn-harbor-robot-builds"]["stringData"]["username"] == "robot$builds"


def test_second_run_changes_nothing(world: State) -> None:
    assert harbor_setup.main() == 0
    world.requests.clear()
    assert harbor_setup.main() == 0
    assert all(method == "GET" for method, _ in world.requests), world.requests
    assert len(world.robots) == 1


def test_lost_secret_gets_a_refreshed_robot_secret(world: State) -> None:
    assert harbor_setup.main() == 0
    del world.secrets["harbor/aiinfn-harbor-robot-nodes"]
    assert harbor_setup.main() == 0
    assert len(world.robots) == 1
    assert world.secrets["harbor/aiinfn-harbor-robot-nodes"]["stringData"]["password"] == "s2"


def test_proxy_caches_are_created_once_with_their_endpoints(world: State) -> None:
    """Nodes mirror public registries through Harbor: each proxy-cache project exists, is public and
    proxies its own registry endpoint; a rerun creates no second endpoint or project."""
    assert harbor_setup.main() == 0
    endpoints = {r["name"]: r for r in world.registries}
    assert {n: (r["type"], r["url"]) for n, r in endpoints.items()} == {
        c["registry"]: (c["type"], c["url"]) for c in CACHES}
    for c in CACHES:
        assert world.registry_of[c["project"]] == endpoints[c["registry"]]["id"]
    world.requests.clear()
    assert harbor_setup.main() == 0
    assert all(method == "GET" for method, _ in world.requests), world.requests
    assert len(world.registries) == len(CACHES)


def test_a_project_squatting_a_proxy_cache_name_is_refused(world: State, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain project named like a proxy cache would silently serve whatever was pushed into it."""
    world.projects.add("docker-io")
    assert harbor_setup.main() == 1
    err = capsys.readouterr().err
    assert "docker-io" in err and "not a proxy cache" in err


def test_the_job_spec_mounts_the_admin_password_and_names_every_proxy_cache() -> None:
    """What the cluster runs is what these tests run: the proxy caches of the Job's environment are
    the registries the nodes' mirror configuration rewrites (roles/rke2), and the password is a file."""
    from aiinfn.services import harbor

    job = next(o for o in harbor.setup_objects() if o["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    caches = json.loads(env["HARBOR_PROXY_CACHES"])
    assert {c["registry"] for c in caches} == {"docker.io", "quay.io", "ghcr.io", "registry.k8s.io", "nvcr.io"}
    assert all(c["project"] == c["registry"].replace(".", "-") for c in caches)
    assert "HARBOR_ADMIN_PASSWORD" not in env
    mount = env["HARBOR_ADMIN_PASSWORD_FILE"].rsplit("/", 1)[0]
    assert any(m["mountPath"] == mount for m in container["volumeMounts"])


def test_wrong_password_fails_in_one_line(world: State, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "HARBOR_ADMIN_PASSWORD").write_text("wrong")
    assert harbor_setup.main() == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "HTTP 401" in err and "/projects" in err
    assert world.robots == [] and world.secrets == {}


def test_missing_setting_is_named(world: State, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HARBOR_ROBOT")
    assert harbor_setup.main() == 1
    assert "HARBOR_ROBOT" in capsys.readouterr().err
