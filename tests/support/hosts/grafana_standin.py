"""A stand-in for Grafana's Debian package, for the grafana role on the test hosts.

No Grafana package installs here (Grafana Labs' apt repository is not reachable, Debian does not ship
Grafana), so ``build(directory)`` writes a local apt repository (``Packages`` index and one ``.deb`` made
with ``dpkg-deb``) holding a package named ``grafana`` that the role installs the way it installs the real
one (``apt install grafana`` from a configured source): the ``grafana`` system user and group, the
``grafana-server`` systemd unit and ``/usr/sbin/grafana-server``.

That server is a small Python program, not Grafana. It reads what the role and the grafana.grafana
collection write, where Grafana reads it, expanding ``$__env{NAME}`` in grafana.ini and ``$NAME`` /
``${NAME}`` in provisioning files from its environment as Grafana does: ``/etc/grafana/grafana.ini``
(``[server]`` protocol, address,
port, certificate and key; ``[security]`` admin user and password; ``[auth.generic_oauth]``), the
datasource and dashboard provisioning files, the dashboards' JSON. It serves over HTTPS:

* ``/api/health``; ``/api/datasources``, ``/api/search``, ``/api/dashboards/uid/<uid>`` (admin basic auth),
  the provisioned objects as Grafana lists them (secure fields left out);
* ``/api/datasources/proxy/uid/<uid>/<path>``: the request forwarded to the datasource's URL with its basic
  auth and its CA certificate, as Grafana's data proxy does (so a real Prometheus answers it);
* ``/login/generic_oauth``: the redirect to the IAM authorization endpoint with the client id and scopes.

What it does not do (the gap the tests name): Grafana's own OAuth code exchange, its evaluation of
``role_attribute_path`` (the tests evaluate the JMESPath expression with the jmespath package), its UI,
its SQL store, its full validation of the provisioning files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VERSION = "12.0.0+aiinfn.standin"

SERVER = r'''#!/usr/bin/python3
# aiinfn test stand-in for grafana-server (tests/support/hosts/grafana_standin.py): not Grafana.
import base64, configparser, glob, http.server, json, os, re, ssl, sys, urllib.error, urllib.parse, urllib.request
import yaml

config = "/etc/grafana/grafana.ini"
for arg in sys.argv[1:]:
    if arg.startswith("--config="):
        config = arg.split("=", 1)[1]
ini = configparser.ConfigParser(interpolation=None, strict=False)
try:  # as Grafana's, the file may start with keys of no section (instance_name, app_mode)
    ini.read_string("[_top]\n" + open(config).read(), source=config)
except OSError as e:
    sys.exit(f"grafana-server stand-in: cannot read {config}: {e}")
ENV = re.compile(r"\$__env\{([A-Za-z0-9_]+)\}")
for section in ini.sections():  # grafana.ini's variable expansion: $__env{NAME}
    for key, value in ini.items(section, raw=True):
        ini.set(section, key, ENV.sub(lambda m: os.environ.get(m.group(1), ""), value))
server = ini["server"] if ini.has_section("server") else {}
security = ini["security"] if ini.has_section("security") else {}
paths = ini["paths"] if ini.has_section("paths") else {}
provisioning = paths.get("provisioning", "/etc/grafana/provisioning")
admin = (security.get("admin_user", "admin"), security.get("admin_password", ""))
if not admin[1]:
    sys.exit("grafana-server stand-in: [security] admin_password is empty")

VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def expand(v):  # provisioning's environment lookups: $NAME, ${NAME}
    if isinstance(v, str):
        return VAR.sub(lambda m: os.environ.get(m.group(1) or m.group(2), ""), v)
    if isinstance(v, dict):
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


datasources = []
for f in sorted(glob.glob(f"{provisioning}/datasources/*.y*ml")):
    datasources += expand((yaml.safe_load(open(f)) or {}).get("datasources") or [])
dashboards = {}
for f in sorted(glob.glob(f"{provisioning}/dashboards/*.y*ml")):
    for p in (yaml.safe_load(open(f)) or {}).get("providers") or []:
        for j in sorted(glob.glob(os.path.join(p["options"]["path"], "**", "*.json"), recursive=True)):
            model = json.load(open(j))
            dashboards[model["uid"]] = model
oauth = dict(ini["auth.generic_oauth"]) if ini.has_section("auth.generic_oauth") else {}


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body, ctype="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def admin(self):
        want = "Basic " + base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
        return self.headers.get("Authorization") == want

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/health":
            return self.reply(200, {"database": "ok", "version": "standin"})
        if url.path == "/login/generic_oauth" and oauth.get("enabled") == "true":
            q = urllib.parse.urlencode({"client_id": oauth.get("client_id", ""), "response_type": "code",
                                        "scope": oauth.get("scopes", ""), "state": "standin",
                                        "redirect_uri": server.get("root_url", "").rstrip("/")
                                        + "/login/generic_oauth"})
            return self.reply(302, b"", headers=[("Location", f"{oauth.get('auth_url', '')}?{q}")])
        if not self.admin():
            return self.reply(401, {"message": "Unauthorized"})
        if url.path == "/api/datasources":
            return self.reply(200, [{k: v for k, v in d.items() if k != "secureJsonData"} for d in datasources])
        if url.path == "/api/search":
            found = [{"uid": u, "title": d.get("title"), "type": "dash-db"} for u, d in dashboards.items()]
            return self.reply(200, found)
        if url.path.startswith("/api/dashboards/uid/"):
            uid = url.path.rsplit("/", 1)[1]
            return self.reply(200, {"dashboard": dashboards[uid]}) if uid in dashboards else self.reply(404, {})
        if url.path.startswith("/api/datasources/proxy/uid/"):
            uid, _, rest = url.path[len("/api/datasources/proxy/uid/"):].partition("/")
            ds = next((d for d in datasources if d.get("uid") == uid), None)
            if ds is None:
                return self.reply(404, {"message": "datasource not found"})
            secure, extra = ds.get("secureJsonData") or {}, ds.get("jsonData") or {}
            req = urllib.request.Request(ds["url"].rstrip("/") + "/" + rest + (f"?{url.query}" if url.query else ""))
            if ds.get("basicAuth"):
                token = f"{ds.get('basicAuthUser', '')}:{secure.get('basicAuthPassword', '')}"
                req.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
            ctx = ssl.create_default_context(cadata=secure["tlsCACert"]) if extra.get("tlsAuthWithCACert") \
                else ssl.create_default_context()
            try:
                with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
                    return self.reply(resp.status, resp.read())
            except urllib.error.HTTPError as e:
                return self.reply(e.code, e.read())
            except Exception as e:
                return self.reply(502, {"message": f"{type(e).__name__}: {e}"})
        return self.reply(404, {"message": "Not found"})

    def log_message(self, fmt, *args):
        sys.stderr.write("grafana-server stand-in: " + fmt % args + "\n")


addr = server.get("http_addr", "0.0.0.0") or "0.0.0.0"
httpd = http.server.ThreadingHTTPServer((addr, int(server.get("http_port", "3000"))), Handler)
if server.get("protocol", "http") == "https":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server["cert_file"], server["cert_key"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(f"grafana-server stand-in on {addr}:{server.get('http_port')}, {len(datasources)} datasources, "
      f"{len(dashboards)} dashboards", file=sys.stderr, flush=True)
httpd.serve_forever()
'''

UNIT = """[Unit]
Description=Grafana instance (aiinfn test stand-in)
After=network-online.target

[Service]
User=grafana
Group=grafana
ExecStart=/usr/sbin/grafana-server --config=/etc/grafana/grafana.ini
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent group grafana >/dev/null || addgroup --system --quiet grafana
  id grafana >/dev/null 2>&1 || adduser --system --home /usr/share/grafana --no-create-home --ingroup grafana \
    --disabled-password --shell /bin/false --quiet grafana
  mkdir -p /var/lib/grafana /var/log/grafana /etc/grafana
  chown grafana:grafana /var/lib/grafana /var/log/grafana
fi
"""


def build(directory: Path) -> Path:
    """Write the stand-in ``grafana`` package and its apt index (``Packages``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: grafana\nVersion: {VERSION}\nArchitecture: all\nMaintainer: aiinfn tests <tests@aiinfn>\n"
            "Depends: python3, python3-yaml, adduser\nSection: misc\nPriority: optional\n"
            "Description: aiinfn test stand-in for Grafana (not Grafana)\n")
        (root / "DEBIAN" / "postinst").write_text(POSTINST)
        (root / "DEBIAN" / "postinst").chmod(0o755)
        for rel, text, mode in (("usr/sbin/grafana-server", SERVER, 0o755),
                                ("lib/systemd/system/grafana-server.service", UNIT, 0o644)):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        deb = directory / f"grafana_{VERSION}_all.deb"
        subprocess.run([shutil.which("dpkg-deb") or "dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                       check=True, capture_output=True)
        control = (root / "DEBIAN" / "control").read_text()
    data = deb.read_bytes()
    (directory / "Packages").write_text(
        control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n")
    return directory


if __name__ == "__main__":  # build the repository into the directory named on the command line
    import sys

    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())))
