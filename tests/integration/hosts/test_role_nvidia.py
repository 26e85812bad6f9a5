"""Roles nvidia_driver and nvidia_mig on real hosts: pinned packages from an apt repository, nouveau kept away,
the persistence daemon, a reboot asked for; then the node's MIG layout from the plan's mig-parted config,
applied once, kept on rerun, changed on relayout, a refused layout rolled back, a layout that fits only in
another creation order than the sorted one applied, MIG on with nothing carved kept; the node label set through
the first server's kubectl with --overwrite, and a node gone from the cluster named with the API server's
NotFound. Then the fake nvidia-smi itself (no host): the fields it answers, NVIDIA's placements it lists, the
order, leftovers and compute instances of its creations, and that every layout aiinfn's catalogue accepts
fits NVIDIA's placement table.

Real: apt (deb822 source, pinned versions, holds) and dpkg, systemd, the playbook, kubectl by delegation to
another host. Stand-ins (gpu_standins.py, rke2_standin.py): NVIDIA's packages (built here, named and versioned
like NVIDIA's), the GPUs (a fake nvidia-smi whose profiles and placements are NVIDIA's documented ones, written
independently of aiinfn's catalogue, that creates instances one by one in the order asked, leaves what it
created when one does not fit, and gives compute instances only with -C), RKE2 and kubectl (Node objects that
exist only once registered, labels that change only with --overwrite). No GPU, driver or kernel module is real
here. RKE2 itself is not started (test_role_rke2.py and test_site.py do): the kubectl stand-in is put where
RKE2's server unpacks it (``install_kubectl``) and, the GPU hosts running no RKE2 agent, their Node objects are
registered on the server as a joined node's kubelet would (``register_nodes``). The fake's choice among free
placements (the lowest) is a model of the driver's, which NVIDIA does not document (gpu_standins.py says what
it rests on).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostlib
import pytest
import yaml
from gpu_standins import FAKE_SMI, GPU_MODELS, build_nvidia_repo, fake_gpus, gpu_site_inventory, install_gpus, placeable
from rke2_standin import install_kubectl, kubectl_calls, register_nodes

from aiinfn import versions
from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig
from aiinfn.config.loader import load
from aiinfn.planning import make_plan

pytestmark = pytest.mark.integration

A100_CONFIG = "aiinfn-a100-80gb-1g.10gbx7"
MUTATING = ("-cgi", "-dgi", "-dci", "-mig")
KUBECTL = ["/var/lib/rancher/rke2/bin/kubectl", "--kubeconfig", "/etc/rancher/rke2/rke2.yaml"]
#: NVIDIA mig-parted v0.15.0's stock configs (read in place, ../shared beside the checkout).
STOCK = hostlib.REPO.parent / "shared" / "schemas" / "mig-parted-v0.15.0" / "config-default.yaml"


def _book(tmp_path: Path) -> Path:
    book = tmp_path / "gpu.yml"
    book.write_text(
        "- name: GPU node\n  hosts: role_gpu\n  roles:\n    - role: nvidia_driver\n    - role: nvidia_mig\n"
    )
    (tmp_path / "group_vars").symlink_to(hostlib.REPO / "playbooks" / "group_vars")
    return book


def _inventory(hosts: hostlib.Hosts, artifacts: Path, mig_config: dict[str, Any], name: str) -> dict[str, Any]:
    return gpu_site_inventory(hosts, artifacts, mig_config, {"gpu-1": name})


def _fake(hosts: hostlib.Hosts) -> dict[str, Any]:
    return json.loads(hosts.read("gpu-1", "/var/lib/fake-nvidia/state.json"))


def _layouts(hosts: hostlib.Hosts) -> list[list[str]]:
    return [sorted(gi["profile"] for gi in g["gis"]) for _i, g in sorted(_fake(hosts)["gpus"].items())]


def _without_compute_instance(hosts: hostlib.Hosts) -> list[dict[str, Any]]:
    """GPU instances that hold no compute instance: no MIG device, nothing for Kubernetes to schedule on."""
    return [gi for g in _fake(hosts)["gpus"].values() for gi in g["gis"] if not gi["ci"]]


def _label(hosts: hostlib.Hosts) -> str:
    nodes = json.loads(hosts.read("srv-1", "/var/lib/rancher/rke2/nodes.json"))
    return nodes["gpu-1"]["labels"]["nvidia.com/mig.config"]


def _label_calls(hosts: hostlib.Hosts, since: int) -> list[list[str]]:
    return [c["argv"] for c in kubectl_calls(hosts, "srv-1")[since:] if "label" in c["argv"]]


def test_driver_then_mig_layout_applied_kept_changed_and_rolled_back(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    repo = build_nvidia_repo(tmp_path / "repo", versions.NVIDIA_DRIVER, versions.NVIDIA_CONTAINER_TOOLKIT)
    hosts = test_hosts(["srv-1", "gpu-1"])
    shutil.copytree(repo, hosts.path("gpu-1", "/srv/nvidia-repo"))
    install_gpus(hosts, "gpu-1", "A100-80GB", 4)
    config = make_plan(load("cnaf")).mig_parted_config()
    config["mig-configs"]["test-3g.40gbx2"] = [{"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}]
    # 7 compute slices but 9 memory slices: no creation order fits it on an A100
    config["mig-configs"]["test-impossible"] = [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2, "1g.10gb": 1}}]
    # fits, but not in the sorted order: a 1g.10gb created first takes slice 0, the only start of a 4g.40gb
    config["mig-configs"]["test-4g-2g-1g"] = [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"4g.40gb": 1, "2g.20gb": 1, "1g.10gb": 1}}]
    # NVIDIA's own: MIG on, no instance (nvidia-smi then answers "No GPU instances found: Not Found")
    config["mig-configs"]["all-enabled"] = yaml.safe_load(STOCK.read_text())["mig-configs"]["all-enabled"]
    install_kubectl(hosts, "srv-1")
    register_nodes(hosts, "srv-1", ["gpu-1"])

    book = _book(tmp_path)
    first = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, A100_CONFIG))
    assert first.rc == 0, first.failed
    for pkg, version in (("nvidia-driver", versions.NVIDIA_DRIVER), ("nvidia-persistenced", versions.NVIDIA_DRIVER),
                         ("nvidia-container-toolkit", versions.NVIDIA_CONTAINER_TOOLKIT)):
        got = hosts.exec("gpu-1", f"dpkg-query -W -f='${{Version}} ${{db:Status-Want}}' {pkg}", check=True).stdout
        assert got == f"{version}-1 hold", (pkg, got)
    assert "blacklist nouveau" in hosts.read("gpu-1", "/etc/modprobe.d/aiinfn-blacklist-nouveau.conf").decode()
    assert hosts.exec("gpu-1", "systemctl is-active nvidia-persistenced").stdout.strip() == "active"
    assert hosts.exists("gpu-1", "/run/reboot-required")  # the new driver needs a reboot; none was forced
    assert _layouts(hosts) == [["1g.10gb"] * 7] * 4
    assert _without_compute_instance(hosts) == []  # every GPU instance is a MIG device
    assert _label(hosts) == A100_CONFIG
    assert _label_calls(hosts, 0) == [[*KUBECTL, "label", "node", "gpu-1", f"nvidia.com/mig.config={A100_CONFIG}",
                                       "--overwrite"]]

    calls_before = len(_fake(hosts)["calls"])
    kube_before = len(kubectl_calls(hosts, "srv-1"))
    again = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, A100_CONFIG))
    assert again.rc == 0, again.failed
    assert again.changed == {"gpu-1": 0}
    new_calls = _fake(hosts)["calls"][calls_before:]
    assert new_calls and not [c for c in new_calls if any(m in c for m in MUTATING)]  # read, never changed
    assert _label_calls(hosts, kube_before) == []  # the label already says so: not relabelled

    kube_before = len(kubectl_calls(hosts, "srv-1"))
    relayout = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, "test-3g.40gbx2"))
    assert relayout.rc == 0, relayout.failed
    assert _layouts(hosts) == [["3g.40gb", "3g.40gb"]] * 4 and _label(hosts) == "test-3g.40gbx2"
    # the node had a label: kubectl changes it only with --overwrite (the stand-in refuses it otherwise)
    assert _label_calls(hosts, kube_before) == [
        [*KUBECTL, "label", "node", "gpu-1", "nvidia.com/mig.config=test-3g.40gbx2", "--overwrite"]]

    refused = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, "test-impossible"))
    assert refused.rc != 0
    (host, _task, msg), = refused.failed
    assert host == "gpu-1" and "Insufficient Resources" in msg and "previous layout 3g.40gb,3g.40gb restored" in msg
    assert _layouts(hosts) == [["3g.40gb", "3g.40gb"]] * 4 and _label(hosts) == "test-3g.40gbx2"
    assert _without_compute_instance(hosts) == []

    # the driver is in place: the MIG role alone from here on
    mig_book = tmp_path / "mig.yml"
    mig_book.write_text("- name: GPU node\n  hosts: role_gpu\n  roles:\n    - role: nvidia_mig\n")
    ordered = hostlib.run_playbook(mig_book, _inventory(hosts, artifacts, config, "test-4g-2g-1g"))
    assert ordered.rc == 0, ordered.failed
    assert _layouts(hosts) == [["1g.10gb", "2g.20gb", "4g.40gb"]] * 4 and _label(hosts) == "test-4g-2g-1g"
    assert {gi["start"] for g in _fake(hosts)["gpus"].values() for gi in g["gis"] if gi["profile"] == "4g.40gb"} == {0}
    assert _without_compute_instance(hosts) == []

    enabled = hostlib.run_playbook(mig_book, _inventory(hosts, artifacts, config, "all-enabled"))
    assert enabled.rc == 0, enabled.failed
    assert _layouts(hosts) == [[]] * 4 and all(g["mig"] for g in _fake(hosts)["gpus"].values())
    kept = hostlib.run_playbook(mig_book, _inventory(hosts, artifacts, config, "all-enabled"))
    assert kept.rc == 0, kept.failed  # MIG on and nothing carved is a state the role reads, not an error
    assert kept.changed == {"gpu-1": 0}

    # a node gone from the cluster: the role's kubectl gets the API server's NotFound and says so
    gone = hosts.exec("srv-1", " ".join([*KUBECTL, "delete", "node", "gpu-1"]))
    assert gone.returncode == 0, gone.stderr
    orphan = hostlib.run_playbook(mig_book, _inventory(hosts, artifacts, config, "all-enabled"))
    assert orphan.rc != 0
    (host, _task, msg), = orphan.failed
    assert host == "gpu-1" and msg == 'Error from server (NotFound): nodes "gpu-1" not found'


def test_an_unknown_config_name_fails_before_touching_the_gpus(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    hosts = test_hosts(["srv-1", "gpu-1"])
    install_gpus(hosts, "gpu-1", "A30", 1)
    config = make_plan(load("cnaf")).mig_parted_config()
    book = tmp_path / "mig.yml"
    book.write_text("- name: MIG\n  hosts: role_gpu\n  roles:\n    - role: nvidia_mig\n")
    (tmp_path / "group_vars").symlink_to(hostlib.REPO / "playbooks" / "group_vars")
    res = hostlib.run_playbook(book, _inventory(hosts, tmp_path, config, "aiinfn-a30-9g.99gb"))
    assert res.rc != 0
    (_host, _task, msg), = res.failed
    assert "aiinfn-a30-9g.99gb is not in the mig-parted document" in msg
    assert not hosts.exists("gpu-1", "/var/lib/fake-nvidia/state.json")  # nvidia-smi never ran


# --- the fake nvidia-smi itself, run here (no host): what the tests above rely on it to refuse ----------------


def _smi(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(root / "nvidia-smi"), *args], capture_output=True, text=True,
                          env={**os.environ, "FAKE_NVIDIA_ROOT": str(root)}, check=False)


@pytest.fixture
def smi_root(tmp_path: Path) -> Path:
    (tmp_path / "etc" / "fake-nvidia").mkdir(parents=True)
    (tmp_path / "etc" / "fake-nvidia" / "gpus.json").write_text(json.dumps(fake_gpus("A100-80GB", 2)))
    (tmp_path / "nvidia-smi").write_text(FAKE_SMI)
    (tmp_path / "nvidia-smi").chmod(0o755)
    return tmp_path


def test_the_fake_answers_only_the_fields_asked_in_the_order_asked(smi_root: Path) -> None:
    res = _smi(smi_root, "--query-gpu=mig.mode.current,index,pci.device_id", "--format=csv,noheader")
    assert (res.returncode, res.stdout) == (0, "Disabled, 0, 0x20B510DE\nDisabled, 1, 0x20B510DE\n")
    res = _smi(smi_root, "-i", "1", "--query-gpu=name,memory.total", "--format=csv")
    assert res.stdout == "name, memory.total [MiB]\nNVIDIA A100 80GB PCIe, 81920 MiB\n"
    res = _smi(smi_root, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits", "-i", "0")
    assert res.stdout == "0, 81920\n"
    bad = _smi(smi_root, "--query-gpu=index,mig.mode", "--format=csv,noheader")
    assert bad.returncode == 2 and bad.stdout == 'Field "mig.mode" is not a valid field to query.\n'


def test_the_fake_lists_nvidias_documented_placements(smi_root: Path) -> None:
    """`nvidia-smi mig -lgipp` of an A100 80GB as the MIG user guide prints it (profile IDs and placements)."""
    assert _smi(smi_root, "-i", "0", "-mig", "1").returncode == 0
    assert _smi(smi_root, "mig", "-i", "0", "-lgipp").stdout.splitlines() == [
        "GPU  0 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1",
        "GPU  0 Profile ID 20 Placements: {0,1,2,3,4,5,6}:1",
        "GPU  0 Profile ID 15 Placements: {0,2,4,6}:2",
        "GPU  0 Profile ID 14 Placements: {0,2,4}:2",
        "GPU  0 Profile ID  9 Placements: {0,4}:4",
        "GPU  0 Profile ID  5 Placement : {0}:4",
        "GPU  0 Profile ID  0 Placement : {0}:8",
    ]


def test_the_fake_creates_in_order_keeps_what_it_made_and_needs_C_for_compute_instances(smi_root: Path) -> None:
    assert _smi(smi_root, "-i", "0", "-mig", "1").returncode == 0
    empty = _smi(smi_root, "mig", "-i", "0", "-lgi")
    assert (empty.returncode, empty.stdout) == (6, "No GPU instances found: Not Found\n")
    # a 3g.40gb first lands on slice 0, the only start of a 4g.40gb: refused, the 3g.40gb stays
    res = _smi(smi_root, "mig", "-i", "0", "-cgi", "3g.40gb,4g.40gb", "-C")
    assert res.returncode != 0
    assert res.stdout.splitlines()[-1] == "Failed to create GPU instances: Insufficient Resources"
    assert "MIG 3g.40gb" in _smi(smi_root, "mig", "-i", "0", "-lgi").stdout
    busy = _smi(smi_root, "mig", "-i", "0", "-dgi")  # its compute instance still lives
    assert busy.returncode != 0 and "In use by another client" in busy.stdout
    assert _smi(smi_root, "mig", "-i", "0", "-dci").returncode == 0
    assert _smi(smi_root, "mig", "-i", "0", "-dgi").returncode == 0
    # the other order fits; without -C the GPU instances hold no compute instance
    bare = _smi(smi_root, "mig", "-i", "0", "-cgi", "5,9")
    assert bare.returncode == 0 and "compute instance" not in bare.stdout
    assert _smi(smi_root, "mig", "-i", "0", "-lci").stdout == "No compute instances found: Not Found\n"
    off = _smi(smi_root, "mig", "-i", "1", "-lgi")  # the other GPU is not in MIG mode
    assert (off.returncode, off.stdout) == (6, "No MIG-enabled devices found.\n")


@pytest.mark.parametrize("model", ["A30", "A100-40GB", "A100-80GB", "H100-80GB"])
def test_every_layout_the_catalogue_accepts_fits_nvidias_placements(model: str) -> None:
    """What `aiinfn validate` lets a site declare must be something the GPU can hold: for every layout aiinfn's
    MIG catalogue accepts, some creation order fits NVIDIA's placement table (the fake's, independent of the
    catalogue). The converse is not asserted: the catalogue refuses 4g + 3g together, which NVIDIA's table
    places (4g first)."""
    entry = cat.model(model)
    assert entry.mig is not None
    profiles = sorted(entry.mig.profiles)
    accepted = []
    for n in range(1, entry.mig.compute_slices + 1):
        for combo in itertools.combinations_with_replacement(profiles, n):
            try:
                mig.validate(entry, list(combo))
            except mig.MigLayoutError:
                continue
            accepted.append(combo)
    assert accepted
    unplaceable = [c for c in accepted if not any(placeable(model, list(o)) for o in set(itertools.permutations(c)))]
    assert unplaceable == []
    assert set(profiles) == {p[1] for p in GPU_MODELS[model]["mig"]["profiles"]}
