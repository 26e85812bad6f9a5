"""What aiinfn hands to StreamFlow, read by StreamFlow itself; the aggregator; the engine's log.

The workflow and every deployment (slurm, pbs and a platform site's helm3) of a description are
checked with StreamFlow 0.1.6's own schema validator, built into its own connector classes (as its
deployment manager does, without connecting) and loaded by cwltool as StreamFlow loads them. The site's
worker Deployment is checked against the Kubernetes 1.33 schemas and Pod Security ``restricted``, and
carries the project's Kueue LocalQueue. A platform site cannot be run here (no Kubernetes API server,
no helm): these offline checks are what covers that facility kind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pytest
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.fl import aggregate, description, engine, run, workflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support" / "security"))
import pss

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fl"
SITE = {
    "kind": "site", "site": "cnaf", "kubeconfig": "kubeconfig",
    "image": "harbor.ai-infn.cloud.cnaf.infn.it/environments/fl-numpy:1.0",
    "dataset": {"claim": "fl-data", "path": "part-a"},
    "resources": {"cpus": 2, "memory_gb": 4, "accelerator": "A100-80GB/1g.10gb", "time_minutes": 30},
}


def _example_in(tmp_path: Path) -> dict[str, Any]:
    """The shipped example's description, its files copied into ``tmp_path`` with a placeholder key and
    known_hosts (planning reads only their paths)."""
    data: dict[str, Any] = YAML(typ="safe", pure=True).load((EXAMPLE / "training.yaml").read_text())
    for f in ("train.py", "init.npz"):
        shutil.copyfile(EXAMPLE / f, tmp_path / f)
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "key").write_text("only the path is used\n")
    for f in data["facilities"].values():
        f["ssh_key"] = "key"
    return data


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> run.Planned:
    tmp_path = tmp_path_factory.mktemp("fl-plan")
    yaml = YAML(typ="safe", pure=True)
    data = _example_in(tmp_path)
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    data["facilities"]["bari"].update(kind="pbs", partition="workq", account="inf24_fl",
                                      resources={"cpus": 4, "memory_gb": 8, "gpus": 1, "time_minutes": 90})
    data["facilities"]["leonardo"] = {**data["facilities"]["bologna"], "kind": "flux", "host": "10.254.7.13",
                                      "partition": "batch", "account": "inf24_fl",
                                      "resources": {"cpus": 8, "memory_gb": 16, "gpus": 2, "time_minutes": 45}}
    data["facilities"]["cnaf"] = SITE
    with (tmp_path / "training.yaml").open("w") as fh:
        yaml.dump(data, fh)
    desc = description.load(tmp_path / "training.yaml")
    return run.plan(desc, tmp_path / "state", check_remote=False)


def test_streamflow_reads_the_workflow_and_one_deployment_per_facility(planned: run.Planned) -> None:
    from streamflow.config.config import WorkflowConfig
    from streamflow.config.validator import SfValidator
    from streamflow.deployment.connector.kubernetes import Helm3Connector
    from streamflow.deployment.connector.queue_manager import PBSConnector, SlurmConnector
    from streamflow.deployment.connector.ssh import SSHConnector
    from streamflow.deployment.deployment_manager import connector_classes

    gen = planned.generated
    config = SfValidator().validate_file(str(gen.streamflow))
    models = config["models"]
    assert {n: m["type"] for n, m in models.items()} == {"bologna": "slurm", "bari": "pbs", "leonardo": "ssh",
                                                         "cnaf": "helm3"}
    built = {n: connector_classes[m["type"]](str(gen.root), **m["config"]) for n, m in models.items()}
    assert isinstance(built["bologna"], SlurmConnector) and isinstance(built["bari"], PBSConnector)
    assert isinstance(built["cnaf"], Helm3Connector) and built["cnaf"].namespace == "lhc-ml"
    # the Flux facility: StreamFlow's SSH connector with aiinfn's job template (0.1.6 has no Flux connector)
    assert isinstance(built["leonardo"], SSHConnector) and built["leonardo"].template is not None
    assert list(built["leonardo"].nodes) == ["10.254.7.13:22"] and built["leonardo"].checkHostKey is True
    assert models["bologna"]["config"]["checkHostKey"] is True
    # every train step is bound to its facility's deployment; the aggregation stays on the controller
    wc = WorkflowConfig(workflow.WORKFLOW_NAME, config)
    from pathlib import PurePosixPath

    assert planned.generated.last == run.rounds_per_run(4) == 3  # 4 facilities: 64 paths, 3 rounds at a time
    for number in range(1, planned.generated.last + 1):
        for name in ("bologna", "bari", "leonardo", "cnaf"):
            target = wc.propagate(PurePosixPath(f"/{workflow.train_step(number, name)}"), "target")
            assert target["model"] == name
        assert wc.propagate(PurePosixPath(f"/{workflow.aggregate_step(number)}"), "target") is None


def test_the_dataset_is_never_a_file_the_engine_could_stage(planned: run.Planned) -> None:
    wf = YAML(typ="safe", pure=True).load(planned.generated.workflow.read_text())
    for name, step in wf["steps"].items():
        tool = step["run"]
        assert all(t in ("File", "File[]") or t["type"] in ("File", "File[]") for t in tool["inputs"].values())
        if name.startswith("train-"):
            assert set(tool["inputs"]) == {"task", "entry", "model"}
            values = [a["valueFrom"] for a in tool["arguments"]]
            facility = name.split("-", 2)[2]
            f = planned.desc.training.facilities[facility]
            expected = f.dataset if hasattr(f, "host") else workflow.SITE_DATA_MOUNT
            assert values[values.index("--dataset") + 1] == expected
    inputs = YAML(typ="safe", pure=True).load(planned.generated.inputs.read_text())
    assert set(inputs) == {"model", "task", "entry", "aggregate"}


def test_batch_scripts_carry_the_round_resources_and_run_in_the_image(planned: run.Planned) -> None:
    root = planned.generated.root / "facilities"
    slurm = (root / "bologna.sh").read_text().splitlines()
    assert "#SBATCH --cpus-per-task=1" in slurm and "#SBATCH --mem=1024M" in slurm
    assert "#SBATCH --time=0-00:10:00" in slurm and "#SBATCH --partition=debug" in slurm
    assert slurm[-1] == ("apptainer exec --bind /srv/data/fl-bologna:/srv/data/fl-bologna:ro --bind /tmp/aiinfn-fl "
                         "oras://harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0 {{ streamflow_command }}")
    pbs = (root / "bari.sh").read_text().splitlines()
    assert "#PBS -l select=1:ncpus=4:mem=8192mb:ngpus=1" in pbs and "#PBS -l walltime=01:30:00" in pbs
    assert "#PBS -q workq" in pbs and "#PBS -A inf24_fl" in pbs and pbs[-1].startswith("apptainer exec --nv ")
    flux = (root / "leonardo.sh").read_text().splitlines()
    job = flux[flux.index(f"cat > \"$job\" <<'{workflow.FLUX_JOB_END}'") + 1:flux.index(workflow.FLUX_JOB_END)]
    assert job[0] == "#!/bin/sh" and [d for d in job if d.startswith("#flux:")] == [
        "#flux: --job-name=aiinfn-fl-logreg-example-leonardo", "#flux: --nodes=1", "#flux: --nslots=1",
        "#flux: --cores-per-slot=8", "#flux: --time-limit=45m", "#flux: --gpus-per-slot=2", "#flux: --queue=batch",
        "#flux: --bank=inf24_fl"]
    assert job[-1].startswith("apptainer exec --nv --bind /srv/data/fl-bologna:/srv/data/fl-bologna:ro ")
    assert 'id=$(flux batch --output="$job.out" "$job") || exit 1' in flux and flux[-1] == 'exit "$status"'
    # the only template expression is StreamFlow's own command
    for script in (root / "bologna.sh", root / "bari.sh", root / "leonardo.sh"):
        assert script.read_text().count("{{") == 1


def test_site_worker_is_a_valid_deployment_admitted_through_the_project_queue(planned: run.Planned) -> None:
    text = (planned.generated.root / "facilities" / "cnaf" / "chart" / "templates" / "worker.yaml").read_text()
    (obj,) = list(YAML(typ="safe", pure=True).load_all(text))
    kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    pod = obj["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels[workflow.QUEUE_LABEL] == "default" and labels[workflow.PRIORITY_LABEL] == "batch"
    assert obj["metadata"]["namespace"] == "lhc-ml"
    assert labels["app.kubernetes.io/instance"] == workflow.release_name("logreg-example", "cnaf")
    container = pod["spec"]["containers"][0]
    resource = planned.queues["cnaf"].accelerator_resource
    assert resource is not None and container["resources"]["limits"][resource] == "1"
    volume = pod["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"] == {"claimName": "fl-data", "readOnly": True}
    assert container["volumeMounts"][0] == {"name": "dataset", "mountPath": "/data", "readOnly": True,
                                            "subPath": "part-a"}
    assert pss.violations(obj, "restricted") == []


def _update(tmp: Path, name: str, w: np.ndarray, samples: int, number: int = 1) -> tuple[Path, Path]:
    u = tmp / f"update-{name}.npz"
    np.savez(u, w=w, b=np.array([float(samples)]))
    r = tmp / f"result-{name}.json"
    r.write_text(json.dumps({"facility": name, "round": number, "samples": samples, "metrics": {"loss": 1.0},
                             "update_sha256": aggregate.sha256(u)}))
    return u, r


def test_aggregation_is_the_sample_weighted_average(tmp_path: Path) -> None:
    a = _update(tmp_path, "a", np.array([1.0, 2.0]), 100)
    b = _update(tmp_path, "b", np.array([3.0, -2.0]), 300)
    rec = aggregate.aggregate(1, "fedavg", [a[0], b[0]], [b[1], a[1]], tmp_path / "ck", tmp_path / "model.npz")
    model = aggregate.load_arrays(tmp_path / "model.npz")
    np.testing.assert_allclose(model["w"], 0.25 * np.array([1.0, 2.0]) + 0.75 * np.array([3.0, -2.0]))
    assert rec["weights"] == {"a": 0.25, "b": 0.75}
    done = tmp_path / "ck" / "round-0001"
    assert sorted(p.name for p in done.iterdir()) == ["model.npz", "results", "round.json", "updates"]
    mean = aggregate.aggregate(1, "mean", [a[0], b[0]], [a[1], b[1]], tmp_path / "ck2", tmp_path / "m2.npz")
    assert mean["weights"] == {"a": 0.5, "b": 0.5}


def test_aggregation_refuses_an_update_that_is_not_the_one_reported(tmp_path: Path) -> None:
    a = _update(tmp_path, "a", np.array([1.0, 2.0]), 100)
    b = _update(tmp_path, "b", np.array([3.0, 2.0]), 100)
    np.savez(b[0], w=np.array([9.0, 9.0]), b=np.array([0.0]))  # changed after its result was written
    with pytest.raises(aggregate.AggregationError, match="did not arrive intact"):
        aggregate.aggregate(1, "fedavg", [a[0], b[0]], [a[1], b[1]], tmp_path / "ck", tmp_path / "m.npz")
    c = _update(tmp_path, "c", np.array([1.0, 2.0, 3.0]), 100)
    with pytest.raises(aggregate.AggregationError, match="is float64"):
        aggregate.aggregate(1, "fedavg", [a[0], c[0]], [a[1], c[1]], tmp_path / "ck", tmp_path / "m.npz")
    assert not (tmp_path / "ck" / "round-0001").exists()


LOG = """\
2026-12-01 11:23:18.000 INFO     Executing job /train-r0003-bari/run/nDMqPF on resource 10.0.0.2:22 into directory /w/TnEJ:
python3 \\
2026-12-01 11:23:18.100 INFO     Scheduled job /train-r0003-bari/run/nDMqPF with job id 17
2026-12-01 11:23:21.000 ERROR    Job /train-r0003-bari/run/nDMqPF failed with error:
\taiinfn-fl task: facility bari: the entry point exited 1 in round 3
2026-12-01 11:23:21.010 INFO     Step /train-r0003-bari/run terminated with status FAILED
2026-12-01 11:23:22.000 INFO     Copying /w/TnEJ/update-bari.npz on resource 10.0.0.2:22 to /l/u/update-bari.npz on local file-system
2026-12-01 11:23:22.500 INFO     Executing job /aggregate-r0002/run/xyz locally into directory /l/agg2:
2026-12-01 11:23:23.000 INFO     Copying /l/agg2/model.npz on local file-system to /w/x/model.npz on resource 10.0.0.2:22
"""  # noqa: E501 - StreamFlow's log lines as it writes them


def test_engine_log_gives_steps_jobs_failures_and_copies() -> None:
    log = engine.EngineLog({"10.0.0.2:22": "bari"}, first_round=2)
    for line in LOG.splitlines():
        log.feed(line)
    rec = log.steps["train-r0003-bari"]
    assert (rec.round, rec.facility, rec.job_id, rec.status) == (3, "bari", "17", "FAILED")
    assert rec.seconds == pytest.approx(3.01)
    assert log.failed_step() is rec
    assert run._first_error(rec) == "facility bari: the entry point exited 1 in round 3"
    log.settle()
    assert [(c.round, c.direction) for c in log.copies] == [(3, "to"), (3, "from")]


def test_registry_asks_harbor_for_the_artifact(tmp_path: Path) -> None:
    from aiinfn.fl import registry

    url = registry.artifact_url("https://h", "h/apptainer/team/fl-numpy:1.0")
    assert url == "https://h/api/v2.0/projects/apptainer/repositories/team%252Ffl-numpy/artifacts/1.0"
    digest = "sha256:" + "a" * 64
    assert registry.artifact_url("https://h", f"h/environments/x@{digest}").endswith(f"/artifacts/{digest}")



def test_an_aggregator_at_a_facility_is_a_job_of_its_queue_manager(tmp_path: Path) -> None:
    """``aggregation.runs_on: bologna``: every round's aggregation is bound to a deployment of bologna's SLURM
    of its own, whose batch script asks for the aggregation's resources and binds no dataset; a controller
    step after it writes the checkpoint and gives the next round its model. StreamFlow and cwltool read it."""
    from pathlib import PurePosixPath

    from streamflow.config.config import WorkflowConfig
    from streamflow.config.validator import SfValidator

    yaml = YAML(typ="safe", pure=True)
    data = _example_in(tmp_path)
    data["aggregation"] = {"method": "fedavg", "runs_on": "bologna", "resources": {"cpus": 2, "memory_gb": 0.5,
                                                                                   "time_minutes": 5}}
    with (tmp_path / "training.yaml").open("w") as fh:
        yaml.dump(data, fh)
    planned = run.plan(description.load(tmp_path / "training.yaml"), tmp_path / "state", check_remote=False)
    gen = planned.generated
    config = SfValidator().validate_file(str(gen.streamflow))
    agg = config["models"][workflow.aggregator_model("bologna")]
    assert agg["type"] == "slurm" and agg["config"]["hostname"] == config["models"]["bologna"]["config"]["hostname"]
    script = (gen.root / agg["config"]["file"]).read_text().splitlines()
    assert "#SBATCH --job-name=aiinfn-fl-logreg-example.aggregate" in script
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=512M" in script
    assert "#SBATCH --time=0-00:05:00" in script and "#SBATCH --partition=debug" in script
    assert script[-1] == ("apptainer exec --bind /tmp/aiinfn-fl/aggregate "
                          "oras://harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0 {{ streamflow_command }}")
    assert "/srv/data" not in "\n".join(script)
    wc = WorkflowConfig(workflow.WORKFLOW_NAME, config)
    assert gen.last == run.rounds_per_run(2, True) == 2
    wf = yaml.load(gen.workflow.read_text())
    for number in range(1, gen.last + 1):
        target = wc.propagate(PurePosixPath(f"/{workflow.aggregate_step(number)}"), "target")
        assert target["model"] == "bologna.aggregator"
        assert wc.propagate(PurePosixPath(f"/{workflow.checkpoint_step(number)}"), "target") is None
        tool = wf["steps"][workflow.aggregate_step(number)]["run"]
        assert tool["baseCommand"] == ["python3"] and "--checkpoints" not in [a["valueFrom"] for a in tool["arguments"]]
        if number > 1:  # a round trains from the model checkpointed on the controller
            for name in ("bologna", "bari"):
                assert wf["steps"][workflow.train_step(number, name)]["in"]["model"] == (
                    f"{workflow.checkpoint_step(number - 1)}/model")
    assert wf["outputs"]["final_model"]["outputSource"] == f"{workflow.checkpoint_step(gen.last)}/model"
    run.check_generated(gen)


def test_the_controller_checkpoints_what_a_facility_aggregated(tmp_path: Path) -> None:
    """The aggregation at a facility writes the model and its record; the controller's step checks both and
    the updates against the record, then writes the checkpoint a rerun resumes from."""
    a = _update(tmp_path, "a", np.array([1.0, 2.0]), 100)
    b = _update(tmp_path, "b", np.array([3.0, -2.0]), 300)
    at = tmp_path / "facility"
    at.mkdir()
    record, _ = aggregate.compute(1, "fedavg", [a[0], b[0]], [a[1], b[1]], at / "model.npz", "bologna")
    (at / "round.json").write_text(json.dumps(record))
    assert record["aggregated_on"]["runs_on"] == "bologna"
    out = aggregate.checkpoint(1, at / "round.json", at / "model.npz", [b[0], a[0]], tmp_path / "ck",
                               tmp_path / "n.npz")
    assert out["model_sha256"] == aggregate.sha256(tmp_path / "n.npz")
    state = run.State(tmp_path)
    (tmp_path / "ck").rename(state.rounds)
    assert [r["round"] for r in state.completed()] == [1]
    model = aggregate.load_arrays(state.round_model(1))
    np.testing.assert_allclose(model["w"], 0.25 * np.array([1.0, 2.0]) + 0.75 * np.array([3.0, -2.0]))
    # a model changed on the way back is not checkpointed
    np.savez(at / "model.npz", w=np.array([0.0, 0.0]), b=np.array([0.0]))
    with pytest.raises(aggregate.AggregationError, match="did not come back from the aggregator intact"):
        aggregate.checkpoint(1, at / "round.json", at / "model.npz", [a[0], b[0]], tmp_path / "ck2", tmp_path / "m")
    assert not (tmp_path / "ck2" / "round-0001").exists()


AGG_LOG = """\
2026-12-01 11:23:18.000 INFO     Executing job /train-r0001-bari/run/a on resource 10.0.0.2:22 into directory /w/T1:
2026-12-01 11:23:20.000 INFO     Step /train-r0001-bari/run terminated with status COMPLETED
2026-12-01 11:23:20.100 INFO     Copying /w/T1/update-bari.npz on resource 10.0.0.2:22 to /l/u/update-bari.npz on local file-system
2026-12-01 11:23:20.200 INFO     Copying /l/u/update-bari.npz on local file-system to /w/aggregate/x/update-bari.npz on resource 10.0.0.2:22
2026-12-01 11:23:20.300 INFO     Executing job /aggregate-r0001/run/b on resource 10.0.0.2:22 into directory /w/aggregate/A1:
2026-12-01 11:23:20.400 INFO     Scheduled job /aggregate-r0001/run/b with job id 31
2026-12-01 11:23:22.000 INFO     Step /aggregate-r0001/run terminated with status COMPLETED
2026-12-01 11:23:22.100 INFO     Copying /w/aggregate/A1/model.npz on resource 10.0.0.2:22 to /l/m/model.npz on local file-system
2026-12-01 11:23:22.300 INFO     Executing job /checkpoint-r0001/run/c locally into directory /l/ck1:
2026-12-01 11:23:22.500 INFO     Step /checkpoint-r0001/run terminated with status COMPLETED
"""  # noqa: E501 - StreamFlow's log lines as it writes them


def test_engine_log_keeps_the_aggregators_copies_apart_from_its_facilitys(tmp_path: Path) -> None:
    log = engine.EngineLog({"10.0.0.2:22": "bari"}, first_round=1, aggregator=("10.0.0.2:22", "/w/aggregate"))
    for line in AGG_LOG.splitlines():
        log.feed(line)
    log.settle()
    agg, ck = log.steps["aggregate-r0001"], log.steps["checkpoint-r0001"]
    assert (agg.stage, agg.job_id, agg.resource, ck.stage, ck.resource) == ("aggregate", "31", "10.0.0.2:22",
                                                                              "checkpoint", None)
    assert [(c.facility, c.direction, c.round) for c in log.copies] == [
        (engine.AGGREGATOR, "to", 1), ("bari", "from", 1), (engine.AGGREGATOR, "from", 1)]


def test_only_a_refused_ssh_channel_is_handed_over_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A login node refusing one more SSH channel for a moment is retried from the last checkpoint; a
    failing entry point, or a facility that is down, is not."""
    refused = engine.EngineLog({}, first_round=1)
    refused.feed("2026-12-01 16:50:22.882 ERROR    open failed")
    failing = engine.EngineLog({"10.0.0.2:22": "bari"}, first_round=2)
    for line in LOG.splitlines():
        failing.feed(line)
    desc = object()  # only _unreachable reads it, and it is replaced here
    monkeypatch.setattr(run, "_unreachable", lambda _d: [])
    assert run._transient(desc, refused) and not run._transient(desc, failing)  # type: ignore[arg-type]
    monkeypatch.setattr(run, "_unreachable", lambda _d: ["bari"])
    assert not run._transient(desc, refused)  # type: ignore[arg-type]
