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

_COMMON = r'''#!/usr/bin/python3
# stand-in (aiinfn tests): reads its real configuration file, answers interLink's calls
import json, os, re, subprocess, sys, urllib.request
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

def serve(port, handler):
    ThreadingHTTPServer(("", int(port)), handler).serve_forever()

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

serve(cfg["SidecarPort"], H)
'''

API_SHA256 = hashlib.sha256(API.encode()).hexdigest()
PLUGIN_SHA256 = hashlib.sha256(PLUGIN.encode()).hexdigest()


def build_release(root: Path, api: str = API) -> None:
    a = root / "interlink" / VERSION
    a.mkdir(parents=True, exist_ok=True)
    (a / "interlink_Linux_x86_64").write_text(api)
    p = root / "interlink-slurm-plugin" / PLUGIN_VERSION
    p.mkdir(parents=True, exist_ok=True)
    (p / "interlink-sidecar-slurm_Linux_x86_64").write_text(PLUGIN)
