"""Roles nvidia_driver and nvidia_mig on real hosts: pinned packages from an apt repository, nouveau kept away,
the persistence daemon, a reboot asked for; then the node's MIG layout from the plan's mig-parted config,
applied once, kept on rerun, changed on relayout, a refused layout rolled back; the node label set through the
first server's kubectl.

Real: apt (deb822 source, pinned versions, holds) and dpkg, systemd, the playbook, kubectl by delegation to
another host. Stand-ins (gpu_standins.py, rke2_standin.py): NVIDIA's packages (built here, named and versioned
like NVIDIA's), the GPUs (a fake nvidia-smi whose placement rules are aiinfn's MIG catalogue), RKE2 and
kubectl. No GPU, driver or kernel module is real here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostlib
import pytest
from gpu_standins import build_nvidia_repo, gpu_site_inventory, install_gpus
from rke2_standin import build_release

from aiinfn import versions
from aiinfn.config.loader import load
from aiinfn.planning import make_plan

pytestmark = pytest.mark.integration

TOKEN = "K10-test-join-token-0123456789abcdef"
A100_CONFIG = "aiinfn-a100-80gb-1g.10gbx7"
MUTATING = ("-cgi", "-dgi", "-dci", "-mig")


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


def _label(hosts: hostlib.Hosts) -> str:
    nodes = json.loads(hosts.read("srv-1", "/var/lib/rancher/rke2/nodes.json"))
    return nodes["gpu-1"]["labels"]["nvidia.com/mig.config"]


def test_driver_then_mig_layout_applied_kept_changed_and_rolled_back(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    build_release(artifacts / "rke2", versions.RKE2)
    repo = build_nvidia_repo(tmp_path / "repo", versions.NVIDIA_DRIVER, versions.NVIDIA_CONTAINER_TOOLKIT)
    hosts = test_hosts(["srv-1", "gpu-1"])
    shutil.copytree(repo, hosts.path("gpu-1", "/srv/nvidia-repo"))
    install_gpus(hosts, "gpu-1", "A100-80GB", 4)
    config = make_plan(load("cnaf")).mig_parted_config()
    config["mig-configs"]["test-3g.40gbx2"] = [{"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}]
    config["mig-configs"]["test-impossible"] = [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"4g.40gb": 1, "3g.40gb": 1}}]
    server = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, config, A100_CONFIG),
                                  extravars={"rke2_token": TOKEN}, limit="srv-1")
    assert server.rc == 0, server.failed

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
    assert _label(hosts) == A100_CONFIG

    calls_before = len(_fake(hosts)["calls"])
    again = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, A100_CONFIG))
    assert again.rc == 0, again.failed
    assert again.changed == {"gpu-1": 0}
    new_calls = _fake(hosts)["calls"][calls_before:]
    assert new_calls and not [c for c in new_calls if any(m in c for m in MUTATING)]  # read, never changed

    relayout = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, "test-3g.40gbx2"))
    assert relayout.rc == 0, relayout.failed
    assert _layouts(hosts) == [["3g.40gb", "3g.40gb"]] * 4 and _label(hosts) == "test-3g.40gbx2"

    refused = hostlib.run_playbook(book, _inventory(hosts, artifacts, config, "test-impossible"))
    assert refused.rc != 0
    (host, _task, msg), = refused.failed
    assert host == "gpu-1" and "Insufficient Resources" in msg and "previous layout 3g.40gb,3g.40gb restored" in msg
    assert _layouts(hosts) == [["3g.40gb", "3g.40gb"]] * 4 and _label(hosts) == "test-3g.40gbx2"


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
