"""The workflow and deployments handed to StreamFlow: one CWL workflow, one deployment per facility.

For rounds ``first..last`` the workflow (CWL v1.2, written out round by round: StreamFlow 0.1.6 runs no
CWL loops) has, per round, one ``train-rNNNN-<facility>`` step per facility and one ``aggregate-rNNNN``
step. A train step gets the global model, the entry point and task.py as CWL Files (the engine copies
them to the facility) and the dataset as a plain string argument: the engine never stages it, the job
reads it where it is. Its outputs are the update and result.json (task.py). The aggregate step runs on
the controller (StreamFlow's local connector) and gets every facility's update and result; its output
is the next round's model, and it writes the round's checkpoint (aggregate.py). With
``aggregation.runs_on: <facility>`` the aggregate step is bound to a deployment of its own at that
facility (``<facility>.aggregator``: the same login node and queue manager, a batch script with the
aggregation's resources, the facility's image, no dataset) and outputs the model and its record; a
``checkpoint-rNNNN`` step on the controller then checks both and the updates, writes the checkpoint,
and its model is the next round's.

Deployments (StreamFlow ``models``, schema v1.0): an HPC facility is a ``slurm`` or ``pbs`` model
(StreamFlow's queue-manager connectors over SSH) whose batch-script template (``facilities/<name>.sh``)
holds the round's resources as ``#SBATCH``/``#PBS`` directives and runs the step inside the facility's
Apptainer image with the dataset bound read-only. StreamFlow 0.1.6 has no Flux connector (0.2.0rc3, a
pre-release, has one, with a streamflow.yml and log format this module does not speak), so a Flux
facility is an ``ssh`` model whose job template (StreamFlow's SSH connector runs it on the login node for
each step) writes the round's job script with ``#flux:`` directives, submits it with ``flux batch`` and
waits with ``flux job attach``, which ends with the job's exit status; StreamFlow then sees the step end
as it does with its own connectors, without a job id in its log (task.py records Flux's).

A platform site is a ``helm3`` model: a chart of ours
(``facilities/<name>/chart``) with one worker Deployment in the project's namespace, labelled with the
project's Kueue LocalQueue and the ``batch`` priority, whose pod mounts the dataset claim read-only;
StreamFlow runs each step in that pod.

Everything here is written from validated values; nothing of the description is a template or a shell
word that needs quoting (aiinfn.fl.model).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..planning.labels import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL
from ..serialize import yaml_dump
from . import aggregate as aggregate_program
from . import task as task_program
from .description import Description, SiteQueue
from .model import HpcFacility, Resources, SiteFacility

STREAMFLOW_VERSION = "v1.0"
WORKFLOW_NAME = "aiinfn-fl"
#: Container of the worker pod at a platform site (StreamFlow's helm ``service``).
WORKER_CONTAINER = "trainer"
#: Where a platform site's pod mounts the dataset claim.
SITE_DATA_MOUNT = "/data"
#: Kueue's labels on a workload (the queue it is submitted to, its priority class).
QUEUE_LABEL = QUEUE_NAME_LABEL
PRIORITY_LABEL = PRIORITY_CLASS_LABEL
BATCH_PRIORITY = "batch"


def train_step(number: int, facility: str) -> str:
    return f"train-r{number:04d}-{facility}"


def aggregate_step(number: int) -> str:
    return f"aggregate-r{number:04d}"


def checkpoint_step(number: int) -> str:
    """The controller's step after an aggregation at a facility: it writes the round's checkpoint."""
    return f"checkpoint-r{number:04d}"


def aggregator_model(facility: str) -> str:
    """The StreamFlow deployment of an aggregator at ``facility`` (a '.' no facility name holds)."""
    return f"{facility}.aggregator"


#: Under the facility's workdir, where its aggregation jobs work (the engine's copies to and from it are
#: the aggregation's, not the facility's training's).
AGGREGATOR_WORKDIR = "aggregate"


def output_id(what: str, facility: str) -> str:
    """A train step's output id, different per facility: StreamFlow 0.1.6 merges the sources of a step input
    by their output's short name, so that sources sharing one name (every facility's ``update``) collapse
    into one and the aggregator would get a single update."""
    return f"{what}_{facility.replace('-', '_')}"


def release_name(training: str, facility: str) -> str:
    return f"aiinfn-fl-{training}-{facility}"[:53].rstrip("-")


@dataclass(frozen=True)
class Generated:
    """The files of one hand-over to StreamFlow (all under ``root``)."""

    root: Path
    streamflow: Path
    workflow: Path
    inputs: Path
    first: int
    last: int


def _dataset_argument(f: HpcFacility | SiteFacility) -> str:
    if isinstance(f, HpcFacility):
        return f.dataset
    return SITE_DATA_MOUNT


#: StreamFlow 0.1.6 orders a command's bindings by their position as text ("10" before "9"): every position
#: here has three digits, so that text order is number order.


def _train_tool(desc: Description, number: int, name: str, f: HpcFacility | SiteFacility) -> dict[str, Any]:
    args = [
        {"position": 101, "valueFrom": "$(inputs.task.path)"},
        {"position": 102, "valueFrom": "--facility"}, {"position": 103, "valueFrom": name},
        {"position": 104, "valueFrom": "--round"}, {"position": 105, "valueFrom": str(number)},
        {"position": 106, "valueFrom": "--dataset"}, {"position": 107, "valueFrom": _dataset_argument(f)},
        {"position": 108, "valueFrom": "--entry"}, {"position": 109, "valueFrom": "$(inputs.entry.path)"},
        {"position": 110, "valueFrom": "--model"}, {"position": 111, "valueFrom": "$(inputs.model.path)"},
        {"position": 112, "valueFrom": "--"},
    ]
    args += [{"position": 113 + i, "valueFrom": a} for i, a in enumerate(desc.training.entrypoint.args)]
    return {
        "class": "CommandLineTool",
        "baseCommand": ["python3"],
        "arguments": args,
        "inputs": {"task": "File", "entry": "File", "model": "File"},
        "outputs": {
            output_id("update", name): {"type": "File", "outputBinding": {"glob": task_program.update_file(name)}},
            output_id("result", name): {"type": "File", "outputBinding": {"glob": task_program.result_file(name)}},
        },
    }


def _aggregate_tool(desc: Description, number: int, checkpoints: Path, python: str) -> dict[str, Any]:
    agg = desc.training.aggregation
    args: list[dict[str, Any]] = [
        {"position": 101, "valueFrom": "$(inputs.program.path)"},
        {"position": 102, "valueFrom": "--round"}, {"position": 103, "valueFrom": str(number)},
        {"position": 104, "valueFrom": "--method"}, {"position": 105, "valueFrom": agg.method.value},
    ]
    outputs: dict[str, Any] = {"model": {"type": "File", "outputBinding": {"glob": aggregate_program.MODEL}}}
    if agg.at_facility is None:
        args += [{"position": 106, "valueFrom": "--checkpoints"}, {"position": 107, "valueFrom": str(checkpoints)}]
    else:  # in the facility's job: the record goes back with the model, the controller writes the checkpoint
        args += [{"position": 106, "valueFrom": "--runs-on"}, {"position": 107, "valueFrom": agg.at_facility}]
        outputs["record"] = {"type": "File", "outputBinding": {"glob": aggregate_program.ROUND}}
        python = "python3"
    return {
        "class": "CommandLineTool",
        "baseCommand": [python],
        "arguments": args,
        "inputs": {
            "program": "File",
            "updates": {"type": "File[]",
                        "inputBinding": {"position": 108, "prefix": "--updates", "itemSeparator": ","}},
            "results": {"type": "File[]",
                        "inputBinding": {"position": 109, "prefix": "--results", "itemSeparator": ","}},
        },
        "outputs": outputs,
    }


def _checkpoint_tool(number: int, checkpoints: Path, python: str) -> dict[str, Any]:
    return {
        "class": "CommandLineTool",
        "baseCommand": [python],
        "arguments": [
            {"position": 101, "valueFrom": "$(inputs.program.path)"},
            {"position": 102, "valueFrom": "--round"}, {"position": 103, "valueFrom": str(number)},
            {"position": 104, "valueFrom": "--checkpoint-only"},
            {"position": 105, "valueFrom": "--checkpoints"}, {"position": 106, "valueFrom": str(checkpoints)},
            {"position": 107, "valueFrom": "--out"}, {"position": 108, "valueFrom": f"next-{aggregate_program.MODEL}"},
        ],
        "inputs": {
            "program": "File",
            "aggregated": {"type": "File", "inputBinding": {"position": 109, "prefix": "--model"}},
            "record": {"type": "File", "inputBinding": {"position": 110, "prefix": "--record"}},
            "updates": {"type": "File[]",
                        "inputBinding": {"position": 111, "prefix": "--updates", "itemSeparator": ","}},
        },
        "outputs": {"model": {"type": "File", "outputBinding": {"glob": f"next-{aggregate_program.MODEL}"}}},
    }


def workflow(desc: Description, first: int, last: int, checkpoints: Path, python: str) -> dict[str, Any]:
    """The CWL workflow of rounds ``first..last`` (the model of round ``first - 1`` is its input)."""
    steps: dict[str, Any] = {}
    names = list(desc.training.facilities)
    # the step whose output is a round's model: the aggregation, or after one at a facility the checkpoint
    at_facility = desc.training.aggregation.at_facility is not None
    model_of = checkpoint_step if at_facility else aggregate_step
    for number in range(first, last + 1):
        model_source = "model" if number == first else f"{model_of(number - 1)}/model"
        for name in names:
            steps[train_step(number, name)] = {
                "run": _train_tool(desc, number, name, desc.training.resolved()[name]),
                "in": {"task": "task", "entry": "entry", "model": model_source},
                "out": [output_id("update", name), output_id("result", name)],
            }
        steps[aggregate_step(number)] = {
            "run": _aggregate_tool(desc, number, checkpoints, python),
            "in": {
                "program": "aggregate",
                "updates": {"source": [f"{train_step(number, n)}/{output_id('update', n)}" for n in names],
                            "linkMerge": "merge_flattened"},
                "results": {"source": [f"{train_step(number, n)}/{output_id('result', n)}" for n in names],
                            "linkMerge": "merge_flattened"},
            },
            "out": ["model", "record"] if at_facility else ["model"],
        }
        if at_facility:
            steps[checkpoint_step(number)] = {
                "run": _checkpoint_tool(number, checkpoints, python),
                "in": {
                    "program": "aggregate",
                    "aggregated": f"{aggregate_step(number)}/model",
                    "record": f"{aggregate_step(number)}/record",
                    "updates": {"source": [f"{train_step(number, n)}/{output_id('update', n)}" for n in names],
                                "linkMerge": "merge_flattened"},
                },
                "out": ["model"],
            }
    return {
        "cwlVersion": "v1.2",
        "class": "Workflow",
        "label": f"aiinfn fl {desc.training.name}: rounds {first}-{last}",
        "requirements": {"MultipleInputFeatureRequirement": {}, "StepInputExpressionRequirement": {}},
        "inputs": {"model": "File", "task": "File", "entry": "File", "aggregate": "File"},
        "outputs": {"final_model": {"type": "File", "outputSource": f"{model_of(last)}/model"}},
        "steps": steps,
    }


def _job(desc: Description, name: str, f: HpcFacility, aggregator: bool) -> tuple[str, Resources]:
    """The batch job's name and resources: a round's training at facility ``name``, or its aggregation there
    (``aiinfn-fl-<training>.aggregate``: the '.' keeps it apart from any facility's training jobs)."""
    if aggregator:
        return f"aiinfn-fl-{desc.training.name}.aggregate", desc.training.aggregation.job_resources
    return f"aiinfn-fl-{desc.training.name}-{name}", f.resources


def slurm_script(desc: Description, name: str, f: HpcFacility, aggregator: bool = False) -> str:
    job, r = _job(desc, name, f, aggregator)
    lines = ["#!/bin/sh", f"#SBATCH --job-name={job}",
             "#SBATCH --nodes=1", "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={r.cpus}",
             f"#SBATCH --mem={r.memory_mb}M", f"#SBATCH --time={r.slurm_time}"]
    lines += [f"#SBATCH --partition={f.partition}"] if f.partition else []
    lines += [f"#SBATCH --account={f.account}"] if f.account else []
    lines += [f"#SBATCH --qos={f.qos}"] if f.qos else []
    lines += [f"#SBATCH --gpus={r.gpus}"] if r.gpus else []
    return "\n".join([*lines, *_apptainer(desc, name, f, aggregator)]) + "\n"


def pbs_script(desc: Description, name: str, f: HpcFacility, aggregator: bool = False) -> str:
    _job_name, r = _job(desc, name, f, aggregator)
    select = f"select=1:ncpus={r.cpus}:mem={r.memory_mb}mb" + (f":ngpus={r.gpus}" if r.gpus else "")
    hours, minutes = divmod(r.time_minutes, 60)
    lines = ["#!/bin/sh", "#PBS -N aiinfn-fl-aggr" if aggregator else f"#PBS -N aiinfn-fl-{name}"[:17],
             f"#PBS -l {select}",
             f"#PBS -l walltime={hours:02d}:{minutes:02d}:00"]
    lines += [f"#PBS -q {f.partition}"] if f.partition else []
    lines += [f"#PBS -A {f.account}"] if f.account else []
    return "\n".join([*lines, *_apptainer(desc, name, f, aggregator)]) + "\n"


#: Ends the job script inside a Flux facility's template (a quoted here-document: nothing in it is expanded).
FLUX_JOB_END = "AIINFN_FL_FLUX_JOB"


def flux_script(desc: Description, name: str, f: HpcFacility, aggregator: bool = False) -> str:
    """The SSH connector's template for a Flux facility: write the job script, ``flux batch`` it, wait for it.

    Flux schedules cores, GPUs and time, not memory: ``resources.memory_gb`` is not a directive here."""
    job, r = _job(desc, name, f, aggregator)
    directives = [f"#flux: --job-name={job}", "#flux: --nodes=1",
                  "#flux: --nslots=1", f"#flux: --cores-per-slot={r.cpus}", f"#flux: --time-limit={r.time_minutes}m"]
    directives += [f"#flux: --gpus-per-slot={r.gpus}"] if r.gpus else []
    directives += [f"#flux: --queue={f.partition}"] if f.partition else []
    directives += [f"#flux: --bank={f.account}"] if f.account else []
    return "\n".join([
        "#!/bin/sh",
        f"# aiinfn fl {desc.training.name}: one round's {'aggregation' if aggregator else 'training'} at Flux "
        f"facility {name}, run by StreamFlow's SSH connector on",
        "# the login node: the job script is submitted with flux batch, and flux job attach waits for the job",
        "# and ends with its exit status",
        'job="$0.flux"',
        f"cat > \"$job\" <<'{FLUX_JOB_END}'",
        "#!/bin/sh",
        *directives,
        *_apptainer(desc, name, f, aggregator),
        FLUX_JOB_END,
        'id=$(flux batch --output="$job.out" "$job") || exit 1',
        # stopped (the engine undeploys, the session hangs up): the job goes too, as scancel/qdel do elsewhere
        'trap \'flux job cancel "$id" >/dev/null 2>&1; exit 143\' HUP INT TERM',
        'flux job attach "$id" >/dev/null 2>&1',
        "status=$?",
        'cat "$job.out" 2>/dev/null',
        'rm -f "$job" "$job.out"',
        'exit "$status"',
    ]) + "\n"


def _apptainer(desc: Description, name: str, f: HpcFacility, aggregator: bool = False) -> list[str]:
    if aggregator:  # the facility's image, no dataset, no GPU: it averages the round's updates
        return [
            f"# aiinfn fl {desc.training.name}: one round's aggregation at facility {name}; no dataset is bound",
            f"apptainer exec --bind {f.workdir}/{AGGREGATOR_WORKDIR} oras://{f.image} {{{{ streamflow_command }}}}",
        ]
    gpu = " --nv" if f.resources.gpus else ""
    return [
        f"# aiinfn fl {desc.training.name}: one round at facility {name}; the data is read in place, read-only",
        f"apptainer exec{gpu} --bind {f.dataset}:{f.dataset}:ro --bind {f.workdir} oras://{f.image} "
        "{{ streamflow_command }}",
    ]


BATCH_SCRIPTS = {"slurm": slurm_script, "pbs": pbs_script, "flux": flux_script}


def hpc_model(desc: Description, f: HpcFacility, script: str, poll: int) -> dict[str, Any]:
    if f.kind == "flux":
        return {"type": "ssh", "config": {
            "nodes": [f.address],
            "username": f.user,
            "sshKey": str(desc.machine_path(f.ssh_key)),
            "checkHostKey": True,
            "file": script,
        }}
    config: dict[str, Any] = {
        "hostname": f.address,
        "username": f.user,
        "sshKey": str(desc.machine_path(f.ssh_key)),
        "checkHostKey": True,
        "file": script,
        "maxConcurrentJobs": 1,
        "pollingInterval": poll,
    }
    return {"type": f.kind, "config": config}


def site_objects(desc: Description, name: str, f: SiteFacility, queue: SiteQueue) -> list[dict[str, Any]]:
    """The worker of a platform site: a Deployment Kueue admits through the project's queue."""
    release = release_name(desc.training.name, name)
    r = f.resources
    limits: dict[str, Any] = {"cpu": str(r.cpus), "memory": f"{r.memory_mb}Mi"}
    if queue.accelerator_resource:
        limits[queue.accelerator_resource] = "1"
    labels = {
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/name": "aiinfn-fl-worker",
        "app.kubernetes.io/managed-by": "aiinfn-fl",
        QUEUE_LABEL: queue.local_queue,
        PRIORITY_LABEL: BATCH_PRIORITY,
    }
    mount: dict[str, Any] = {"name": "dataset", "mountPath": SITE_DATA_MOUNT, "readOnly": True}
    if f.dataset.path:
        mount["subPath"] = f.dataset.path
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "restartPolicy": "Always",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": WORKER_CONTAINER,
                "image": f.image,
                "command": ["sleep", str(r.time_minutes * 60 * max(1, desc.training.rounds))],
                "resources": {"requests": dict(limits), "limits": dict(limits)},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": False},
                "volumeMounts": [mount, {"name": "work", "mountPath": "/tmp"}],
            }],
            "volumes": [
                {"name": "dataset", "persistentVolumeClaim": {"claimName": f.dataset.claim, "readOnly": True}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    }
    return [{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": release, "namespace": queue.namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/instance": release}},
                 "template": pod},
    }]


def _write_chart(root: Path, desc: Description, name: str, f: SiteFacility, queue: SiteQueue) -> Path:
    chart = root / "facilities" / name / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(yaml_dump({
        "apiVersion": "v2", "name": "aiinfn-fl-worker", "version": "0.1.0", "type": "application",
        "description": f"aiinfn fl {desc.training.name}: the worker pod at site {f.site}",
    }))
    (chart / "templates" / "worker.yaml").write_text(
        "\n---\n".join(yaml_dump(o) for o in site_objects(desc, name, f, queue)))
    return chart


def site_model(desc: Description, name: str, f: SiteFacility, queue: SiteQueue, chart: str) -> dict[str, Any]:
    return {"type": "helm3", "config": {
        "chart": chart,
        "kubeconfig": str(desc.machine_path(f.kubeconfig)),
        "namespace": queue.namespace,
        "releaseName": release_name(desc.training.name, name),
        "wait": True,
        "atomic": True,
        "timeout": f"{f.resources.time_minutes}m",
    }}


def streamflow_file(desc: Description, workflow_file: str, inputs_file: str, first: int, last: int,
                    models: dict[str, dict[str, Any]], local_workdir: str) -> dict[str, Any]:
    # what runs on the controller (the workflow's inputs, the aggregation) works in the run's own directory
    bindings: list[dict[str, Any]] = [{"step": "/", "workdir": local_workdir}]
    for number in range(first, last + 1):
        for name, f in desc.training.facilities.items():
            target: dict[str, Any] = {"model": name}
            binding: dict[str, Any] = {"step": f"/{train_step(number, name)}", "target": target}
            if isinstance(f, HpcFacility):
                binding["workdir"] = f.workdir
            else:
                target["service"] = WORKER_CONTAINER
                binding["workdir"] = "/tmp/aiinfn-fl"
            bindings.append(binding)
        where = desc.training.aggregation.at_facility
        if where is not None:
            f = desc.training.facilities[where]
            assert isinstance(f, HpcFacility)
            bindings.append({"step": f"/{aggregate_step(number)}", "target": {"model": aggregator_model(where)},
                             "workdir": f"{f.workdir}/{AGGREGATOR_WORKDIR}"})
    return {
        "version": STREAMFLOW_VERSION,
        "workflows": {WORKFLOW_NAME: {
            "type": "cwl",
            "config": {"file": workflow_file, "settings": inputs_file},
            "bindings": bindings,
        }},
        "models": models,
    }


def generate(desc: Description, root: Path, *, first: int, last: int, model: Path, checkpoints: Path,
             queues: dict[str, SiteQueue], python: str | None = None) -> Generated:
    """Write everything StreamFlow needs for rounds ``first..last`` starting from ``model`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    programs = root / "programs"
    programs.mkdir(exist_ok=True)
    shutil.copyfile(task_program.__file__, programs / "task.py")
    shutil.copyfile(aggregate_program.__file__, programs / "aggregate.py")
    (root / "facilities").mkdir(exist_ok=True)
    models: dict[str, dict[str, Any]] = {}
    t = desc.training
    for name, f in t.resolved().items():
        if isinstance(f, HpcFacility):
            script = root / "facilities" / f"{name}.sh"
            script.write_text(BATCH_SCRIPTS[f.kind](desc, name, f))
            models[name] = hpc_model(desc, f, str(script.relative_to(root)), t.poll_seconds)
            if t.aggregation.at_facility == name:  # its own deployment: same login node, the aggregation's job
                script = root / "facilities" / f"{aggregator_model(name)}.sh"
                script.write_text(BATCH_SCRIPTS[f.kind](desc, name, f, True))
                models[aggregator_model(name)] = hpc_model(desc, f, str(script.relative_to(root)), t.poll_seconds)
        else:
            chart = _write_chart(root, desc, name, f, queues[name])
            models[name] = site_model(desc, name, f, queues[name], str(chart.resolve()))
    wf = root / "workflow.cwl"
    wf.write_text(yaml_dump(workflow(desc, first, last, checkpoints.resolve(), python or sys.executable)))
    inputs = root / "inputs.yml"
    inputs.write_text(yaml_dump({
        "model": {"class": "File", "path": str(model.resolve())},
        "task": {"class": "File", "path": str((programs / "task.py").resolve())},
        "entry": {"class": "File", "path": str(desc.local(t.entrypoint.script))},
        "aggregate": {"class": "File", "path": str((programs / "aggregate.py").resolve())},
    }))
    sf = root / "streamflow.yml"
    local = root / "work"
    local.mkdir(exist_ok=True)
    sf.write_text(yaml_dump(streamflow_file(desc, wf.name, inputs.name, first, last, models, str(local.resolve()))))
    return Generated(root, sf, wf, inputs, first, last)
