"""Role interlink_edge on a real host: the HPC side of an offload target where the operators run it.

Real: the role's checks before any change, the copy from a local artifact source and the sha256 check of both
binaries against their pins, the system user, directories and modes, the configuration files rendered from data
(to_nice_yaml) and read by the services, two systemd units started, enabled, restarted on change, unprivileged
and sandboxed (ProtectSystem=strict), and a second run that changes nothing; the plugin reachable by the API on the
same node and by nothing on the network (a second host on the test network tries). Stand-ins (interLink's releases
cannot be downloaded here, tests/support/hosts/interlink_standin.py): the interLink API and its SLURM plugin are
Python programs that read the same files, listen where they say (the SLURM plugin on the unix socket of its
``Socket``, as 0.6.1 does; the API calling a ``unix://`` SidecarURL, as 0.6.0 does) and answer interLink's calls
(/pinglink through to the plugin's /status; the plugin's /create runs the configured sbatch with the flavor's
flags). sbatch itself is a recording script: no SLURM controller runs in this test (the real one's sbatch path is
not proven here).

The HTCondor case (kind ``htcondor``, CNAF's Tier-1): the plugin is a stand-in of interLink's HTCondor plugin
(handles.py: a Flask program with its options, its ./SidecarConfig.yaml and its HTCondor calls; it serves on every
address with the debugger when run as a script, as the real one does), run by the role's own launcher, for real.
Gap: no HTCondor is packaged in Debian bookworm and PyPI's htcondor wheel holds only the bindings, so no schedd or
collector runs here: condor_submit, condor_q and condor_rm are scripts that refuse any argument or environment
but the ones the plugin must pass for the configured pool, schedd and authentication, and answer as HTCondor does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from interlink_standin import (
    API_SHA256,
    HTCONDOR_SHA256,
    HTCONDOR_VERSION,
    PLUGIN_SHA256,
    PLUGIN_VERSION,
    VERSION,
    build_release,
)

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


def _setup(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path,
           names: tuple[str, ...] = ("edge",)) -> tuple[hostlib.Hosts, dict, Path, Path]:
    artifacts = tmp_path / "artifacts"
    build_release(artifacts)
    hosts = test_hosts(list(names))
    hosts.exec("edge", "mkdir -p /usr/local/slurm/bin", check=True)
    sbatch = hosts.path("edge", "/usr/local/slurm/bin/sbatch")
    sbatch.write_text(SBATCH)
    sbatch.chmod(0o755)
    inv = hosts.inventory(groups={"interlink_edge": ["edge"]})
    book = Path(hostlib.REPO) / "playbooks" / "interlink-edge.yml"
    return hosts, inv, artifacts, book


def test_the_edge_runs_the_pinned_api_and_plugin_and_submits_through_sbatch(
        test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path, ("edge", "probe"))
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
    assert api["SidecarURL"] == "unix:///opt/interlink/run/plugin.sock" and "TLS" not in api
    # the plugin listens on its unix socket only (the interlink user's directory): no TCP port at all, so
    # nothing on the network reaches it, while the API does (the ping above went through it)
    assert ":4000" not in hosts.exec("edge", ["ss", "-Hltn"], check=True).stdout
    assert _stat(hosts, "/opt/interlink/run") == "interlink interlink 750"
    assert hosts.exec("probe", ["curl", "-s", "-m", "3", f"http://{hosts.address('edge')}:4000/status"]).returncode != 0
    job = {"name": "batch-alba-1f2e", "image": "harbor.example.org/ai-infn/lab:1", "flavor": "gpu"}
    create = hosts.exec("edge", ["curl", "-sf", "-X", "POST", "--data", json.dumps(job), "--unix-socket",
                                 "/opt/interlink/run/plugin.sock", "http://plugin/create"])
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


def _stat(hosts: hostlib.Hosts, path: str) -> str:
    return hosts.exec("edge", ["stat", "-c", "%U %G %a", path], check=True).stdout.strip()


#: The facility's pool as the operators configure it (CNAF's Tier-1 names, for the look of it).
COLLECTOR = "htc-cm.t1.example.infn.it:9618"
SCHEDD = "htc-sn-01.t1.example.infn.it"
HTCONDOR_BIN = "/usr/local/htcondor/bin"


def _condor_tool(name: str, want: str, answer: str) -> str:
    """A stand-in HTCondor tool: exits 1 (saying why) unless its arguments are ``want`` (a shell pattern) and
    the plugin gave it the pool's authentication (the variables HTCondor's tools read); records its call."""
    return (
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> /opt/interlink/jobs/.{name}-calls\n"
        f"case \"$*\" in {want}) ;; *) echo \"{name}: unexpected arguments: $*\" >&2; exit 1 ;; esac\n"
        "[ \"$_condor_SEC_DEFAULT_AUTHENTICATION_METHODS\" = SCITOKENS ] || { echo 'no auth method' >&2; exit 1; }\n"
        f"[ \"$_condor_COLLECTOR_HOST\" = {COLLECTOR} ] || {{ echo 'wrong collector' >&2; exit 1; }}\n"
        f"[ \"$_condor_SCHEDD_HOST\" = {SCHEDD} ] || {{ echo 'wrong schedd' >&2; exit 1; }}\n"
        "[ \"$CONDOR_CONFIG\" = /etc/condor/condor_config ] || { echo 'no condor_config' >&2; exit 1; }\n"
        f"{answer}\n"
    )


def test_an_htcondor_edge_runs_the_pinned_plugin_on_loopback_and_submits_to_the_schedd(
        test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path, ("edge", "probe"))
    hosts.exec("edge", f"mkdir -p {HTCONDOR_BIN} /etc/condor && touch /etc/condor/condor_config", check=True)
    tools = {
        "condor_submit": (f"'-pool {COLLECTOR} -remote {SCHEDD} /opt/interlink/jobs/batch-alba-7a7a.sub -spool'",
                          "echo 'Submitting job(s).'; echo '1 job(s) submitted to cluster 4243.'"),
        "condor_q": ("'4243 --json'", "echo '[{\"ClusterId\": 4243, \"JobStatus\": 2}]'"),
        "condor_rm": ("'4243'", "echo 'All jobs in cluster 4243 have been marked for removal'"),
    }
    for name, (want, answer) in tools.items():
        tool = hosts.path("edge", f"{HTCONDOR_BIN}/{name}")
        tool.write_text(_condor_tool(name, want, answer))
        tool.chmod(0o755)
    extra = _vars(artifacts, interlink_edge_kind="htcondor", interlink_edge_htcondor_plugin_version=HTCONDOR_VERSION,
                  interlink_edge_plugin_sha256=HTCONDOR_SHA256, interlink_edge_htcondor_bin=HTCONDOR_BIN,
                  interlink_edge_htcondor_collector_host=COLLECTOR, interlink_edge_htcondor_schedd_host=SCHEDD,
                  interlink_edge_htcondor_auth_method="SCITOKENS",
                  interlink_edge_htcondor_condor_config="/etc/condor/condor_config")
    first = hostlib.run_playbook(book, inv, extravars=extra)
    assert first.rc == 0, first.failed
    state = hosts.exec("edge", ["systemctl", "show", "-p", "ActiveState", "-p", "User",
                                "interlink-htcondor-plugin.service"]).stdout
    assert "ActiveState=active" in state and "User=interlink" in state
    assert hosts.exec("edge", "systemctl cat interlink-slurm-plugin.service").returncode != 0
    out = hosts.exec("edge", ["sha256sum", "/opt/interlink/bin/interlink-htcondor-plugin.py"], check=True).stdout
    assert out.split()[0] == HTCONDOR_SHA256
    ping = hosts.exec("edge", "for i in $(seq 75); do curl -sf -X POST http://127.0.0.1:3000/pinglink && exit 0;"
                              " sleep 0.2; done; exit 1")
    assert ping.returncode == 0, ping.stderr + hosts.exec("edge", "journalctl -u interlink-htcondor-plugin "
                                                                  "--no-pager | tail -20").stdout
    assert json.loads(ping.stdout) == {"api": "ok", "plugin": {"plugin": "ok", "condor": COLLECTOR}}
    api = json.loads(hosts.read("edge", "/opt/interlink/jobs/.standin-api.json"))
    assert api["SidecarURL"] == "http://127.0.0.1" and api["SidecarPort"] == "4000"
    # the plugin got the pool, the schedd and the authentication from the role, and nothing else
    seen = json.loads(hosts.read("edge", "/opt/interlink/jobs/.standin-htcondor.json"))
    assert seen["config"] == {"CommandPrefix": "module load apptainer", "DataRootFolder": "/opt/interlink/jobs/",
                              "ExportPodData": True}
    assert {k: v for k, v in seen["args"].items() if v} == {
        "collector_host": COLLECTOR, "schedd_host": SCHEDD, "auth_method": "SCITOKENS",
        "condor_config": "/etc/condor/condor_config", "port": 4000}
    # loopback only (the plugin itself would listen everywhere, with Flask's debugger): the API reaches it,
    # another host on the network does not
    listening = hosts.exec("edge", ["ss", "-Hltn"], check=True).stdout
    assert "127.0.0.1:4000" in listening and "0.0.0.0:4000" not in listening and "*:4000" not in listening
    assert hosts.exec("probe", ["curl", "-s", "-m", "3", f"http://{hosts.address('edge')}:4000/status"]).returncode != 0
    job = {"name": "batch-alba-7a7a", "image": "harbor.example.org/ai-infn/lab:1"}
    create = hosts.exec("edge", ["curl", "-sf", "-X", "POST", "--data", json.dumps(job),
                                 "http://127.0.0.1:4000/create"])
    assert create.returncode == 0, create.stdout + create.stderr
    assert json.loads(create.stdout) == {"rc": 0, "jid": "4243", "err": ""}
    status = hosts.exec("edge", ["curl", "-sf", "http://127.0.0.1:4000/status?name=batch-alba-7a7a"])
    assert status.returncode == 0 and json.loads(status.stdout)["jobs"] == [{"ClusterId": 4243, "JobStatus": 2}]
    gone = hosts.exec("edge", ["curl", "-sf", "-X", "POST", "--data", json.dumps({"name": "batch-alba-7a7a"}),
                               "http://127.0.0.1:4000/delete"])
    assert gone.returncode == 0, gone.stdout
    # a second run changes nothing
    again = hostlib.run_playbook(book, inv, extravars=extra)
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
    ({"interlink_edge_kind": "pbs"}, "must be one of: slurm, htcondor"),
    ({"interlink_edge_kind": "htcondor", "interlink_edge_htcondor_plugin_version": HTCONDOR_VERSION,
      "interlink_edge_htcondor_collector_host": "cm.example.org; rm -rf /",
      "interlink_edge_htcondor_schedd_host": "sn.example.org"}, "are host names"),
])
def test_bad_inputs_stop_the_play_before_anything_changes(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path,
                                                          over: dict[str, object], words: str) -> None:
    hosts, inv, artifacts, book = _setup(test_hosts, tmp_path)
    res = hostlib.run_playbook(book, inv, extravars=_vars(artifacts, **over))
    why = " ".join(m for _, _, m in res.failed)
    assert res.rc != 0 and words in why, why
    assert hosts.exec("edge", "id interlink").returncode != 0
    assert hosts.exec("edge", "test -e /opt/interlink").returncode != 0
