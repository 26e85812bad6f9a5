"""Stand-ins for what the GPU roles need and a test host cannot have: NVIDIA's apt packages and the GPUs.

``build_nvidia_repo(directory, driver, toolkit)`` writes a flat apt repository (``Packages`` index made
here) with packages named and versioned like NVIDIA's: ``nvidia-driver`` (its ``nvidia-smi`` is the fake
below), ``nvidia-persistenced`` (a systemd unit) and ``nvidia-container-toolkit``
(``nvidia-container-runtime``, ``nvidia-ctk``). So the role's apt sources, pinned installs and holds run for
real against dpkg and apt.

The fake ``nvidia-smi`` keeps per-GPU MIG state in /var/lib/fake-nvidia/state.json (GPUs declared by the
test in /etc/fake-nvidia/gpus.json), logs every call, and answers the commands the nvidia_mig role uses in
nvidia-smi's formats. Whether a set of GPU instances fits a GPU is decided by aiinfn's own MIG catalogue
(the exact placement search, aiinfn.catalogue.mig): the test writes every layout the catalogue accepts for
the GPU model, and the fake refuses any other with nvidia-smi's "Insufficient Resources".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig

FAKE_SMI = r'''#!/usr/bin/python3
# fake nvidia-smi (aiinfn tests): see tests/support/hosts/gpu_standins.py
import json, os, sys
STATE = "/var/lib/fake-nvidia/state.json"
args = sys.argv[1:]
gpus = json.load(open("/etc/fake-nvidia/gpus.json"))
os.makedirs(os.path.dirname(STATE), exist_ok=True)
fresh = {"gpus": {str(g["index"]): {"mig": False, "gis": []} for g in gpus}, "calls": []}
state = json.load(open(STATE)) if os.path.exists(STATE) else fresh
state["calls"].append(args)
def save():
    json.dump(state, open(STATE, "w"))
def fail(msg, code=2):
    save(); print(msg); sys.exit(code)
def gpu(i):
    return next(g for g in gpus if g["index"] == int(i))
if args[:1] and args[0].startswith("--query-gpu="):
    for g in gpus:
        s = state["gpus"][str(g["index"])]
        print(f"{g['index']}, {g['device']}, {'Enabled' if s['mig'] else 'Disabled'}")
    save(); sys.exit(0)
if len(args) == 4 and args[0] == "-i" and args[2] == "-mig":
    s = state["gpus"][args[1]]
    if s["gis"]:
        fail(f"Unable to disable MIG Mode for GPU {args[1]}: In use by another client")
    s["mig"] = args[3] == "1"
    print(f"{'Enabled' if s['mig'] else 'Disabled'} MIG Mode for GPU 00000000:{int(args[1]):02X}:00.0")
    save(); sys.exit(0)
if args[:1] == ["mig"]:
    i = args[2]; s = state["gpus"][i]; g = gpu(i)
    if not s["mig"]:
        fail(f"MIG mode is not enabled on GPU {i}", 6)
    op = args[3]
    if op == "-lgi":
        print("+-------------------------------------------------------+")
        print("| GPU instances:                                        |")
        print("| GPU   Name             Profile  Instance   Placement  |")
        print("|                          ID       ID       Start:Size |")
        print("|=======================================================|")
        for n, gi in enumerate(s["gis"]):
            where = f"{gi['start']}:{gi['size']}"
            print(f"|   {i}  MIG {gi['profile']:<13} {gi['pid']:>5} {n + 1:>8}          {where}     |")
        print("+-------------------------------------------------------+")
        save(); sys.exit(0)
    if op in ("-dci", "-dgi"):
        if not s["gis"]:
            fail("No GPU instances found: Not Found", 6)
        if op == "-dgi":
            s["gis"] = []
        print(f"Successfully destroyed {'GPU' if op == '-dgi' else 'compute'} instances on GPU {i}")
        save(); sys.exit(0)
    if op == "-cgi":
        wanted = args[4].split(",")
        layout = sorted([x["profile"] for x in s["gis"]] + wanted)
        fits = g["layouts"].get(",".join(layout))
        if fits is None:
            print(f"Unable to create a GPU instance on GPU  {i} using profile {wanted[-1]}: Insufficient Resources")
            fail("Failed to create GPU instances: Insufficient Resources")
        s["gis"] = [{"profile": p, "start": st, "size": sz, "pid": 0} for p, st, sz in fits]
        for p in wanted:
            print(f"Successfully created GPU instance ID  1 on GPU  {i} using profile MIG {p} (ID 19)")
        save(); sys.exit(0)
fail("fake nvidia-smi: unsupported arguments " + " ".join(args), 3)
'''

PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (aiinfn test stand-in)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def _deb(work: Path, name: str, version: str, files: dict[str, tuple[str, int]], out: Path) -> Path:
    root = work / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: aiinfn tests <tests@example.org>\n"
        f"Description: aiinfn test stand-in of {name}\n"
    )
    for path, (content, mode) in files.items():
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        f.chmod(mode)
    deb = out / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def build_nvidia_repo(directory: Path, driver: str, toolkit: str) -> Path:
    """A flat apt repository of stand-in NVIDIA packages at ``driver`` and ``toolkit`` versions."""
    directory.mkdir(parents=True, exist_ok=True)
    work = directory / ".build"
    debs = [
        _deb(work, "nvidia-driver", f"{driver}-1", {"/usr/bin/nvidia-smi": (FAKE_SMI, 0o755)}, directory),
        _deb(work, "nvidia-persistenced", f"{driver}-1",
             {"/lib/systemd/system/nvidia-persistenced.service": (PERSISTENCED_UNIT, 0o644)}, directory),
        _deb(work, "nvidia-container-toolkit", f"{toolkit}-1",
             {"/usr/bin/nvidia-container-runtime": ("#!/bin/sh\nexit 0\n", 0o755),
              "/usr/bin/nvidia-ctk": ("#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version " + toolkit + "'\n",
                                      0o755)}, directory),
    ]
    entries = []
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        entries.append(control.strip() + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    (directory / "Packages").write_text("\n".join(entries))
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return directory


def valid_layouts(model_name: str) -> dict[str, list[tuple[str, int, int]]]:
    """Every multiset of MIG profiles aiinfn's catalogue places on ``model_name``, with its placements."""
    model = cat.model(model_name)
    if model.mig is None:  # not MIG-capable: no layout fits
        return {}
    names = sorted(model.mig.profiles)
    out: dict[str, list[tuple[str, int, int]]] = {}
    for n in range(1, model.mig.compute_slices + 1):
        for combo in itertools.combinations_with_replacement(names, n):
            try:
                placed = mig.place(model, list(combo))
            except mig.MigLayoutError:
                continue
            out[",".join(sorted(combo))] = [(p.profile, p.start, p.size) for p in placed]
    return out


def fake_gpus(model_name: str, count: int) -> list[dict[str, object]]:
    """The content of /etc/fake-nvidia/gpus.json for ``count`` GPUs of ``model_name``."""
    model = cat.model(model_name)
    device = f"0x{model.device_ids[0].upper()}10DE"
    layouts = valid_layouts(model_name)
    return [{"index": i, "device": device, "layouts": layouts} for i in range(count)]


def install_gpus(hosts: Any, name: str, model_name: str, count: int, *, with_smi: bool = False) -> None:
    """Declare ``count`` fake GPUs of ``model_name`` on test host ``name`` (and put the fake nvidia-smi there,
    for tests that do not install it through the stand-in driver package)."""
    path = hosts.path(name, "/etc/fake-nvidia/gpus.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fake_gpus(model_name, count)))
    if with_smi:
        smi = hosts.path(name, "/usr/bin/nvidia-smi")
        smi.write_text(FAKE_SMI)
        smi.chmod(0o755)


def gpu_site_inventory(hosts: Any, artifacts: Path, mig_config: dict[str, Any], gpu_nodes: dict[str, str | None],
                       server: str = "srv-1") -> dict[str, Any]:
    """The inventory variables aiinfn renders, for one RKE2 server and GPU nodes with their MIG configs."""
    from aiinfn import versions

    node = {"aiinfn_node_labels": {}, "aiinfn_node_taints": []}
    hostvars = {server: {**node, "aiinfn_role": "server"}}
    hostvars.update({n: {**node, "aiinfn_role": "gpu", "aiinfn_mig_config": c} for n, c in gpu_nodes.items()})
    return hosts.inventory(  # type: ignore[no-any-return]
        groups={"role_server": [server], "role_gpu": list(gpu_nodes)},
        hostvars=hostvars,
        group_vars={
            "aiinfn_site": "test", "aiinfn_first_server": server, "aiinfn_rke2_version": versions.RKE2,
            "aiinfn_artifact_source": str(artifacts), "aiinfn_tls_sans": [], "aiinfn_oidc": {},
            "aiinfn_registry_mirror": None, "aiinfn_cluster_domain": "cluster.local",
            "aiinfn_nvidia_driver_version": versions.NVIDIA_DRIVER,
            "aiinfn_nvidia_container_toolkit_version": versions.NVIDIA_CONTAINER_TOOLKIT,
            "aiinfn_reboot": False, "aiinfn_mig_parted_config": mig_config,
            "nvidia_driver_repositories": [{"name": "nvidia-standin", "uris": "file:/srv/nvidia-repo",
                                            "suites": "./", "trusted": True}],
            "nvidia_mig_kubectl_host": server,
        },
    )
