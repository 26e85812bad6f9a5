"""Role sts_wire on a real host: the binary from a local artifact directory, checked against its published
sha256, one systemd unit per mount with the same argument order as the notebooks' mount script, and the IAM
client secret only in a root-only file.

Real: copy, checksum, install, systemd template units and their restart, file modes.
Stand-in: the sts-wire binary (a shell script that checks its arguments and environment, writes what it got
under the mount point and stays up), since there is no FUSE in the test hosts and no IAM to talk to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from sts_wire_standin import STANDIN, VERSION
from sts_wire_standin import build_release as _release

pytestmark = pytest.mark.integration

SECRET = "iam-client-secret-never-logged-42"
def _inventory(hosts: hostlib.Hosts, artifacts: Path) -> dict:
    s3 = {"endpoint": "https://s3.example.org", "region": "us-east-1", "sts_role": "IAMaccess",
          "iam_issuer": "https://iam.example.org/", "client_id": "stswire"}
    mounts = [{"name": "datasets", "bucket": "physics-datasets", "mount_path": "/data/datasets"},
              {"name": "models", "bucket": "shared-models", "mount_path": "/data/models"}]
    return hosts.inventory(groups={"sts_wire": ["node-s"]}, hostvars={"node-s": {"aiinfn_sts_wire_mounts": mounts}},
                           group_vars={"aiinfn_s3": s3, "aiinfn_sts_wire_version": VERSION,
                                       "aiinfn_artifact_source": str(artifacts)})


def _play(tmp_path: Path) -> Path:
    book = tmp_path / "stswire.yml"
    book.write_text("- name: sts-wire\n  hosts: sts_wire\n  roles:\n    - role: sts_wire\n")
    book.with_name("group_vars").symlink_to(Path(hostlib.REPO) / "playbooks" / "group_vars")
    return book


def test_mounts_run_as_units_and_the_secret_stays_in_one_root_file(test_hosts: Callable[..., hostlib.Hosts],
                                                                    tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    _release(artifacts)
    hosts = test_hosts(["node-s"])
    inv, book = _inventory(hosts, artifacts), _play(tmp_path)
    first = hostlib.run_playbook(book, inv, extravars={"sts_wire_client_secret": SECRET})
    assert first.rc == 0, first.failed
    assert SECRET not in first.stdout
    for name, bucket, mount in (("datasets", "physics-datasets", "/data/datasets"),
                                ("models", "shared-models", "/data/models")):
        assert hosts.exec("node-s", f"systemctl is-active sts-wire@{name}").stdout.strip() == "active"
        marker = hosts.exec("node-s", f"for i in $(seq 50); do [ -s {mount}/.sts-wire-standin ] && break; sleep 0.2;"
                                      f" done; cat {mount}/.sts-wire-standin", check=True).stdout
        args = marker.split("\n")
        assert args[:7] == ["https://iam.example.org/", bucket, "https://s3.example.org", "IAMaccess", "us-east-1",
                            f"/{bucket}", mount]
        assert "--localCache" in args
    creds = hosts.path("node-s", "/etc/sts-wire/credentials.env")
    assert oct(creds.stat().st_mode & 0o777) == "0o600" and SECRET in creds.read_text()
    for other in ("/etc/systemd/system/sts-wire@.service", "/etc/sts-wire/datasets.env", "/etc/sts-wire/models.env"):
        assert SECRET not in hosts.read("node-s", other).decode()
    journal = hosts.exec("node-s", "journalctl --no-pager -u 'sts-wire@*'").stdout
    assert SECRET not in journal

    again = hostlib.run_playbook(book, inv, extravars={"sts_wire_client_secret": SECRET})
    assert again.rc == 0 and again.changed == {"node-s": 0}


def test_a_binary_unlike_the_published_one_is_not_installed(test_hosts: Callable[..., hostlib.Hosts],
                                                            tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    _release(artifacts, body=STANDIN + "# tampered\n")
    hosts = test_hosts(["node-s"])
    res = hostlib.run_playbook(_play(tmp_path), _inventory(hosts, artifacts),
                               extravars={"sts_wire_client_secret": SECRET})
    assert res.rc != 0
    (host, _task, msg), = res.failed
    assert host == "node-s" and "sts-wire_linux of sts-wire v2.1.3" in msg and "nothing was installed" in msg
    assert not hosts.exists("node-s", "/usr/local/bin/sts-wire")
