"""Stand-in interLink releases for tests: interLink's binaries cannot be downloaded on these machines.

``build_release(artifacts)`` writes, in a site artifact source's layout, ``interlink/<VERSION>/interlink_Linux_x86_64``
and ``interlink-slurm-plugin/<PLUGIN_VERSION>/interlink-sidecar-slurm_Linux_x86_64``: two Python programs that read the
configuration files the real ones read (``INTERLINKCONFIGPATH``, ``SLURMCONFIGPATH``, the same keys), listen where they
say, and answer the calls interLink 0.6 makes between them (cmd/interlink/main.go: ``/pinglink`` on the API, which asks
the plugin; interlink-slurm-plugin cmd/main.go: ``/status``, ``/create``, ``/delete``, ``/getLogs``). The plugin's
``/create`` writes the job's script under ``DataRootFolder`` and runs the configured ``SbatchPath`` with the flavor's
``SlurmFlags`` and the script, as the real plugin submits; each writes what it read to ``DataRootFolder``.
Not the real programs: no virtual-kubelet protocol beyond these paths, no Singularity, no job state machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

VERSION = "0.6.0"
PLUGIN_VERSION = "0.6.1"
#: The HTCondor plugin is pinned by a commit (it has no binary releases): the stand-in's path uses it.
HTCONDOR_VERSION = "91ceda339d67993bba3175c6b582817be82bbfb3"

_COMMON = r'''#!/usr/bin/python3
# stand-in (aiinfn tests): reads its real configuration file, answers interLink's calls
import http.client, json, os, re, socket, socketserver, subprocess, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def read(path):
    """Top-level keys of the YAML the role writes (to_nice_yaml), and the flavors' sbatch flags."""
    out, flavors, current, flags = {}, {}, None, False
    for raw in open(path):
        line = raw.rstrip("\n")
        m = re.match(r"^([A-Za-z]+): ?(.*)$", line)
        if m:
            out[m[1]] = m[2].strip().strip("'\"")
            current, flags = None, False
        elif out.get("Flavors") == "" and re.match(r"^  [A-Za-z0-9_.-]+:$", line):
            current, flags = line.strip()[:-1], False
            flavors[current] = []
        elif current is not None and line.strip() == "SlurmFlags:":
            flags = True
        elif current is not None and flags and line.lstrip().startswith("- "):
            flavors[current].append(line.lstrip()[2:].strip().strip("'\""))
        elif current is not None and re.match(r"^    [A-Za-z]+:", line):
            flags = False
    out["_flavors"] = flavors
    return out

def serve(port, handler, socket_url=""):
    """On a unix socket when ``socket_url`` is unix://PATH, else TCP ``port`` on every address (as 0.6 does)."""
    if socket_url.startswith("unix://"):
        path = socket_url[len("unix://"):]
        if os.path.exists(path):
            os.remove(path)
        socketserver.ThreadingUnixStreamServer(path, handler).serve_forever()
    ThreadingHTTPServer(("", int(port)), handler).serve_forever()

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.socket_path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.socket_path)

def answer(h, code, doc):
    body = json.dumps(doc).encode()
    h.send_response(code); h.send_header("Content-Type", "application/json"); h.end_headers(); h.wfile.write(body)
'''

API = _COMMON + r'''
cfg = read(os.environ["INTERLINKCONFIGPATH"])
data = cfg["DataRootFolder"]
json.dump({k: v for k, v in cfg.items() if k != "_flavors"}, open(os.path.join(data, ".standin-api.json"), "w"))

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def _plugin(self, path, body=b""):
        if cfg["SidecarURL"].startswith("unix://"):  # interLink 0.6: unix:// or http:// (cmd/interlink/main.go)
            conn = UnixConnection(cfg["SidecarURL"][len("unix://"):])
            conn.request("POST" if body else "GET", path, body=body or None)
            return json.loads(conn.getresponse().read())
        url = f"{cfg['SidecarURL']}:{cfg['SidecarPort']}{path}"
        with urllib.request.urlopen(urllib.request.Request(url, data=body or None), timeout=10) as r:
            return json.loads(r.read())
    def do_GET(self):
        if self.path == "/pinglink":
            return answer(self, 200, {"api": "ok", "plugin": self._plugin("/status")})
        answer(self, 404, {"error": self.path})
    do_POST = do_GET

serve(cfg["InterlinkPort"], H)
'''

PLUGIN = _COMMON + r'''
cfg = read(os.environ["SLURMCONFIGPATH"])
data = cfg["DataRootFolder"].rstrip("/")
json.dump({k: v for k, v in cfg.items()}, open(os.path.join(data, ".standin-plugin.json"), "w"))

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/status":
            return answer(self, 200, {"plugin": "ok", "sbatch": cfg["SbatchPath"]})
        answer(self, 404, {"error": self.path})
    def do_POST(self):
        if self.path != "/create":
            return self.do_GET()
        pod = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        flavor = pod.get("flavor") or cfg["DefaultFlavor"]
        script = os.path.join(data, f"{pod.get('name', 'job')}.sh")
        with open(script, "w") as f:
            f.write("#!" + cfg["BashPath"] + "\n" + cfg["CommandPrefix"] + "\n" + cfg["SingularityPath"] + " exec "
                    + cfg["ImagePrefix"] + pod.get("image", "busybox") + " true\n")
        run = subprocess.run([cfg["SbatchPath"], *cfg["_flavors"].get(flavor, []), script], capture_output=True,
                             text=True, timeout=30)
        answer(self, 200 if run.returncode == 0 else 500, {"sbatch": run.returncode, "out": run.stdout.strip(),
                                                          "err": run.stderr.strip()})

serve(cfg["SidecarPort"], H, cfg.get("Socket", ""))
'''

#: interLink's HTCondor plugin (handles.py at the pinned commit): a Flask program with the same options
#: (argparse: --schedd-host, --collector-host, --auth-method, ..., --port; each sets the HTCondor
#: tools' _condor_* variable, as the real one does), the same ./SidecarConfig.yaml, the same routes, and
#: the same HTCondor calls (condor_submit -pool COLLECTOR -remote SCHEDD FILE -spool; condor_q JID --json;
#: condor_rm JID), found on PATH; run as a script it serves on every address with the debugger, as the
#: real one does. Not the real program: no pod translation beyond a submit file naming the image.
HTCONDOR = r'''#!/usr/bin/python3
# stand-in (aiinfn tests) of interLink's HTCondor plugin
import argparse, json, os, subprocess
import yaml
from flask import Flask, request

parser = argparse.ArgumentParser()
for name in ("schedd-name", "schedd-host", "collector-host", "cadir", "certfile", "keyfile", "auth-method", "debug",
             "condor-config", "proxy"):
    parser.add_argument("--" + name, type=str, default="")
parser.add_argument("--dummy-job", action="store_true")
parser.add_argument("--port", type=int, default=8000)
args = parser.parse_args()
for opt, var in (("schedd_name", "_condor_SCHEDD_NAME"), ("schedd_host", "_condor_SCHEDD_HOST"),
                 ("collector_host", "_condor_COLLECTOR_HOST"), ("cadir", "_condor_AUTH_SSL_CLIENT_CADIR"),
                 ("certfile", "_condor_AUTH_SSL_CLIENT_CERTFILE"), ("keyfile", "_condor_AUTH_SSL_CLIENT_KEYFILE"),
                 ("auth_method", "_condor_SEC_DEFAULT_AUTHENTICATION_METHODS"), ("condor_config", "CONDOR_CONFIG"),
                 ("proxy", "X509_USER_PROXY")):
    if getattr(args, opt):
        os.environ[var] = getattr(args, opt)
cfg = yaml.safe_load(open("./SidecarConfig.yaml"))
data = cfg["DataRootFolder"]
json.dump({"config": cfg, "args": vars(args)}, open(os.path.join(data, ".standin-htcondor.json"), "w"))
app = Flask(__name__)

def run(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout.strip(), out.stderr.strip()

def create():
    pod = request.get_json(force=True)
    name = pod.get("name", "job")
    sub = os.path.join(data, name + ".sub")
    with open(sub, "w") as f:
        f.write("universe = vanilla\nexecutable = /bin/sh\n+SingularityImage = \"docker://%s\"\nqueue 1\n"
                % pod.get("image", "busybox"))
    rc, out, err = run(["condor_submit", "-pool", args.collector_host, "-remote", args.schedd_host, sub, "-spool"])
    jid = out.split(" ")[-1].split(".")[0] if rc == 0 else ""
    if jid:
        open(os.path.join(data, name + ".jid"), "w").write(jid)
    return json.dumps({"rc": rc, "jid": jid, "err": err}), 200 if rc == 0 else 500

def status():
    if not request.args.get("name"):  # interLink's ping: no pod asked about
        return json.dumps({"plugin": "ok", "condor": os.environ.get("_condor_COLLECTOR_HOST", "")}), 200
    jid = open(os.path.join(data, request.args.get("name", "job") + ".jid")).read().strip()
    rc, out, err = run(["condor_q", jid, "--json"])
    return json.dumps({"rc": rc, "jobs": json.loads(out or "[]"), "err": err}), 200 if rc == 0 else 500

def delete():
    name = request.get_json(force=True).get("name", "job")
    jid = open(os.path.join(data, name + ".jid")).read().strip()
    rc, out, err = run(["condor_rm", jid])
    return json.dumps({"rc": rc, "out": out, "err": err}), 200 if rc == 0 else 500

app.add_url_rule("/create", view_func=create, methods=["POST"])
app.add_url_rule("/delete", view_func=delete, methods=["POST"])
app.add_url_rule("/status", view_func=status, methods=["GET"])

if __name__ == "__main__":
    app.run(port=args.port, host="0.0.0.0", debug=True)
'''

API_SHA256 = hashlib.sha256(API.encode()).hexdigest()
PLUGIN_SHA256 = hashlib.sha256(PLUGIN.encode()).hexdigest()
HTCONDOR_SHA256 = hashlib.sha256(HTCONDOR.encode()).hexdigest()


def build_release(root: Path, api: str = API) -> None:
    a = root / "interlink" / VERSION
    a.mkdir(parents=True, exist_ok=True)
    (a / "interlink_Linux_x86_64").write_text(api)
    p = root / "interlink-slurm-plugin" / PLUGIN_VERSION
    p.mkdir(parents=True, exist_ok=True)
    (p / "interlink-sidecar-slurm_Linux_x86_64").write_text(PLUGIN)
    h = root / "interlink-htcondor-plugin" / HTCONDOR_VERSION
    h.mkdir(parents=True, exist_ok=True)
    (h / "handles.py").write_text(HTCONDOR)
