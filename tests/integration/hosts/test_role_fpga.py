"""Role fpga_xrt on a real host: XRT from the site's artifact directory, checked against its published sha256
and installed with dpkg; memlock limits, udev rules and hugepages; a tampered package refused.

Real: copy, checksum, `apt deb=` install, files, the playbook's variable mapping. Stand-ins: the XRT package (a
small .deb named and versioned like AMD's, xrt_standin.py: XRT itself needs an AMD sign-in), and the device: there is
no Alveo card, so the device check (lspci -d 10ee:) is turned off (fpga_xrt_verify_device false) and udev, which
does not run in the test hosts, is not reloaded (fpga_xrt_reload_udev false).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from xrt_standin import build_release, package_name

from aiinfn import versions

pytestmark = pytest.mark.integration

DEB = package_name(versions.XRT)


def _release(artifacts: Path, tamper: bool = False) -> None:
    build_release(artifacts, versions.XRT, tamper=tamper)


def _run(hosts: hostlib.Hosts, tmp_path: Path, artifacts: Path) -> hostlib.PlaybookRun:
    book = tmp_path / "fpga.yml"
    if not book.exists():
        book.write_text("- name: FPGA\n  hosts: role_fpga\n  roles:\n    - role: fpga_xrt\n")
        (tmp_path / "group_vars").symlink_to(hostlib.REPO / "playbooks" / "group_vars")
    inv = hosts.inventory(
        groups={"role_fpga": ["fpga-1"]},
        hostvars={"fpga-1": {"aiinfn_accelerator_count": 2}},
        group_vars={"aiinfn_xrt_version": versions.XRT, "aiinfn_artifact_source": str(artifacts),
                    "fpga_xrt_verify_device": False, "fpga_xrt_reload_udev": False, "fpga_xrt_hugepages": 1024},
    )
    return hostlib.run_playbook(book, inv)


def test_xrt_installed_with_limits_device_access_and_hugepages(test_hosts: Callable[..., hostlib.Hosts],
                                                                tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    _release(artifacts)
    hosts = test_hosts(["fpga-1"])
    first = _run(hosts, tmp_path, artifacts)
    assert first.rc == 0, first.failed
    got = hosts.exec("fpga-1", "dpkg-query -W -f='${Version}' xrt", check=True).stdout
    assert got == versions.XRT
    assert "memlock    unlimited" in hosts.read("fpga-1", "/etc/security/limits.d/60-aiinfn-xrt.conf").decode()
    assert 'GROUP="render"' in hosts.read("fpga-1", "/etc/udev/rules.d/60-aiinfn-xrt.rules").decode()
    assert "vm.nr_hugepages = 1024" in hosts.read("fpga-1", "/etc/sysctl.d/61-aiinfn-xrt.conf").decode()
    again = _run(hosts, tmp_path, artifacts)
    assert again.rc == 0 and again.changed == {"fpga-1": 0}


def test_a_tampered_package_is_not_installed(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    _release(artifacts, tamper=True)
    hosts = test_hosts(["fpga-1"])
    res = _run(hosts, tmp_path, artifacts)
    assert res.rc != 0
    (host, _task, msg), = res.failed
    assert host == "fpga-1" and f"{DEB} of XRT {versions.XRT}" in msg and "nothing was installed" in msg
    assert hosts.exec("fpga-1", "dpkg-query -W xrt").returncode != 0
