"""Role rke2's user-namespace tasks (tasks/userns.yml) on real hosts: the Localhost seccomp profile of images with
Apptainer in the kubelet's seccomp directory, and the kernel parameters that keep unprivileged user namespaces on.

Real: the task file run by ansible-playbook on the test hosts (systemd-nspawn machines), the files, their owners
and modes, what systemd-sysctl would apply at boot (``systemd-sysctl --cat-config``), the second run changing
nothing. Not here: a kubelet or containerd reading the profile, a kernel enforcing it (the hosts share this
machine's kernel, so the parameters are not applied live: rke2_sysctl_apply false), and Apptainer itself (no
apptainer package in Debian bookworm; the official release package is not installed on these hosts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest

from aiinfn.images import seccomp

pytestmark = pytest.mark.integration

PROFILE = f"{seccomp.KUBELET_SECCOMP_DIR}/{seccomp.PROFILE}"


def test_the_userns_tasks_install_the_profile_and_the_kernel_parameters(test_hosts: Callable[..., hostlib.Hosts],
                                                                        tmp_path: Path) -> None:
    hosts = test_hosts(["gpu-a"])
    book = tmp_path / "userns.yml"
    book.write_text("- name: User namespaces\n  hosts: all\n  tasks:\n    - name: Only the userns tasks of rke2\n"
                    "      ansible.builtin.include_role:\n        name: rke2\n        tasks_from: userns.yml\n")
    inv = hosts.inventory(group_vars={"rke2_sysctl_apply": False})
    first = hostlib.run_playbook(book, inv)
    assert first.rc == 0, first.failed
    assert first.changed["gpu-a"] >= 3
    installed = hosts.read("gpu-a", PROFILE)
    assert installed.decode() == seccomp.profile_text(), "the node gets exactly the profile aiinfn renders"
    assert json.loads(installed)["defaultAction"] == "SCMP_ACT_ERRNO"
    mode = hosts.exec("gpu-a", f"stat -c '%U %G %a' {PROFILE} {Path(PROFILE).parent}", check=True).stdout.split("\n")
    assert mode[:2] == ["root root 644", "root root 755"]
    merged = hosts.exec("gpu-a", "/lib/systemd/systemd-sysctl --cat-config", check=True).stdout
    effective = dict(line.replace(" ", "").split("=", 1) for line in merged.splitlines()
                     if "=" in line and not line.lstrip().startswith(("#", ";")))
    assert effective.get("user.max_user_namespaces") == "15000"
    assert effective.get("kernel.unprivileged_userns_clone") == "1"
    second = hostlib.run_playbook(book, inv)
    assert second.rc == 0 and second.changed["gpu-a"] == 0, second.changed
