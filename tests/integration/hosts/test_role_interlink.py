"""Role interlink_edge on a real host: the HPC side of an offload target where the operators run it.

Real: the role's checks before any change, the copy from a local artifact source and the sha256 check of both
binaries against their pins, the system user, directories and modes, the configuration files rendered from data
(to_nice_yaml) and read by the services, two systemd units started, enabled, restarted on change, unprivileged
and sandboxed (ProtectSystem=strict), and a second run that changes nothing. Stand-ins (interLink's releases
cannot be downloaded here, tests/support/hosts/interlink_standin.py): the interLink API and its SLURM plugin are
Python programs that read the same files, listen where they say and answer interLink's calls (/pinglink through
to the plugin's /status; the plugin's /create runs the configured sbatch with the flavor's flags). sbatch itself
is a recording script: no SLURM controller runs in this test (the real one's sbatch path is not proven here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from interlink_standin import API_SHA256, PLUGIN_SHA256, PLUGIN_VERSION, VERSION, build_release

pytestmark = pytest.mark.integration

SBATCH = "#!/bin/sh\nprintf '%s\\n' \"$@\" > /opt/interlink/jobs/.sbatch-args\necho 'Submitted batch job 4242'\n"
FLAVORS = {"default": {"description": "CPU", "cpu": 4, "memory": "16G", "slurm_flags": ["--partition=cpu"]},
           "gpu": {"description": "one GPU", "cpu": 8, "memory": "64G",
                   "slurm_flags": ["--partition=gpu", "--gres=gpu:1", "--account=ai-infn", "--time=04:00:00"]}}


def _vars(artifacts: Path, **over: object) -> dict[str, object]:
    return {"interlink_edge_version": VERSION, "interlink_edge_slurm_plugin_version": PLUGIN_VERSION,
            "interlink_edge_artifact_source": str(artifacts), "interlink_edge_api_sha256": API_SHA256,
            "interlink_edge_plugin_sha256": PLUGIN_SHA256, "interlink_edge_slurm_bin": "/usr/local/slurm/bin",
            "interlink_edge_flavors": FLAVORS, "interlink_edge_command_prefix": "module load apptainer", **over}


def _setup(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> tuple[hostlib.Hosts, dict, Path, Path]:
    artifacts = tmp_path / "artifacts"
    build_release(artifacts)
    hosts = test_hosts(["edge"])
    hosts.exec("edge", "mkdir -p /usr/local/slurm/bin", check=True)
    sbatch = hosts.path("edge", "/usr/local/slurm/bin/sbatch")
    sbatch.write_text(SBATCH)
    sbatch.chmod(0o755)
    inv = hosts.inventory(groups={"interlink_edge": ["edge"]})
    book = Path(hostlib.REPO) / "playbooks" / "interlink-edge.yml"
    return hosts, inv, artifacts, book


def test_the_edge_runs_the_pinned_api_and_plugin_and_submits_through_sbatch(
        test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path)
    first = hostlib.run_playbook(book, inv, extravars=_vars(artifacts))
    assert first.rc == 0, first.failed
    for unit in ("interlink-api", "interlink-slurm-plugin"):
        state = hosts.exec("edge", ["systemctl", "show", "-p", "ActiveState", "-p", "UnitFileState", "-p", "User",
                                    f"{unit}.service"]).stdout
        assert "ActiveState=active" in state and "UnitFileState=enabled" in state and "User=interlink" in state
    for binary, digest in (("interlink", API_SHA256), ("interlink-slurm-plugin", PLUGIN_SHA256)):
        out = hosts.exec("edge", ["sha256sum", f"/opt/interlink/bin/{binary}"], check=True).stdout
        assert out.split()[0] == digest
    ping = hosts.exec("edge", "for i in $(seq 50); do curl -sf -X POST http://127.0.0.1:3000/pinglink && exit 0;"
                              " sleep 0.2; done; exit 1")
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout) == {"api": "ok", "plugin": {"plugin": "ok", "sbatch": "/usr/local/slurm/bin/sbatch"}}
    api = json.loads(hosts.read("edge", "/opt/interlink/jobs/.standin-api.json"))
    assert api["InterlinkAddress"] == "http://127.0.0.1" and api["InterlinkPort"] == "3000"
    assert api["SidecarPort"] == "4000" and "TLS" not in api
    job = {"name": "batch-alba-1f2e", "image": "harbor.example.org/ai-infn/lab:1", "flavor": "gpu"}
    create = hosts.exec("edge", ["curl", "-sf", "-X", "POST", "--data", json.dumps(job),
                                 "http://127.0.0.1:4000/create"])
    assert create.returncode == 0 and json.loads(create.stdout)["out"] == "Submitted batch job 4242"
    args = hosts.read("edge", "/opt/interlink/jobs/.sbatch-args").decode().splitlines()
    assert args == [*FLAVORS["gpu"]["slurm_flags"], "/opt/interlink/jobs/batch-alba-1f2e.sh"]
    script = hosts.read("edge", "/opt/interlink/jobs/batch-alba-1f2e.sh").decode()
    assert "module load apptainer" in script and "docker://harbor.example.org/ai-infn/lab:1" in script
    config = hosts.path("edge", "/opt/interlink/config/SlurmConfig.yaml")
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    # a second run changes nothing
    again = hostlib.run_playbook(book, inv, extravars=_vars(artifacts))
    assert again.rc == 0 and again.changed == {"edge": 0}, again.changed


def test_a_binary_that_is_not_the_pinned_one_is_never_installed(test_hosts: Callable[..., hostlib.Hosts],
                                                                tmp_path: Path) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path)
    build_release(artifacts, api="#!/bin/sh\necho tampered\n")
    res = hostlib.run_playbook(book, inv, extravars=_vars(artifacts))
    why = " ".join(m for _, _, m in res.failed)
    assert res.rc != 0 and "interlink_Linux_x86_64 of 0.6.0" in why and "is not the pinned" in why, why
    assert hosts.exec("edge", "test -e /opt/interlink/bin/interlink").returncode != 0
    assert hosts.exec("edge", "test -e /etc/systemd/system/interlink-api.service").returncode != 0


@pytest.mark.parametrize(("over", "words"), [
    ({"interlink_edge_api_sha256": ""}, "sha256 of each binary"),
    ({"interlink_edge_artifact_source": "http://mirror.example.org"}, "plain http"),
    ({"interlink_edge_flavors": {"default": {"slurm_flags": ["--partition=cpu; rm -rf /"]}}}, "no shell characters"),
    ({"interlink_edge_plugin_port": 3000}, "distinct TCP ports"),
])
def test_bad_inputs_stop_the_play_before_anything_changes(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path,
                                                          over: dict[str, object], words: str) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path)
    res = hostlib.run_playbook(book, inv, extravars=_vars(artifacts, **over))
    why = " ".join(m for _, _, m in res.failed)
    assert res.rc != 0 and words in why, why
    assert hosts.exec("edge", "id interlink").returncode != 0
    assert hosts.exec("edge", "test -e /opt/interlink").returncode != 0
