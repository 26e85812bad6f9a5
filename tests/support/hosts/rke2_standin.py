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

The kubectl stand-in answers the verbs the playbooks use on nodes as kubectl does against an API server:
``get`` (a table, ``-o name``, ``-o json``, ``-o jsonpath={.a.b\\.c}``: a missing field prints nothing),
``label`` (``k=v``, ``k-``; changing an existing key's value without ``--overwrite`` is kubectl's error
"'k' already has a value (old), and --overwrite is false", exit 1; the same value is "not labeled"),
``cordon``, ``uncordon``, ``drain`` (cordons, then refuses while DaemonSet pods are there without
``--ignore-daemonsets`` or pods with emptyDir volumes without ``--delete-emptydir-data``, checks
``--timeout`` is a duration, evicts the other pods) and ``delete`` (``--ignore-not-found``). A node that
does not exist, never joined or was deleted, is ``Error from server (NotFound): nodes "<name>" not found``
on stderr and exit 1, for every verb. Every call is recorded with its full argv, exit code and stderr in
kubectl.calls.jsonl (``kubectl_calls``), and as a line without ``--kubeconfig`` in kubectl.log. Not
modelled: other resources, pods' real eviction (PodDisruptionBudgets, grace periods, the timeout's
expiry), watches, RBAC, and the exact table columns of ``get``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

KUBECTL = r'''#!/usr/bin/python3
# stand-in kubectl (aiinfn tests): see tests/support/hosts/rke2_standin.py, "The kubectl stand-in"
import json, os, re, sys
STATE = "/var/lib/rancher/rke2"
NODES = f"{STATE}/nodes.json"
argv = sys.argv[1:]
args, flags = [], {}
rest = list(argv)
while rest:  # kubectl's flags may come anywhere; --flag value, --flag=value, and -o value
    a = rest.pop(0)
    if a in ("--kubeconfig", "-o", "--output", "--timeout", "--grace-period", "-l", "--selector") and rest:
        flags[a.lstrip("-")] = rest.pop(0)
    elif a.startswith("--") and "=" in a:
        k, v = a[2:].split("=", 1)
        flags[k] = v
    elif a.startswith("--"):
        flags[a[2:]] = "true"
    else:
        args.append(a)
if "output" in flags:
    flags["o"] = flags.pop("output")
out, err, rc = [], [], 0


def finish(code, raw=None):
    if raw is not None:
        sys.stdout.write(raw)  # jsonpath output ends without a newline, as kubectl's does
    elif out:
        print("\n".join(out))
    if err:
        print("\n".join(err), file=sys.stderr)
    with open(f"{STATE}/kubectl.calls.jsonl", "a") as log:
        log.write(json.dumps({"argv": sys.argv, "rc": code, "stderr": "\n".join(err)}) + "\n")
    sys.exit(code)


with open(f"{STATE}/kubectl.log", "a") as log:  # the verb and its arguments, as a line (older tests read it)
    stripped = list(argv)
    if stripped[:1] == ["--kubeconfig"]:
        stripped = stripped[2:]
    log.write(" ".join(stripped) + "\n")
nodes = {k: v for k, v in (json.load(open(NODES)) if os.path.exists(NODES) else {}).items() if v is not None}


def save():
    tmp = f"{NODES}.tmp{os.getpid()}"
    json.dump(nodes, open(tmp, "w")); os.replace(tmp, NODES)


def not_found(name):
    err.append(f'Error from server (NotFound): nodes "{name}" not found')
    finish(1)


def usage(msg):
    err.append(f"error: {msg}")
    err.append("See 'kubectl --help' for usage.")
    finish(1)


def obj(name):
    n = nodes[name]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(n.get("labels", {}))},
            "spec": {"unschedulable": True} if n.get("unschedulable") else {},
            "taints": n.get("taints", [])}


def jsonpath(doc, expr):
    m = re.fullmatch(r"\{((?:\.(?:\\\.|[^.\\}])+)+)\}", expr)
    if not m:
        usage(f"error parsing jsonpath {expr}, unrecognized character")
    value = doc
    for part in re.findall(r"\.((?:\\\.|[^.\\])+)", m.group(1)):
        key = part.replace("\\.", ".")
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""  # kubectl prints nothing for a missing field
    return value if isinstance(value, str) else json.dumps(value)


if not args:
    usage("You must specify the type of resource to get.")
verb = args[0]
words = args[1:]
if words[:1] and words[0] in ("node", "nodes", "no"):
    words = words[1:]
elif words and "/" in words[0] and words[0].split("/", 1)[0] in ("node", "nodes", "no"):
    words = [words[0].split("/", 1)[1]] + words[1:]
elif verb in ("get", "label", "delete"):
    usage(f"the stand-in knows only nodes, not {' '.join(words[:1]) or 'nothing'}")
name = words[0] if words else ""
rest_words = words[1:]

if verb == "get":
    if name and name not in nodes:
        not_found(name)
    names = [name] if name else sorted(nodes)
    fmt = flags.get("o", "")
    if fmt.startswith("jsonpath="):
        if not name:
            usage("the stand-in evaluates jsonpath on one node")
        finish(0, jsonpath(obj(name), fmt.split("=", 1)[1]))
    elif fmt == "name":
        out.extend(f"node/{n}" for n in names)
    elif fmt == "json":
        out.append(json.dumps(obj(name) if name else {"kind": "List", "items": [obj(n) for n in names]}, indent=4))
    elif fmt == "":
        out.append(f"{'NAME':<24}STATUS")
        for n in names:
            out.append(f"{n:<24}Ready" + (",SchedulingDisabled" if nodes[n].get("unschedulable") else ""))
    else:
        usage(f"the stand-in does not print -o {fmt}")
    finish(0)

if verb == "label":
    if not name:
        usage("one or more resources must be specified as <resource> <name> or <resource>/<name>")
    if name not in nodes:
        not_found(name)
    changes = [w for w in rest_words if "=" in w or w.endswith("-")]
    if not changes:
        usage("at least one label update is required")
    labels = nodes[name].setdefault("labels", {})
    overwrite = flags.get("overwrite", "false") == "true"
    changed = False
    for c in changes:
        if "=" in c:
            key, value = c.split("=", 1)
            if key in labels and labels[key] != value and not overwrite:
                err.append(f"error: '{key}' already has a value ({labels[key]}), and --overwrite is false")
                finish(1)
            changed |= labels.get(key) != value
            labels[key] = value
        else:
            changed |= c[:-1] in labels
            labels.pop(c[:-1], None)
    save()
    out.append(f"node/{name} {'labeled' if changed else 'not labeled'}")
    finish(0)

DAEMONSET_FLAG = "ignore-daemonsets"
CNI = [{"namespace": "kube-system", "name": "rke2-canal-standin", "daemonset": True}]
if verb in ("cordon", "uncordon", "drain"):
    if not name:
        usage(f"resource(s) were provided, but no name was specified" if words else "USAGE: kubectl " + verb + " NODE")
    if name not in nodes:
        not_found(name)
    n = nodes[name]
    if verb == "uncordon":
        out.append(f"node/{name} {'uncordoned' if n.get('unschedulable') else 'already uncordoned'}")
        n["unschedulable"] = False
        save(); finish(0)
    out.append(f"node/{name} {'cordoned' if not n.get('unschedulable') else 'already cordoned'}")
    n["unschedulable"] = True
    save()
    if verb == "cordon":
        finish(0)
    timeout = flags.get("timeout", "0s")
    if not re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+|0", timeout):
        usage(f'invalid argument "{timeout}" for "--timeout" flag: time: invalid duration "{timeout}"')
    pods = n.get("pods", CNI)  # a joined node runs RKE2's CNI as a DaemonSet pod
    daemonsets = [p for p in pods if p.get("daemonset")]
    local = [p for p in pods if not p.get("daemonset") and p.get("emptydir")]
    problems = []
    if daemonsets and flags.get(DAEMONSET_FLAG) != "true":
        problems.append("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
                        + ", ".join(f"{p['namespace']}/{p['name']}" for p in daemonsets))
    if local and flags.get("delete-emptydir-data") != "true":
        problems.append("cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                        + ", ".join(f"{p['namespace']}/{p['name']}" for p in local))
    if problems:
        err.append(f'error: unable to drain node "{name}" due to error: ' + ", ".join(problems)
                   + ", continuing command...")
        err.append("There are pending nodes to be drained:")
        err.append(f" {name}")
        for p in problems:
            err.append("error: " + p)
        finish(1)
    if daemonsets:
        err.append("Warning: ignoring DaemonSet-managed Pods: "
                   + ", ".join(f"{p['namespace']}/{p['name']}" for p in daemonsets))
    for p in pods:
        if not p.get("daemonset"):
            out.append(f"evicting pod {p['namespace']}/{p['name']}")
    for p in pods:
        if not p.get("daemonset"):
            out.append(f"pod/{p['name']} evicted")
    n["pods"] = daemonsets
    save()
    out.append(f"node/{name} drained")
    finish(0)

if verb == "delete":
    if not name:
        usage("resource(s) were provided, but no name was specified")
    if name not in nodes:
        if flags.get("ignore-not-found") == "true":
            finish(0)
        not_found(name)
    del nodes[name]
    save()
    out.append(f'node "{name}" deleted')
    finish(0)

err.append(f"stand-in kubectl: unsupported {' '.join(argv)}")
finish(1)
'''

#: The stand-in's Node objects on a server (the cluster's API state): ``{name: {"labels": {...},
#: "unschedulable": bool, "taints": [...], "pods": [...]}}``. A node exists once it joined (rke2's server
#: registers itself and every node it accepts) or a test registered it (``register_nodes``).
NODES = "/var/lib/rancher/rke2/nodes.json"
#: Every kubectl call on a server, one JSON object a line: ``{"argv": [...], "rc": n, "stderr": "..."}``.
KUBECTL_CALLS = "/var/lib/rancher/rke2/kubectl.calls.jsonl"
#: The pods every stand-in node runs: RKE2's CNI as a DaemonSet, so a drain needs ``--ignore-daemonsets``.
NODE_PODS = [{"namespace": "kube-system", "name": "rke2-canal-standin", "daemonset": True}]


def install_kubectl(hosts: Any, server: str) -> None:
    """The kubectl stand-in where RKE2's server unpacks kubectl, on ``server``, and ``server`` itself registered
    as a node: for tests that need the first server's kubectl but not RKE2 (the rke2 role's own tests start it)."""
    path = hosts.path(server, "/var/lib/rancher/rke2/bin/kubectl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(KUBECTL)
    path.chmod(0o755)
    register_nodes(hosts, server, [server])


def register_nodes(hosts: Any, server: str, names: list[str], *, labels: dict[str, str] | None = None,
                   pods: list[dict[str, Any]] | None = None) -> None:
    """Register ``names`` as Node objects on ``server``, as a joined node's kubelet does, for tests whose GPU
    hosts do not run an RKE2 agent: with ``labels``, and the pods ``NODE_PODS`` plus ``pods`` (each
    ``{"namespace", "name", "emptydir": bool}``; a pod with an emptyDir volume makes a drain need
    ``--delete-emptydir-data``)."""
    path = hosts.path(server, NODES)
    path.parent.mkdir(parents=True, exist_ok=True)
    nodes = json.loads(path.read_text()) if path.exists() else {}
    for n in names:
        nodes[n] = {"labels": dict(labels or {}), "unschedulable": False, "taints": [],
                    "pods": [dict(p) for p in NODE_PODS] + [dict(p) for p in pods or []]}
    path.write_text(json.dumps(nodes))


def kubectl_calls(hosts: Any, server: str) -> list[dict[str, Any]]:
    """Every kubectl call made on ``server`` so far: its full argv, exit code and stderr."""
    if not hosts.exists(server, KUBECTL_CALLS):
        return []
    return [json.loads(line) for line in hosts.read(server, KUBECTL_CALLS).decode().splitlines() if line]


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
