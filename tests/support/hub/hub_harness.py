"""A real JupyterHub started from generated z2jh values, as the chart's hub pod runs it.

``start_hub(values, iam, workdir)`` lays out what the chart mounts in the hub pod and starts the
pinned JupyterHub (5.5.0) with the chart's own ``jupyterhub_config.py`` and ``z2jh.py``
(../shared/schemas/z2jh-4.4.0/hub/) and configurable-http-proxy (npm) beside it, as the proxy pod:

* ``/usr/local/etc/jupyterhub/secret/values.yaml``: the values merged onto the chart's defaults
  (values.yaml) with ``Chart`` and ``Release``, plus the secrets the chart generates
  (cookie secret, CryptKeeper key, proxy token, one API token per ``hub.services`` entry);
  ``.../config/<name>``: the chart's resource names; ``hub.extraFiles`` at their mount paths;
* the hub runs in a mount namespace of its own (``unshare``, root) in which a temporary directory is
  ``/usr/local/etc`` and another is ``/srv``: the chart's files read their fixed paths unchanged and
  the sqlite database (``hub.db.url``, the identity table) lands in the temporary ``/srv``;
* ``hub.extraEnv`` is resolved as the kubelet would (``secretKeyRef`` from ``secrets``), then
  ``env`` (addresses of the stand-ins: the provisioner's) is laid over it;
* the kubeconfig names ``kube_url``: the stand-in API (hub_kube) the platform's reads go to.

Replaced, and only these (one file ``jupyterhub_config.d/zz-aiinfn-harness.py``, loaded by the chart's
config before hub.extraConfig): addresses (hub, proxy, services, the idle culler's hub URL: 127.0.0.1
and free ports), the IAM host of the authenticator's URLs (the stand-in's; IAM's paths kept), the
spawner class (``hub_spawner.RecordingKubeSpawner``: KubeSpawner with its Kubernetes calls recorded)
and, when a test asks, ``Authenticator.auth_refresh_age`` (time compressed).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import yaml

HERE = Path(__file__).resolve().parent
CHART = Path(__file__).resolve().parents[3].parent / "shared" / "schemas" / "z2jh-4.4.0"
ETC = "/usr/local/etc"
CONFIG_DIR = f"{ETC}/jupyterhub"
#: The chart's resource names with fullnameOverride "" (the hub ConfigMap's keys), as get_name reads them.
NAMES = {
    "hub": "hub", "proxy-api": "proxy-api", "proxy-public": "proxy-public", "proxy-http": "proxy-http",
    "singleuser": "singleuser", "image-pull-secret": "image-pull-secret", "user-scheduler": "user-scheduler",
    "user-scheduler-deploy": "user-scheduler", "priority": "jupyterhub-default-priority",
    "user-placeholder-priority": "jupyterhub-user-placeholder-priority",
}
TOOLS = ("unshare", "mount", "configurable-http-proxy")


class HarnessError(RuntimeError):
    pass


def merge(a: Any, b: Any) -> Any:
    """Helm's merge of values onto defaults: mappings key by key, everything else replaced."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


def chart_values(values: Mapping[str, Any]) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    merged: dict[str, Any] = merge(defaults, dict(values))
    merged["Chart"] = {"Name": "jupyterhub", "Version": "4.4.0"}
    merged["Release"] = {"Name": "jupyterhub", "Namespace": "jupyterhub", "Service": "Helm"}
    return merged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_machine() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise HarnessError(f"missing {', '.join(missing)}: run scripts/install-hub-test-deps.sh")
    if os.geteuid() != 0:
        raise HarnessError("the hub harness needs root (a mount namespace for the chart's fixed paths)")
    if not CHART.is_dir():
        raise HarnessError(f"{CHART} is missing (../shared beside the checkout)")


@dataclass
class Hub:
    """A running hub: ``url`` is the proxy's public address; tokens and records for the tests."""

    url: str
    hub_url: str
    workdir: Path
    values: dict[str, Any]
    chart_secrets: dict[str, str]
    service_urls: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    start_seconds: float = 0.0

    # ------------------------------------------------------------ records of the spawner

    @property
    def record(self) -> Path:
        return self.workdir / "record"

    def pods(self) -> dict[str, dict[str, Any]]:
        """Pods the spawner created, by name (the manifests as sent to the API)."""
        folder = self.record / "pods"
        return {p.name.split(".", 1)[1][: -len(".json")]: json.loads(p.read_text())
                for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def pvcs(self) -> dict[str, dict[str, Any]]:
        folder = self.record / "pvcs"
        return {p.name.split(".", 1)[1][: -len(".json")]: json.loads(p.read_text())
                for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def log(self) -> str:
        return (self.workdir / "hub.log").read_text(errors="replace")

    def files(self) -> list[Path]:
        """Every file the hub and proxy wrote (database, logs, records, the laid-out config)."""
        return [p for p in self.workdir.rglob("*") if p.is_file()]

    # ------------------------------------------------------------ login and API

    def login(self, sub: str, iam_url: str) -> tuple[requests.Session, requests.Response]:
        """Drive the OAuth code flow as a browser would; returns the session and the callback's answer."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/oauth_login", allow_redirects=False, timeout=20)
        if r.status_code != 302 or not r.headers["location"].startswith(iam_url):
            raise HarnessError(f"oauth_login did not redirect to IAM: {r.status_code} {r.headers.get('location')}")
        authorize = r.headers["location"]
        r = s.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=20)
        if r.status_code != 302:
            raise HarnessError(f"IAM did not authorize: {r.status_code} {r.text[:300]}")
        r = s.get(r.headers["location"], allow_redirects=False, timeout=20)
        return s, r

    @staticmethod
    def authorize_query(authorize_url: str) -> dict[str, list[str]]:
        return parse_qs(urlsplit(authorize_url).query)

    def api(self, session: requests.Session, method: str, path: str, **kw: Any) -> requests.Response:
        """A hub API call with a browser session (cookie plus the XSRF header the hub requires)."""
        if "_xsrf" not in session.cookies:
            session.get(f"{self.url}/hub/home", timeout=20)
        headers = {"X-XSRFToken": session.cookies.get("_xsrf", ""), **kw.pop("headers", {})}
        return session.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw)

    def token_api(self, token: str, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}",
                                headers={"Authorization": f"token {token}"}, timeout=30, **kw)

    def new_token(self, session: requests.Session, user: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "harness"}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api(session, "POST", f"/users/{user}/tokens", json=body)
        r.raise_for_status()
        return str(r.json()["token"])

    def spawn(self, session: requests.Session, user: str, form: dict[str, str] | None = None,
              timeout: float = 60) -> dict[str, Any]:
        """POST the spawn form (as the browser does) and wait until the spawn ends; returns the user model."""
        session.get(f"{self.url}/hub/spawn/{user}", timeout=20)
        data = {"_xsrf": session.cookies.get("_xsrf", ""), **(form or {})}
        session.post(f"{self.url}/hub/spawn/{user}", data=data, timeout=30, allow_redirects=False)
        return self.wait_spawn(session, user, timeout)

    def wait_spawn(self, session: requests.Session, user: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            model = self.api(session, "GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            # the POST returns once the spawn is pending (the chart sets slow_spawn_timeout 0)
            ended = not model.get("pending") and not (server or {}).get("pending")
            if ended and (server is None or server.get("ready")):
                return dict(model)
            if time.monotonic() > deadline:
                raise HarnessError(f"spawn of {user} did not end in {timeout} s: {model}")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in reversed(self.processes):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in reversed(self.processes):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def _chart_secrets(values: Mapping[str, Any]) -> dict[str, str]:
    """The secrets the chart's hub Secret holds (generated as the chart does when unset)."""
    out = {
        "hub.config.JupyterHub.cookie_secret": secrets.token_hex(32),
        "hub.config.CryptKeeper.keys": secrets.token_hex(32),
        "hub.config.ConfigurableHTTPProxy.auth_token": secrets.token_hex(32),
    }
    for key in (values.get("hub", {}).get("services") or {}):
        out[f"hub.services.{key}.apiToken"] = secrets.token_hex(32)
    return out


def _env_value(spec: Any, name: str, cluster_secrets: Mapping[tuple[str, str], str]) -> str:
    if isinstance(spec, str):
        return spec
    ref = (spec or {}).get("valueFrom", {}).get("secretKeyRef")
    if ref and (ref["name"], ref["key"]) in cluster_secrets:
        return cluster_secrets[(ref["name"], ref["key"])]
    if "value" in (spec or {}):
        return str(spec["value"])
    raise HarnessError(f"hub.extraEnv.{name}: no value for {spec} (pass it in secrets)")


def _write_extra_files(files: Mapping[str, Any], etc: Path) -> None:
    for key, f in files.items():
        mount = str(f["mountPath"])
        if not mount.startswith(ETC + "/"):
            raise HarnessError(f"hub.extraFiles.{key}: the harness mounts files only under {ETC} ({mount})")
        target = etc / mount[len(ETC) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        if "stringData" in f:
            target.write_text(str(f["stringData"]))
        elif "binaryData" in f:
            target.write_bytes(base64.b64decode(f["binaryData"]))
        else:
            target.write_text(json.dumps(f["data"]) if mount.endswith(".json") else yaml.safe_dump(f["data"]))
        if "mode" in f:
            target.chmod(int(f["mode"]))


def _harness_config(addresses: Mapping[str, Any]) -> str:
    literal = repr(json.dumps(addresses, sort_keys=True))
    return f'''# aiinfn test harness: addresses, the IAM host, the spawner class (tests/support/hub/hub_harness.py)
import json
from urllib.parse import urlsplit

_h = json.loads({literal})
c.JupyterHub.bind_url = _h["public"]
c.JupyterHub.hub_bind_url = _h["hub"]
c.JupyterHub.hub_connect_url = _h["hub"]
c.ConfigurableHTTPProxy.api_url = _h["proxy_api"]
c.JupyterHub.spawner_class = "hub_spawner.RecordingKubeSpawner"
_g = c.GenericOAuthenticator
for _trait in ("authorize_url", "token_url", "userdata_url"):
    _g[_trait] = _h["iam"] + urlsplit(_g[_trait]).path
_g.oauth_callback_url = _h["public"] + urlsplit(_g.oauth_callback_url).path
for _s in c.JupyterHub.services:
    if _s["name"] == "jupyterhub-idle-culler":
        _s["command"] = [a if not a.startswith("--url=") else "--url=" + _h["hub"] + "/hub/api"
                         for a in _s["command"]]
    elif _s["name"] in _h["services"]:
        _s["url"] = _h["services"][_s["name"]]
        _s.setdefault("environment", {{}})["AIINFN_TOKENS_BIND"] = "127.0.0.1"
if _h.get("auth_refresh_age") is not None:
    c.Authenticator.auth_refresh_age = _h["auth_refresh_age"]
'''


def _wait(url: str, deadline: float, procs: list[subprocess.Popen[bytes]], workdir: Path,
          any_answer: bool = False) -> None:
    while True:
        for p in procs:
            if p.poll() is not None:
                raise HarnessError(f"a harness process exited ({p.args!r}):\n" + _tail(workdir))
        try:
            if requests.get(url, timeout=2).status_code == 200 or any_answer:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise HarnessError(f"{url} did not answer in time:\n" + _tail(workdir))
        time.sleep(0.1)


def _tail(workdir: Path) -> str:
    out = []
    for name in ("hub.log", "proxy.log"):
        path = workdir / name
        if path.exists():
            out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(out)


def start_hub(
    values: Mapping[str, Any],
    iam_url: str,
    workdir: Path,
    cluster_secrets: Mapping[tuple[str, str], str],
    *,
    auth_refresh_age: int | None = None,
    timeout: float = 60,
    kube_url: str = "http://127.0.0.1:9",
    env: Mapping[str, str] | None = None,
) -> Hub:
    """Start the hub of ``values`` against the IAM stand-in at ``iam_url`` (see the module docstring)."""
    from aiinfn.services import jupyterhub

    # The Secrets the site stack generates for the hub (the batch service's API token), made here as the
    # stack makes them, unless the test passes its own value
    generated = {(jupyterhub.BATCH_TOKEN_SECRET, jupyterhub.BATCH_TOKEN_KEY): secrets.token_hex(24)}
    cluster_secrets = {**generated, **cluster_secrets}
    check_machine()
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    etc, srv, record = workdir / "etc", workdir / "srv", workdir / "record"
    conf = etc / "jupyterhub"
    for d in (conf / "config", conf / "secret", conf / "jupyterhub_config.d", srv / "jupyterhub", record):
        d.mkdir(parents=True, exist_ok=True)
    merged = chart_values(values)
    chart_secrets = _chart_secrets(merged)
    shutil.copy(CHART / "hub" / "jupyterhub_config.py", conf / "jupyterhub_config.py")
    shutil.copy(CHART / "hub" / "z2jh.py", conf / "z2jh.py")
    (conf / "secret" / "values.yaml").write_text(yaml.safe_dump(merged))
    for key, value in chart_secrets.items():
        (conf / "secret" / key).write_text(value)
    for key, value in NAMES.items():
        (conf / "config" / key).write_text(value)
    _write_extra_files(merged["hub"].get("extraFiles") or {}, etc)
    for mount in merged["hub"].get("extraVolumeMounts") or []:  # the hub's claims: empty directories here
        path = str(mount["mountPath"])
        if not path.startswith("/srv/"):
            raise HarnessError(f"hub.extraVolumeMounts: the harness provides volumes only under /srv ({path})")
        (srv / path[len("/srv/"):]).mkdir(parents=True, exist_ok=True)

    hub_port, proxy_port, api_port = free_port(), free_port(), free_port()
    services = {k: f"http://127.0.0.1:{free_port()}" for k, s in (merged["hub"].get("services") or {}).items()
                if s.get("url")}
    public, hub_url = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{hub_port}"
    (conf / "jupyterhub_config.d" / "zz-aiinfn-harness.py").write_text(_harness_config({
        "public": public, "hub": hub_url, "proxy_api": f"http://127.0.0.1:{api_port}", "iam": iam_url,
        "services": services, "auth_refresh_age": auth_refresh_age,
    }))
    (workdir / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": kube_url}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {}}],
    }))

    venv_bin = str(Path(sys.executable).parent)
    base_env = {
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(srv / "jupyterhub"), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
    }
    proxy_token = chart_secrets["hub.config.ConfigurableHTTPProxy.auth_token"]
    procs: list[subprocess.Popen[bytes]] = []
    hub = Hub(public, hub_url, workdir, merged, chart_secrets, services, procs)
    try:
        with (workdir / "proxy.log").open("wb") as log:
            procs.append(subprocess.Popen(
                ["configurable-http-proxy", "--ip=127.0.0.1", "--api-ip=127.0.0.1", f"--api-port={api_port}",
                 f"--default-target={hub_url}", f"--error-target={hub_url}/hub/error", f"--port={proxy_port}"],
                env={**base_env, "CONFIGPROXY_AUTH_TOKEN": proxy_token}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))
        hub_env = {
            **base_env,
            "POD_NAMESPACE": "jupyterhub", "HELM_RELEASE_NAME": "jupyterhub",
            "CONFIGPROXY_AUTH_TOKEN": proxy_token,
            "HUB_SERVICE_PORT": "8081", "PROXY_API_SERVICE_PORT": "8001", "PROXY_PUBLIC_SERVICE_PORT": "80",
            "KUBECONFIG": str(workdir / "kubeconfig"), "AIINFN_HUB_RECORD": str(record),
            "PYTHONPATH": str(HERE),
        }
        for name, spec in (merged["hub"].get("extraEnv") or {}).items():
            hub_env[name] = _env_value(spec, name, cluster_secrets)
        hub_env.update({"AIINFN_HUB_KUBE_URL": kube_url, "AIINFN_CLUSTER_CACHE_SECONDS": "0", **(env or {})})
        script = ('mount --bind "$0" /usr/local/etc && mount --bind "$1" /srv && cd /srv/jupyterhub'
                  ' && shift && exec "$@"')
        with (workdir / "hub.log").open("wb") as log:
            procs.append(subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(etc), str(srv),
                 str(Path(venv_bin) / "jupyterhub"), "--config", f"{CONFIG_DIR}/jupyterhub_config.py",
                 "--upgrade-db"],
                env=hub_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True))
        deadline = time.monotonic() + timeout
        _wait(f"{public}/hub/health", deadline, procs, workdir)
        for key, url in services.items():  # the hub starts its managed services; a test starts the others
            if (merged["hub"]["services"][key]).get("command"):
                _wait(url, deadline, procs, workdir, any_answer=True)
        hub.start_seconds = time.monotonic() - started
        return hub
    except BaseException:
        hub.stop()
        raise
