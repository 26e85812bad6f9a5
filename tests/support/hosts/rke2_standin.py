"""A stand-in RKE2 release, laid out as the real one, for tests that cannot download RKE2.

``build_release(directory, version)`` writes ``<directory>/<version>/rke2.linux-amd64.tar.gz`` and
``sha256sum-amd64.txt`` exactly as RKE2's releases publish them: bin/rke2, bin/rke2-uninstall.sh,
bin/rke2-killall.sh, lib/systemd/system/rke2-server.service and rke2-agent.service. So the role's download,
checksum, unpacking, configuration and service logic run for real. Its ``rke2`` (a Python script) does what
the tests can observe of the real one: refuses to start without a token in /etc/rancher/rke2/config.yaml; as
a server, listens on the supervisor port 9345, writes server/node-token and a kubectl that records its calls
(the real server unpacks kubectl into /var/lib/rancher/rke2/bin; this one keeps nodes' labels and
cordons in a JSON file); as an agent, connects to the server URL
of its config, records that it joined, and stays up.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

KUBECTL = r'''#!/usr/bin/python3
# stand-in kubectl (aiinfn tests): nodes with labels and a schedulable flag, in a JSON file; every call logged
import json, os, sys
STATE = "/var/lib/rancher/rke2/nodes.json"
args = [a for a in sys.argv[1:]]
if args[:1] == ["--kubeconfig"]:
    args = args[2:]
nodes = json.load(open(STATE)) if os.path.exists(STATE) else {}
with open("/var/lib/rancher/rke2/kubectl.log", "a") as log:
    log.write(" ".join(args) + "\n")
def save():
    json.dump(nodes, open(STATE, "w"))
verb = args[0]
name = args[2] if len(args) > 2 and args[1] == "node" else (args[1] if len(args) > 1 else "")
if name and nodes.get(name, {}) is None and verb != "delete":  # deleted from the cluster
    print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr); sys.exit(1)
node = nodes.setdefault(name, {"labels": {}, "unschedulable": False}) if verb != "delete" else nodes.get(name)
if verb == "get":
    path = [a for a in args if a.startswith("jsonpath=")]
    if path and "mig" in path[0]:
        print(node["labels"].get("nvidia.com/mig.config", ""), end="")
    save(); sys.exit(0)
if verb == "label":
    key, value = args[3].split("=", 1)
    node["labels"][key] = value
    print(f"node/{name} labeled"); save(); sys.exit(0)
if verb in ("cordon", "drain"):
    node["unschedulable"] = True
    print(f"node/{name} {'cordoned' if verb == 'cordon' else 'drained'}"); save(); sys.exit(0)
if verb == "uncordon":
    node["unschedulable"] = False
    print(f"node/{name} uncordoned"); save(); sys.exit(0)
if verb == "delete":
    if nodes.get(name) is not None:
        print(f'node "{name}" deleted')
    nodes[name] = None  # a tombstone: the node is gone from the API
    save(); sys.exit(0)
print("stand-in kubectl: unsupported " + " ".join(args), file=sys.stderr); sys.exit(1)
'''

RKE2 = r'''#!/usr/bin/python3
# stand-in for RKE2 (aiinfn tests): see tests/support/hosts/rke2_standin.py
import json, os, socket, socketserver, sys, threading, time
VERSION = "@VERSION@"
KUBECTL = @KUBECTL@
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "--version":
    print(f"rke2 version {VERSION}"); sys.exit(0)
conf = {}
for line in open("/etc/rancher/rke2/config.yaml"):
    if ":" in line and not line.startswith((" ", "#", "-")):
        k, v = line.split(":", 1)
        conf[k.strip()] = v.strip().strip('"')
if not conf.get("token"):
    print("rke2: no token in /etc/rancher/rke2/config.yaml", file=sys.stderr); sys.exit(1)
state = "/var/lib/rancher/rke2"
os.makedirs(f"{state}/server", exist_ok=True); os.makedirs(f"{state}/bin", exist_ok=True)
with open(f"{state}/standin.json", "w") as f:
    json.dump({"mode": mode, "version": VERSION, "pid": os.getpid(), "started": time.time()}, f)
if mode == "server":
    with open(f"{state}/server/node-token", "w") as f:
        f.write(conf["token"] + "\n")
    kubectl = f"{state}/bin/kubectl"
    with open(kubectl, "w") as f:
        f.write(KUBECTL)
    os.chmod(kubectl, 0o755)
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"rke2-standin-supervisor\n")
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("0.0.0.0", 9345), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
elif mode == "agent":
    url = conf.get("server", "")
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                banner = s.recv(64).decode()
            break
        except OSError:
            time.sleep(1)
    with open(f"{state}/joined", "w") as f:
        f.write(f"{url} {banner}")
else:
    print(f"rke2: unknown command {mode}", file=sys.stderr); sys.exit(2)
while True:
    time.sleep(3600)
'''

UNIT = """[Unit]
Description=Rancher Kubernetes Engine v2 ({mode}) - aiinfn test stand-in
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/bin/rke2 {mode}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""

UNINSTALL = """#!/bin/sh
# stand-in rke2-uninstall.sh: stops the services and removes what the release installed, then itself
systemctl disable --now rke2-server.service rke2-agent.service 2>/dev/null || true
rm -rf /etc/rancher/rke2 /var/lib/rancher/rke2 /usr/local/lib/systemd/system/rke2-*.service \
  /usr/local/bin/rke2 /usr/local/bin/rke2-killall.sh /var/lib/aiinfn/rke2.version
systemctl daemon-reload
rm -f "$0"
"""


def _add(tar: tarfile.TarFile, name: str, data: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    raw = data.encode()
    info.size = len(raw)
    info.mode = mode
    tar.addfile(info, io.BytesIO(raw))


def build_release(directory: Path, version: str, *, arch: str = "amd64") -> Path:
    """Write the stand-in release of ``version`` under ``directory``; returns its version directory."""
    out = directory / version
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "bin/rke2", RKE2.replace("@VERSION@", version).replace("@KUBECTL@", repr(KUBECTL)), 0o755)
        _add(tar, "bin/rke2-uninstall.sh", UNINSTALL, 0o755)
        _add(tar, "bin/rke2-killall.sh", "#!/bin/sh\nsystemctl stop rke2-server rke2-agent\n", 0o755)
        for mode in ("server", "agent"):
            _add(tar, f"lib/systemd/system/rke2-{mode}.service", UNIT.format(mode=mode), 0o644)
    tarball = out / f"rke2.linux-{arch}.tar.gz"
    tarball.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    (out / f"sha256sum-{arch}.txt").write_text(
        f"{'0' * 64}  rke2-images.linux-{arch}.tar.zst\n{digest}  rke2.linux-{arch}.tar.gz\n"
    )
    return out
