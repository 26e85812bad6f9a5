"""Role sts_wire on a real host: the binary from a local artifact directory, checked against its pinned
sha256, one systemd unit per mount with the same argument order as the notebooks' mount script, and the nodes'
own IAM client secret and refresh token only in a root-only file.

Real: copy, checksum, install, systemd template units and their restart, file modes, what an unprivileged
user of the node can read. Stand-in: the sts-wire binary (a shell script that checks its arguments and its
environment as sts-wire v2.1.3 uses it, writes what it got under the mount point and stays up), since there
is no FUSE in the test hosts and no IAM to talk to; its digest reaches the role as sts_wire_sha256_override.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from sts_wire_standin import SHA256, STANDIN, VERSION
from sts_wire_standin import build_release as _release

from aiinfn import versions

pytestmark = pytest.mark.integration

SECRET = "iam-client-secret-never-logged-42"
REFRESH = "node-refresh-token-never-logged-43"
SECRETS = {"sts_wire_client_secret": SECRET, "sts_wire_refresh_token": REFRESH, "sts_wire_sha256_override": SHA256}


def _inventory(hosts: hostlib.Hosts, artifacts: Path) -> dict:
    s3 = {"endpoint": "https://s3.example.org", "region": "us-east-1", "sts_role": "IAMaccess",
          "iam_issuer": "https://iam.example.org/", "client_id": "stswire"}
    mounts = [{"name": "datasets", "bucket": "physics-datasets", "mount_path": "/data/datasets"},
              {"name": "models", "bucket": "shared-models", "mount_path": "/data/models"}]
    return hosts.inventory(groups={"sts_wire": ["node-s"]}, hostvars={"node-s": {"aiinfn_sts_wire_mounts": mounts}},
                           group_vars={"aiinfn_s3": s3, "aiinfn_sts_wire_version": VERSION,
                                       "aiinfn_artifact_source": str(artifacts),
                                       "aiinfn_artifact_sha256": versions.artifact_sha256()})


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
    first = hostlib.run_playbook(book, inv, extravars=SECRETS)
    assert first.rc == 0, first.failed
    assert SECRET not in first.stdout and REFRESH not in first.stdout
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
    assert oct(creds.stat().st_mode & 0o777) == "0o600" and (creds.stat().st_uid, creds.stat().st_gid) == (0, 0)
    lines = creds.read_text().splitlines()
    assert f"IAM_CLIENT_SECRET={SECRET}" in lines and f"REFRESH_TOKEN={REFRESH}" in lines
    assert "IAM_CLIENT_ID=stswire" in lines  # the nodes' own client (storage.s3.client_id), not the hub's
    for other in ("/etc/systemd/system/sts-wire@.service", "/etc/sts-wire/datasets.env", "/etc/sts-wire/models.env"):
        text = hosts.read("node-s", other).decode()
        assert SECRET not in text and REFRESH not in text
    journal = hosts.exec("node-s", "journalctl --no-pager -u 'sts-wire@*'").stdout
    assert SECRET not in journal and REFRESH not in journal
    # the only files on the node holding them are the credentials file (and the role's nothing else)
    for secret in (SECRET, REFRESH):
        held = hosts.exec("node-s", ["grep", "-rlF", "--", secret, "/etc", "/var", "/usr/local", "/root", "/home",
                                     "/srv", "/data", "/tmp"]).stdout.split()
        assert held == ["/etc/sts-wire/credentials.env"], held
    # an unprivileged user of the node reads neither the file nor the mounts' environment or command lines
    peek = hosts.exec("node-s", "runuser -u nobody -- sh -c 'cat /etc/sts-wire/credentials.env; "
                                "cat /proc/[0-9]*/environ; ps -eo args' 2>/dev/null")
    assert SECRET not in peek.stdout and REFRESH not in peek.stdout
    assert "COMMAND" in peek.stdout  # ps did run and list the processes

    again = hostlib.run_playbook(book, inv, extravars=SECRETS)
    assert again.rc == 0 and again.changed == {"node-s": 0}


def test_a_binary_unlike_the_pinned_one_is_not_installed(test_hosts: Callable[..., hostlib.Hosts],
                                                         tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    _release(artifacts, body=STANDIN + "# tampered\n")
    hosts = test_hosts(["node-s"])
    book, inv = _play(tmp_path), _inventory(hosts, artifacts)
    res = hostlib.run_playbook(book, inv, extravars=SECRETS)
    assert res.rc != 0
    (host, _task, msg), = res.failed
    assert host == "node-s" and "sts-wire_linux of sts-wire v2.1.3" in msg and "nothing was installed" in msg
    assert f"is not the pinned {SHA256}" in msg
    assert not hosts.exists("node-s", "/usr/local/bin/sts-wire")
    # without a pin nothing is fetched or installed either (versions.py has none for sts-wire yet)
    unpinned = hostlib.run_playbook(book, inv, extravars={k: v for k, v in SECRETS.items()
                                                          if k != "sts_wire_sha256_override"})
    assert unpinned.rc != 0
    assert any("no pinned sha256 of sts-wire_linux" in m for _h, _t, m in unpinned.failed), unpinned.failed
    # and a mount without the nodes' refresh token is refused before anything runs
    no_refresh = hostlib.run_playbook(book, inv, extravars={k: v for k, v in SECRETS.items()
                                                            if k != "sts_wire_refresh_token"})
    assert no_refresh.rc != 0
    assert any("sts_wire_refresh_token" in m for _h, _t, m in no_refresh.failed), no_refresh.failed
    assert not hosts.exists("node-s", "/usr/local/bin/sts-wire")
