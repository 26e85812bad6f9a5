"""Federated training descriptions: every broken one refused with one line naming the file and the field.

A corpus of single changes to the shipped example (examples/fl/training.yaml), each refused before
anything is generated or any facility is asked: by the models (aiinfn.fl.model), the files the
description names, and the platform (the site's plan: its projects' Kueue queues and accelerator kinds;
the platform registries' hosts and projects). The checks that ask a facility over SSH or the registry's
API run against real SLURM hosts and a registry stand-in in tests/integration/fl.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn.errors import ConfigError
from aiinfn.fl import description, run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fl"

SITE = {
    "kind": "site", "site": "cnaf", "kubeconfig": "kubeconfig",
    "image": "harbor.ai-infn.cloud.cnaf.infn.it/environments/fl-numpy:1.0",
    "dataset": {"claim": "fl-data", "path": "part-a"},
    "resources": {"cpus": 2, "memory_gb": 4, "accelerator": "T4", "time_minutes": 30},
}


#: A facility described as one of site cnaf's offload targets (the shipped sites have none: the tests add two).
OFFLOAD = {
    "kind": "offload", "site": "cnaf", "target": "leonardo", "user": "researcher", "ssh_key": "key",
    "image": "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0", "dataset": "/leonardo/data/fl",
    "partition": "boost_usr_prod", "account": "inf24_fl",
    "resources": {"cpus": 8, "memory_gb": 32, "gpus": 1, "time_minutes": 60},
}
TARGETS = {
    "leonardo": {"kind": "slurm", "endpoint": "https://login.leonardo.cineca.it:8443",
                 "limits": {"max_wall_time_hours": 2, "max_cpu": 32, "max_memory_gb": 64}},
    "htc": {"kind": "htcondor", "endpoint": "https://htc.cr.cnaf.infn.it"},
}


@pytest.fixture(autouse=True)
def _cnaf_offloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Site cnaf as its environment is, plus two offload targets (a SLURM and an HTCondor one)."""
    from aiinfn.config.models import Offload

    real = description.load_site
    auth = {"type": "oidc", "client_id": "interlink-cnaf", "client_secret": "offload-secret",
            "refresh_token_secret": "offload-refresh"}

    def load_site(name: str) -> Any:
        env = real(name)
        if name != "cnaf":
            return env
        targets = {n: {**t, "auth": auth, "cpu": 512, "memory_gb": 2048} for n, t in TARGETS.items()}
        return env.model_copy(update={"offload": Offload.model_validate({"targets": targets})})

    monkeypatch.setattr(description, "load_site", load_site)


def _example(tmp: Path, **top: Any) -> dict[str, Any]:
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((EXAMPLE / "training.yaml").read_text())
    for f in ("train.py", "init.npz"):
        shutil.copyfile(EXAMPLE / f, tmp / f)
    (tmp / "known_hosts").write_text("")
    (tmp / "key").write_text("not a key: only its path is used\n")
    (tmp / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    for f in data["facilities"].values():
        f["ssh_key"] = "key"
    data.update(top)
    return data


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "training.yaml"
    with path.open("w") as fh:
        YAML(typ="safe", pure=True).dump(data, fh)
    return path


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is _DELETE:
        del node[keys[-1]]
    elif isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


_DELETE = object()

#: (change: dotted path -> value, field named in the message, words of the message)
CORPUS: list[tuple[dict[str, Any], str, str]] = [
    ({"facilities.bari.kind": "flux", "facilities.bari.qos": "normal"}, "facilities.bari",
     "qos is a SLURM setting; a flux facility has none"),
    ({"facilities.bari.kind": "htcondor"}, "facilities.bari", "not a facility kind"),
    # a site's offload target: its queue manager and limits come from the site's environment
    ({"facilities.leo": {**OFFLOAD, "site": "nowhere"}}, "facilities.leo.site", "'nowhere' is not a platform site"),
    ({"facilities.leo": {**OFFLOAD, "target": "marconi"}}, "facilities.leo.target",
     "'marconi' is not an offload target of site 'cnaf' (its targets: htc, leonardo)"),
    ({"facilities.leo": {**OFFLOAD, "site": "recas"}}, "facilities.leo.target",
     "is not an offload target of site 'recas' (its targets: none)"),
    ({"facilities.leo": {**OFFLOAD, "target": "htc"}}, "facilities.leo.target", "runs htcondor"),
    ({"facilities.leo": {**OFFLOAD, "resources": {"time_minutes": 180}}}, "facilities.leo.resources.time_minutes",
     "180 is more than offload target 'leonardo' runs (2 h at most)"),
    ({"facilities.leo": {**OFFLOAD, "resources": {"cpus": 64}}}, "facilities.leo.resources.cpus",
     "64 is more than one job may ask of offload target 'leonardo' (32)"),
    ({"facilities.leo": {**OFFLOAD, "resources": {"memory_gb": 128}}}, "facilities.leo.resources.memory_gb",
     "128 is more than one job may ask"),
    ({"facilities.leo": {**OFFLOAD, "endpoint": "https://x"}}, "facilities.leo.endpoint", "unknown field"),
    ({"facilities.leo": {**OFFLOAD, "host": "10.254.7.11"}}, "facilities", "same login node"),
    ({"facilities.leo": {**OFFLOAD, "ssh_key": "no-such-key"}}, "facilities.leo.ssh_key", "not a file on this"),
    ({"facilities.bari.kind": _DELETE}, "facilities.bari", "required"),
    ({"facilities.bari.queue": "debug"}, "facilities.bari.queue", "unknown field 'queue'"),
    ({"facilities.bari.host": "$(reboot)"}, "facilities.bari.host", "not"),
    ({"facilities.bari.user": "root;id"}, "facilities.bari.user", "is not a user name"),
    ({"facilities.bari.partition": "debug --wrap=id"}, "facilities.bari.partition", "not a batch-system name"),
    ({"facilities.bari.dataset": "data/part"}, "facilities.bari.dataset", "not an absolute path"),
    ({"facilities.bari.dataset": "/srv/../etc/shadow"}, "facilities.bari.dataset", "not an absolute path"),
    ({"facilities.bari.dataset": "/srv/data x"}, "facilities.bari.dataset", "not an absolute path"),
    ({"facilities.bari.workdir": "/tmp/`id`"}, "facilities.bari.workdir", "not an absolute path"),
    ({"facilities.bari.image": "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/x:1;id"}, "facilities.bari.image",
     "not an image reference"),
    ({"facilities.bari.resources.accelerator": "T4"}, "facilities.bari", "resources.accelerator is for platform"),
    ({"facilities.bari.resources.time_minutes": 0}, "facilities.bari.resources.time_minutes", "greater than"),
    ({"facilities.bari.host": "10.254.7.11"}, "(root)", "same login node"),
    ({"facilities.Bari": {"kind": "slurm"}}, "facilities.Bari", "not a facility name"),
    ({"entrypoint.args": ["--lr", "0.5; rm -rf ~"]}, "entrypoint.args[1]", "not a plain argument"),
    ({"entrypoint.args": ["--lr", "'0.5'"]}, "entrypoint.args[1]", "not a plain argument"),
    ({"entrypoint.args": ["{{ streamflow_command }}"]}, "entrypoint.args[0]", "template delimiter"),
    ({"entrypoint.args": ["$HOME"]}, "entrypoint.args[0]", "not a plain argument"),
    ({"entrypoint.script": "../train.py"}, "entrypoint.script", "not a relative file path"),
    ({"entrypoint.script": "missing.py"}, "entrypoint.script", "is not a file beside the description"),
    ({"initial_model": "missing.npz"}, "initial_model", "is not a file beside the description"),
    ({"initial_model": "train.py"}, "initial_model", "not an .npz file"),
    ({"facilities.bari.ssh_key": "no-such-key"}, "facilities.bari.ssh_key", "is not a file on this machine"),
    ({"rounds": 0}, "rounds", "greater than or equal to 1"),
    # where the aggregator runs: the controller, or one of the training's HPC facilities
    ({"aggregation.runs_on": "marconi"}, "aggregation.runs_on",
     "'marconi' is not a facility of this training (facilities: bari, bologna; or controller)"),
    ({"aggregation.runs_on": "Bari; id"}, "aggregation.runs_on", "not a facility name"),
    ({"facilities.cnaf": SITE, "aggregation.runs_on": "cnaf"}, "aggregation.runs_on", "'cnaf' is a platform site"),
    ({"aggregation.resources": {"cpus": 2}}, "aggregation.resources", "only for an aggregator at a facility"),
    ({"aggregation.runs_on": "bari", "aggregation.resources": {"gpus": 1}}, "aggregation.resources.gpus",
     "unknown field"),
    ({"aggregation.runs_on": "bari", "aggregation.resources": {"time_minutes": 0}},
     "aggregation.resources.time_minutes", "greater than"),
    ({"facilities.controller": {"kind": "slurm", "host": "10.254.7.99", "user": "researcher", "ssh_key": "key",
                                "image": "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0",
                                "dataset": "/srv/data/x"}},
     "facilities.controller", "'controller' is where aggregation.runs_on puts the aggregator by default"),
    ({"aggregation.method": "median"}, "aggregation.method", "not allowed"),
    ({"kind": "site"}, "", "kind: must be 'federated-training'"),
    # against the platform: sites, projects' queues, accelerator kinds, registries and their projects
    ({"facilities.cnaf": {**SITE, "site": "nowhere"}}, "facilities.cnaf.site", "'nowhere' is not a platform site"),
    ({"facilities.cnaf": SITE, "project": "no-such-project"}, "project",
     "project 'no-such-project' has no batch queue at site 'cnaf'"),
    ({"facilities.cnaf": {**SITE, "resources": {"accelerator": "V70"}}}, "facilities.cnaf.resources.accelerator",
     "'V70' is not offered to project 'lhc-ml' at site 'cnaf'"),
    ({"facilities.cnaf": {**SITE, "resources": {"gpus": 1}}}, "facilities.cnaf", "resources.gpus is for HPC"),
    ({"facilities.cnaf": {**SITE, "kubeconfig": "no-such-file"}}, "facilities.cnaf.kubeconfig", "not a file"),
    ({"facilities.cnaf": {**SITE, "dataset": {"claim": "Fl_Data"}}}, "facilities.cnaf.dataset.claim", "DNS-safe"),
    ({"facilities.bari.image": "docker.io/library/python:3.11"}, "facilities.bari.image",
     "is not in the platform registry"),
    ({"facilities.bari.image": "harbor.ai-infn.cloud.cnaf.infn.it/environments/fl-numpy:1.0"},
     "facilities.bari.image", "an Apptainer image comes from the registry's 'apptainer' project"),
    ({"facilities.cnaf": {**SITE, "image": "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0"}},
     "facilities.cnaf.image", "an OCI image comes from the registry's 'environments' project"),
]


def _check(path: Path) -> None:
    desc = description.load(path)
    description.check_platform(desc)


@pytest.mark.parametrize(("change", "field", "words"), CORPUS, ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(CORPUS)])
def test_broken_description_refused_with_one_line(tmp_path: Path, change: dict[str, Any], field: str,
                                                  words: str) -> None:
    data = _example(tmp_path)
    for dotted, value in change.items():
        _set(data, dotted, value)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        _check(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{description.display(path)}: ")
    if field and field != "(root)":
        assert f": {field}: " in message, message
    assert words in message, message


def test_the_example_is_valid_and_plans_offline(tmp_path: Path) -> None:
    data = _example(tmp_path)
    data["facilities"]["cnaf"] = SITE
    path = _write(tmp_path, data)
    desc = description.load(path)
    planned = run.plan(desc, tmp_path / "state", check_remote=False)
    assert planned.queues["cnaf"].namespace == "lhc-ml" and planned.queues["cnaf"].local_queue == "default"
    assert planned.queues["cnaf"].accelerator_resource == "nvidia.com/gpu"
    assert (planned.generated.root / "streamflow.yml").is_file()


def test_an_offload_target_is_a_facility_described_by_its_site(tmp_path: Path) -> None:
    """A facility named as a site's offload target gets the target's queue manager and login node from the
    site's environment, and is planned like any SLURM facility."""
    data = _example(tmp_path)
    data["facilities"]["leo"] = OFFLOAD
    desc = description.load(_write(tmp_path, data))
    leo = desc.training.hpc()["leo"]
    assert (leo.kind, leo.host, leo.port, leo.offload_of) == ("slurm", "login.leonardo.cineca.it", 22, "cnaf/leonardo")
    assert (leo.partition, leo.account, leo.dataset) == ("boost_usr_prod", "inf24_fl", "/leonardo/data/fl")
    planned = run.plan(desc, tmp_path / "state", check_remote=False)
    models = YAML(typ="safe", pure=True).load(planned.generated.streamflow.read_text())["models"]
    assert models["leo"]["type"] == "slurm" and models["leo"]["config"]["hostname"] == "login.leonardo.cineca.it:22"
    script = (planned.generated.root / "facilities" / "leo.sh").read_text().splitlines()
    assert "#SBATCH --partition=boost_usr_prod" in script and "#SBATCH --time=0-01:00:00" in script
    # a login node other than the interLink edge is named with host
    data["facilities"]["leo"] = {**OFFLOAD, "host": "login02.leonardo.cineca.it"}
    assert description.load(_write(tmp_path, data)).training.hpc()["leo"].host == "login02.leonardo.cineca.it"


def test_cli_refuses_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    data = _example(tmp_path)
    data["entrypoint"]["args"] = ["--lr", "0.5 && curl x | sh"]
    path = _write(tmp_path, data)
    res = subprocess.run([str(Path(sys.executable).parent / "aiinfn"), "fl", "plan", str(path), "--offline",
                          "--state", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "entrypoint.args[1]" in lines[0], res.stderr


def test_description_changed_since_checkpoints_is_not_resumed(tmp_path: Path) -> None:
    """A rerun never mixes checkpoints of another training: changing the description refuses to resume."""
    data = _example(tmp_path)
    desc = description.load(_write(tmp_path, data))
    state = run.State(tmp_path / "state")
    state.write_meta({"digest": "another training"})
    rd = state.rounds / "round-0001"
    rd.mkdir(parents=True)
    shutil.copyfile(EXAMPLE / "init.npz", rd / "model.npz")
    from aiinfn.fl import aggregate

    (rd / "round.json").write_text(f'{{"round": 1, "model_sha256": "{aggregate.sha256(rd / "model.npz")}"}}')
    with pytest.raises(run.RunError, match="changed since rounds were completed"):
        run.run(desc, state.root, check_remote=False)
