"""A stand-in RKE2 release, laid out as the real one, for tests that cannot download RKE2.

``build_release(directory, version)`` writes ``<directory>/<version>/rke2.linux-amd64.tar.gz`` and
``sha256sum-amd64.txt`` exactly as RKE2's releases publish them: bin/rke2, bin/rke2-uninstall.sh,
bin/rke2-killall.sh, lib/systemd/system/rke2-server.service and rke2-agent.service. So the role's download,
checksum, unpacking, configuration and service logic run for real. The roles check the tarball against a pinned
sha256 (aiinfn.versions, or the roles' ``rke2_sha256_override`` the tests pass: ``tarball_sha256``), never against
the checksum file beside it.

Its ``rke2`` (a Python script) does what the tests can observe of the real one (v1.33):

- reads /etc/rancher/rke2/config.yaml and refuses to start without a token;
- ``profile: cis`` checks the kernel parameters RKE2 checks (vm.panic_on_oom=0, vm.overcommit_memory=1,
  kernel.panic=10, kernel.panic_on_oops=1) and, on a server, that the etcd user and group exist, failing as
  rke2 does. The real one reads /proc/sys; the test hosts share this machine's kernel, so the stand-in reads what
  systemd-sysctl would apply at boot (/etc/sysctl.d/*.conf);
- a server validates its ``pod-security-admission-config-file`` (the AdmissionConfiguration / PodSecurity
  structure the API server reads; JSON, a subset of YAML, as the role writes it) and records its levels;
- a server keeps its server ``token`` and ``agent-token`` (the agent token defaults to the server token, as in
  RKE2) in server/token and server/agent-token, listens on the supervisor port 9345, and answers each join: its
  banner, then the joiner's request (node name, role, token, labels, taints), then ``OK`` or ``DENIED <why>``.
  A server joins only with the server token; an agent with the agent token (or the server token). Accepted
  nodes are recorded in server/joined-nodes.json and registered in nodes.json, the Node objects the kubectl
  stand-in serves (with the labels and taints the joiner asked for); refusals go to server/join-refused.log;
- a joiner (an agent, or a server with ``server:``) connects to the server URL of its config (retrying until
  the port answers), sends its request, and on ``OK`` records ``joined`` and writes agent/kubelet.kubeconfig
  (as the real agent does once the supervisor accepted its token); on a refusal it exits non-zero with rke2's
  kind of fatal message, and systemd restarts it;
- the server writes a kubectl into /var/lib/rancher/rke2/bin that keeps nodes' labels and cordons in
  nodes.json and logs its calls (the real server unpacks kubectl there).

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
import glob, json, os, socket, socketserver, sys, threading, time
VERSION = "@VERSION@"
KUBECTL = @KUBECTL@
CIS_SYSCTL = {"vm.panic_on_oom": "0", "vm.overcommit_memory": "1", "kernel.panic": "10", "kernel.panic_on_oops": "1"}
LEVELS = ("privileged", "baseline", "restricted")
STATE = "/var/lib/rancher/rke2"
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "--version":
    print(f"rke2 version {VERSION}"); sys.exit(0)


def fatal(msg):
    print(f'level=fatal msg="{msg}"', file=sys.stderr); sys.exit(1)


def write(path, text, perm=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, perm); os.replace(tmp, path)


conf, lists, key = {}, {}, None
for line in open("/etc/rancher/rke2/config.yaml"):
    if line.startswith("#") or not line.strip():
        continue
    if line.startswith("  - ") and key:
        lists.setdefault(key, []).append(json.loads(line[4:]))
    elif ":" in line and not line.startswith(" "):
        key, v = line.split(":", 1)
        key, v = key.strip(), v.strip()
        if v:
            conf[key] = json.loads(v) if v.startswith('"') else v
if mode not in ("server", "agent"):
    print(f"rke2: unknown command {mode}", file=sys.stderr); sys.exit(2)
if not conf.get("token"):
    fatal("no token in /etc/rancher/rke2/config.yaml")
profile = conf.get("profile", "")
if profile not in ("", "cis", "etcd"):
    fatal("invalid value provided for --profile flag")
if profile == "cis":
    # the real rke2 reads /proc/sys; the test hosts share this machine's kernel, so the stand-in reads what
    # systemd-sysctl applies at boot (/etc/sysctl.d/*.conf in name order, later files win)
    have = {}
    for path in sorted(glob.glob("/etc/sysctl.d/*.conf"), key=os.path.basename):
        for raw in open(path):
            if "=" in raw and not raw.lstrip().startswith(("#", ";")):
                k, v = raw.split("=", 1)
                have[k.strip()] = v.strip()
    bad = [f"invalid kernel parameter value {k}={have.get(k, 'unset')} - expected {v}"
           for k, v in sorted(CIS_SYSCTL.items()) if have.get(k) != v]
    if bad:
        fatal("; ".join(bad))
if profile in ("cis", "etcd") and mode == "server":
    users = {ln.split(":")[0] for ln in open("/etc/passwd")}
    groups = {ln.split(":")[0] for ln in open("/etc/group")}
    if "etcd" not in users or "etcd" not in groups:
        what = "user: unknown user etcd" if "etcd" not in users else "group: unknown group etcd"
        fatal(f"missing required: {what}")
psa = None
if mode == "server":
    psa_file = conf.get("pod-security-admission-config-file")
    if psa_file:
        try:
            doc = json.load(open(psa_file))
            (plugin,) = doc["plugins"]
            pc = plugin["configuration"]
            assert doc["apiVersion"] == "apiserver.config.k8s.io/v1" and doc["kind"] == "AdmissionConfiguration"
            assert plugin["name"] == "PodSecurity" and pc["kind"] == "PodSecurityConfiguration"
            assert pc["apiVersion"] == "pod-security.admission.config.k8s.io/v1"
            assert all(pc["defaults"][m] in LEVELS for m in ("enforce", "audit", "warn"))
            assert set(pc["exemptions"]) <= {"usernames", "runtimeClasses", "namespaces"}
            psa = pc
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            fatal(f"kube-apiserver: invalid admission configuration {psa_file}: {type(exc).__name__} {exc}")
    elif profile == "cis":
        psa = {"defaults": {"enforce": "restricted"},  # RKE2's own default file (pkg/rke2/psa.go)
               "exemptions": {"namespaces": ["kube-system", "cis-operator-system", "tigera-operator"]}}
    else:
        psa = {"defaults": {"enforce": "privileged"}, "exemptions": {}}
os.makedirs(f"{STATE}/server", exist_ok=True); os.makedirs(f"{STATE}/bin", exist_ok=True)
name = socket.gethostname()
me = {"role": mode, "labels": dict(x.split("=", 1) for x in lists.get("node-label", [])),
      "taints": lists.get("node-taint", [])}
record = {"mode": mode, "version": VERSION, "pid": os.getpid(), "started": time.time(), "profile": profile,
          "server": conf.get("server", ""), "psa": psa,
          "cidrs": {k: conf[k] for k in ("cluster-cidr", "service-cidr") if k in conf}}
write(f"{STATE}/standin.json", json.dumps(record), 0o644)
lock = threading.Lock()


def register(node, info, address):
    """The node in the cluster: its join record and its Node object (the kubectl stand-in's nodes.json)."""
    with lock:
        path = f"{STATE}/server/joined-nodes.json"
        joined = json.load(open(path)) if os.path.exists(path) else {}
        joined[node] = {"role": info["role"], "address": address, "at": time.time()}
        write(path, json.dumps(joined, indent=1, sort_keys=True), 0o600)
        path = f"{STATE}/nodes.json"
        nodes = json.load(open(path)) if os.path.exists(path) else {}
        old = nodes.get(node) or {"labels": {}, "unschedulable": False}
        old["labels"] = {**info.get("labels", {}), **old.get("labels", {})}
        old["taints"] = info.get("taints", [])
        nodes[node] = old
        write(path, json.dumps(nodes), 0o644)


def refused(node, role, address, why):
    with lock, open(f"{STATE}/server/join-refused.log", "a") as log:
        log.write(json.dumps({"node": node, "role": role, "address": address, "why": why, "at": time.time()}) + "\n")


if mode == "agent" or conf.get("server"):
    # join: the server's banner, then this node's request with its token; the server answers OK or DENIED
    url = conf.get("server", "")
    if not url:
        fatal("an agent needs server: in config.yaml")
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                f = s.makefile("rw")
                banner = f.readline()
                f.write(json.dumps({"node": name, "token": conf["token"], **me}) + "\n"); f.flush()
                answer = f.readline().strip()
            break
        except OSError:
            time.sleep(1)
    if answer != "OK":
        fatal(f"failed to join {url}: the server refused this node: {answer.removeprefix('DENIED ')}")
    write(f"{STATE}/joined", f"{url} {banner}", 0o644)
    # the real agent writes the kubelet's kubeconfig once the supervisor accepted its token
    write(f"{STATE}/agent/kubelet.kubeconfig", f"# stand-in: kubelet of {name}, joined {url}\n")
if mode == "server":
    server_token = conf["token"]
    agent_token = conf.get("agent-token") or server_token  # the real default: the agent token is the server's
    write(f"{STATE}/server/token", server_token + "\n")
    write(f"{STATE}/server/agent-token", agent_token + "\n")
    write(f"{STATE}/server/node-token", server_token + "\n")
    write(f"{STATE}/bin/kubectl", KUBECTL, 0o755)
    if not conf.get("server"):
        register(name, me, "127.0.0.1")
        write(f"{STATE}/agent/kubelet.kubeconfig", f"# stand-in: kubelet of {name}\n")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"rke2-standin-supervisor\n")
            try:
                req = json.loads(self.rfile.readline())
                node, role, token = str(req["node"]), req["role"], req["token"]
            except (ValueError, KeyError, TypeError):
                return  # a probe (e.g. the role's wait for this port), not a join
            address = self.client_address[0]
            if role == "server" and token != server_token:
                why = "a server joins only with the server token"
            elif role == "agent" and token not in (agent_token, server_token):
                why = "token is not valid"
            elif role not in ("server", "agent"):
                why = f"unknown role {role}"
            else:
                register(node, req, address)
                self.wfile.write(b"OK\n")
                return
            refused(node, role, address, why)
            self.wfile.write(f"DENIED {why}\n".encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("0.0.0.0", 9345), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
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


def tarball_sha256(release: Path, arch: str = "amd64") -> str:
    """sha256 of the stand-in tarball in ``release`` (a version directory of ``build_release``), as published
    in the sha256sum file beside it (what a test passes as the role's pinned value)."""
    for line in (release / f"sha256sum-{arch}.txt").read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name == f"rke2.linux-{arch}.tar.gz":
            return digest
    raise LookupError(f"{release}: no rke2.linux-{arch}.tar.gz in sha256sum-{arch}.txt")


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
