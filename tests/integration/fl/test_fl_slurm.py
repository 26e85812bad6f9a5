"""Federated training across real SLURM facilities (and PBS/Flux stand-ins), through the real StreamFlow 0.1.6.

Three test hosts act as HPC facilities, each its own SLURM (Debian's slurmctld and slurmd) reached over
SSH as an unprivileged researcher; ``aiinfn fl`` runs from the hosts' network as a researcher's machine
would. What is not real, and why: Apptainer (not packaged for Debian bookworm) is a stand-in that checks
the image is on the facility and runs the step on the host's python3 and numpy, without a container;
the registry is a stand-in of Harbor's artifact API (tests/support/slurm/registry_standin.py), asked
over HTTP exactly as a Harbor would be; PBS and Flux (neither packaged for Debian bookworm) are stand-ins
of their commands on two of the hosts (tests/support/batch_standins), driven through the real engine.
The platform-site facility kind (StreamFlow's helm3 connector) needs a Kubernetes API server, which does
not run here: its generated deployment is checked offline (tests/unit/test_fl_workflow.py) and never runs.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import fl_setup
import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fl"
sys.path.insert(0, str(EXAMPLE))

import central  # noqa: E402 - examples/fl

#: How far the federated model's test accuracy may fall below the centrally trained one's.
ACCURACY_TOLERANCE = 0.02


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]


def _files_with_digest(setup: fl_setup.Setup, host: str | None, digest: str, size: int,
                       roots: tuple[str, ...]) -> list[str]:
    """Files under ``roots`` (of a facility, or of this machine when ``host`` is None) with this content."""
    found = []
    if host is None:
        for root in roots:
            for p in Path(root).rglob("*"):
                if p.is_file() and not p.is_symlink() and p.stat().st_size == size and _sha(p.read_bytes()) == digest:
                    found.append(str(p))
        return found
    dirs = " ".join(roots)
    res = setup.facilities.exec(host, f"find {dirs} -xdev -type f -size {size}c -exec sha256sum {{}} + 2>/dev/null",
                                check=False)
    return [line.split()[1] for line in res.stdout.splitlines() if line.split()[:1] == [digest]]


def test_example_trains_across_two_slurm_facilities(facilities: fl_setup.Setup) -> None:
    """The example on two facilities: every round's job through each SLURM, the data never leaves its
    facility, the aggregate is the weighted average of the round's updates, and the federated model is as
    accurate as the same model trained centrally on the union of the data."""
    setup, names = facilities, ["bologna", "bari"]
    desc = fl_setup.write_description(setup.work / "two.yaml", setup.facilities, names)
    state = setup.work / "state-two"
    res = setup.aiinfn("plan", str(desc), state=state)
    assert res.returncode == 0, res.stderr[-3000:]
    res = setup.aiinfn("run", str(desc), state=state)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((state / "report.json").read_text())
    rounds = report["rounds_total"]
    assert report["rounds_done"] == rounds == 8

    # every round's job went through each facility's own SLURM, as the researcher, in the image
    for name in names:
        jobs = [j for j in setup.facilities.jobs(name) if j["JobName"] == f"aiinfn-fl-logreg-example-{name}"]
        assert len(jobs) == rounds and {j["State"] for j in jobs} == {"COMPLETED"}, jobs
        assert {j["User"].split("(")[0] for j in jobs} == {"researcher"} and {j["NodeList"] for j in jobs} == {name}
        recorded = sorted(int(r["facilities"][name]["job_id"]) for r in report["rounds"])
        assert recorded == sorted(int(j["JobID"]) for j in jobs)
        calls = setup.facilities.apptainer_calls(name)
        assert len(calls) == rounds
        data = fl_setup.dataset_path(name)
        assert all(c["image"] == f"oras://{fl_setup.IMAGE}" and f"{data}:{data}:ro" in c["binds"] for c in calls)

    # the data never left its facility: no file with its content anywhere else, no engine copy of it
    for name in names:
        data = setup.facilities.hosts.read(name, f"{fl_setup.dataset_path(name)}/train.npz")
        digest = _sha(data)
        assert not _files_with_digest(setup, None, digest, len(data), (str(setup.work), "/tmp/streamflow"))
        for other in names:
            if other != name:
                assert not _files_with_digest(setup, other, digest, len(data), ("/tmp", "/home", "/srv", "/var/tmp"))
        copies = json.loads((state / "runs" / "0001" / "engine.json").read_text())["copies"]
        assert copies and not [c for c in copies if c["path"].startswith(fl_setup.dataset_path(name))]

    # the aggregate of every round is the sample-weighted average of the facilities' updates of that round,
    # and every facility started the round from the previous round's global model
    previous = hashlib.sha256((setup.work / "init.npz").read_bytes()).hexdigest()
    for number in range(1, rounds + 1):
        d = state / "rounds" / f"round-{number:04d}"
        results = {n: json.loads((d / "results" / f"{n}.json").read_text()) for n in names}
        updates = {n: _load(d / "updates" / f"{n}.npz") for n in names}
        total = sum(r["samples"] for r in results.values())
        expected = {k: sum(results[n]["samples"] / total * updates[n][k] for n in names) for k in updates[names[0]]}
        model = _load(d / "model.npz")
        for k, v in expected.items():
            np.testing.assert_allclose(model[k], v, rtol=1e-12, atol=1e-15)
        assert {r["model_sha256"] for r in results.values()} == {previous}
        previous = json.loads((d / "round.json").read_text())["model_sha256"]

    # as accurate as the same model trained centrally on the union of the data (same steps in all)
    federated = central.test_accuracy(_load(state / "model.npz"), names)
    centrally = central.test_accuracy(central.central_model(names, rounds=rounds, epochs=10, lr=0.5), names)
    assert federated >= centrally - ACCURACY_TOLERANCE, (federated, centrally)

    res = setup.aiinfn("status", str(desc), state=state)
    assert res.returncode == 0 and f"{rounds} of {rounds} rounds complete" in res.stdout.replace("\n", " ")


def test_a_facility_that_dies_mid_round_is_named_and_a_rerun_resumes(facilities: fl_setup.Setup) -> None:
    """Powering a facility off while the training runs stops it with one line naming the facility and the
    round; once the facility is back, a rerun does only the rounds left, from the last complete one."""
    setup, names = facilities, ["bologna", "leonardo"]
    desc = fl_setup.write_description(setup.work / "failing.yaml", setup.facilities, names, rounds=6)
    state = setup.work / "state-failing"
    argv = [str(Path(sys.executable).parent / "aiinfn"), "fl", "run", str(desc), "--state", str(state),
            "--registry-url", setup.registry_url]
    proc = setup.facilities.hub_popen(argv, cwd=setup.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (state / "rounds" / "round-0002" / "round.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "round 2 never completed"
            time.sleep(0.2)
        setup.facilities.kill("leonardo")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    res = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    assert res.returncode == 1, err[-3000:]
    line = _one_line_error(res)
    done = len(sorted((state / "rounds").glob("round-[0-9][0-9][0-9][0-9]")))
    assert 2 <= done < 6
    assert "facility leonardo" in line and f"in round {done + 1}" in line and "resume" in line, line
    kept = {n: (state / "rounds" / f"round-{n:04d}" / "round.json").read_text() for n in range(1, done + 1)}

    setup.facilities.revive("leonardo")
    runs_before = len(list((state / "runs").iterdir()))
    res = setup.aiinfn("run", str(desc), state=state)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed after round {done}" in res.stdout.replace("\n", " ")
    report = json.loads((state / "report.json").read_text())
    assert report["rounds_done"] == 6
    # the rounds done before the failure are untouched; the rerun handed the engine only the others
    assert all((state / "rounds" / f"round-{n:04d}" / "round.json").read_text() == kept[n] for n in kept)
    rerun = sorted((state / "runs").iterdir())[runs_before:]
    handed = {s["round"] for r in rerun for s in json.loads((r / "engine.json").read_text())["steps"].values()}
    assert handed == set(range(done + 1, 7))
    # round done + 1 started from round done's model
    first = json.loads((state / "rounds" / f"round-{done + 1:04d}" / "round.json").read_text())
    before = json.loads(kept[done])["model_sha256"]
    assert {r["model_sha256"] for r in first["facilities"].values()} == {before}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"dataset": "/srv/data/fl-nowhere"}, "facilities.bari.dataset", "does not exist on facility bari"),
    ({"image": "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:9.9"}, "facilities.bari.image",
     "is not in the registry"),
    ({"partition": "gpu-long"}, "facilities.bari.partition", "is not a partition of facility bari"),
])
def test_bad_descriptions_are_refused_by_what_the_facility_and_registry_say(
        facilities: fl_setup.Setup, change: dict[str, str], field: str, words: str) -> None:
    """What only the facility (over SSH) or the registry (its API) can tell is refused with one line naming
    the field, before anything is submitted anywhere."""
    setup = facilities
    desc = fl_setup.write_description(setup.work / "bad.yaml", setup.facilities, ["bologna", "bari"])
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    data = yaml.load(desc.read_text())
    data["facilities"]["bari"].update(change)
    with desc.open("w") as fh:
        yaml.dump(data, fh)
    before = len(setup.facilities.jobs("bari"))
    res = setup.aiinfn("run", str(desc), state=setup.work / "state-bad")
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line_error(res)
    assert f"bad.yaml: {field}:" in line and words in line, line
    assert len(setup.facilities.jobs("bari")) == before


def test_pbs_and_flux_facilities_run_through_the_engine_with_stand_ins(facilities: fl_setup.Setup) -> None:
    """A training over a SLURM facility (real), a PBS facility and a Flux facility, through the real
    StreamFlow 0.1.6: its PBS connector for the PBS one, its SSH connector running aiinfn's Flux job template
    for the Flux one (0.1.6 has no Flux connector). Gap: neither PBS nor Flux is packaged for Debian
    bookworm, so their commands are stand-ins (tests/support/batch_standins/batch_standin.py) that check
    every option and directive they get and run the job script for real as the researcher, without
    scheduling or resource limits; the round's training, the image check (the Apptainer stand-in) and the
    aggregation are real. Every round's job went through the facility's queue manager with the round's
    resources as directives, the job ids in the report are the queue managers', and the aggregate is the
    sample-weighted average of the round's updates.

    The aggregator runs at the SLURM facility (``aggregation.runs_on: bologna``): every round's aggregation
    is a job of bologna's own SLURM (its sacct records, with the job ids the report names), the report names
    bologna as where each round was aggregated, and the checkpoints are on the controller."""
    setup, names = facilities, ["bologna", "bari", "leonardo"]
    fl_setup.install_batch_standin(setup.facilities, "bari", "pbs", ["workq"])
    fl_setup.install_batch_standin(setup.facilities, "leonardo", "flux", ["batch"])
    rounds = 2
    desc = fl_setup.write_description(setup.work / "mixed.yaml", setup.facilities, names, rounds=rounds)
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    data = yaml.load(desc.read_text())
    data["facilities"]["bari"].update(kind="pbs", partition="workq", account="inf24_fl")
    data["facilities"]["leonardo"].update(kind="flux", partition="batch", account="inf24_fl",
                                          resources={"cpus": 1, "memory_gb": 1, "time_minutes": 7})
    data["aggregation"] = {"method": "fedavg", "runs_on": "bologna", "resources": {"cpus": 1, "memory_gb": 0.5,
                                                                                   "time_minutes": 5}}
    with desc.open("w") as fh:
        yaml.dump(data, fh)
    state = setup.work / "state-mixed"
    res = setup.aiinfn("run", str(desc), state=state)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((state / "report.json").read_text())
    assert report["rounds_done"] == rounds and report["facilities"] == {"bari": "pbs", "bologna": "slurm",
                                                                         "leonardo": "flux"}
    # the jobs the engine ran, hand-over by hand-over: one per facility and round, and again for a round whose
    # hand-over was retried after a login node refused an SSH channel (aiinfn.fl.run._transient)
    ran_steps = [st for r in sorted((state / "runs").iterdir())
                 for st in json.loads((r / "engine.json").read_text())["steps"].values() if st["started"] is not None]
    jobs_of = {n: sum(1 for st in ran_steps if st["facility"] == n) for n in names}
    aggregated = sum(1 for st in ran_steps if st["stage"] == "aggregate")
    assert min(jobs_of.values()) >= rounds and aggregated >= rounds, (jobs_of, aggregated)

    pbs = [c for c in fl_setup.batch_calls(setup.facilities, "bari") if c["prog"] == "qsub"]
    assert [c.get("error") for c in pbs] == [None] * jobs_of["bari"], pbs
    assert {(c["queue"], c["account"], c["select"], c["walltime"]) for c in pbs} == {
        ("workq", "inf24_fl", "select=1:ncpus=1:mem=1024mb", "00:10:00")}
    flux = [c for c in fl_setup.batch_calls(setup.facilities, "leonardo") if c["prog"] == "flux"]
    submitted = [c for c in flux if c["argv"][0] == "batch"]
    assert len(submitted) == jobs_of["leonardo"] and not [c for c in flux if "error" in c], flux
    assert {json.dumps(c["directives"], sort_keys=True) for c in submitted} == {json.dumps({
        "job-name": "aiinfn-fl-logreg-example-leonardo", "nodes": "1", "nslots": "1", "cores-per-slot": "1",
        "time-limit": "7m", "queue": "batch", "bank": "inf24_fl"}, sort_keys=True)}
    assert sorted(c["exit_status"] for c in flux if c["argv"][:2] == ["job", "attach"]) == [0] * jobs_of["leonardo"]

    # the report's job ids are the ones each queue manager gave; every job ran in the image
    for name, calls in (("bari", pbs), ("leonardo", submitted)):
        assert {r["facilities"][name]["job_id"] for r in report["rounds"]} <= {c["job"] for c in calls}
    for name in ("bari", "leonardo"):
        ran = [c for c in setup.facilities.apptainer_calls(name) if not c["job"]]
        assert len(ran) >= rounds and all(c["image"] == f"oras://{fl_setup.IMAGE}" for c in ran)

    # every round's aggregation was a job of bologna's SLURM, as the researcher, with its own resources
    aggregations = [j for j in setup.facilities.jobs("bologna") if j["JobName"] == "aiinfn-fl-logreg-example.aggregate"]
    assert len(aggregations) == aggregated and {j["State"] for j in aggregations} == {"COMPLETED"}, aggregations
    assert {j["User"].split("(")[0] for j in aggregations} == {"researcher"}
    assert report["aggregator"] == "bologna"
    assert [(r["aggregation"]["runs_on"], r["aggregation"]["host"]) for r in report["rounds"]] == [
        ("bologna", "bologna")] * rounds
    assert len({r["aggregation"]["job_id"] for r in report["rounds"]}) == rounds
    assert {r["aggregation"]["job_id"] for r in report["rounds"]} <= {j["JobID"] for j in aggregations}
    assert all(r["aggregation"]["sent"] > 0 and r["aggregation"]["received"] > 0 for r in report["rounds"])
    assert "| bologna (job " in (state / "report.md").read_text()

    # each round is its own hand-over to the engine here (3 facilities, aggregator at one: rounds_per_run is
    # 1), so round 2 started from round 1's checkpoint on the controller, as a resumed run does
    assert len({r["run"] for r in report["rounds"]}) == rounds
    previous = _sha((setup.work / "init.npz").read_bytes())
    for number in range(1, rounds + 1):
        d = state / "rounds" / f"round-{number:04d}"
        results = {n: json.loads((d / "results" / f"{n}.json").read_text()) for n in names}
        updates = {n: _load(d / "updates" / f"{n}.npz") for n in names}
        assert {r["model_sha256"] for r in results.values()} == {previous}
        previous = json.loads((d / "round.json").read_text())["model_sha256"]
        # the updates kept on the controller are the ones each facility's job produced (its own digest)
        assert all(_sha((d / "updates" / f"{n}.npz").read_bytes()) == results[n]["update_sha256"] for n in names)
        total = sum(r["samples"] for r in results.values())
        model = _load(d / "model.npz")
        for k in model:
            np.testing.assert_allclose(model[k], sum(results[n]["samples"] / total * updates[n][k] for n in names),
                                       rtol=1e-12, atol=1e-15)
    assert _sha((state / "model.npz").read_bytes()) == previous

    # a queue the Flux facility does not have is refused with one line, from what the facility says
    data["facilities"]["leonardo"]["partition"] = "gpu"
    with desc.open("w") as fh:
        yaml.dump(data, fh)
    res = setup.aiinfn("plan", str(desc), state=setup.work / "state-mixed-bad")
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line_error(res)
    assert "mixed.yaml: facilities.leonardo.partition: 'gpu' is not a partition of facility leonardo" in line, line
    after = [c for c in fl_setup.batch_calls(setup.facilities, "leonardo") if c["argv"][:1] == ["batch"]]
    assert len(after) == len(submitted)
