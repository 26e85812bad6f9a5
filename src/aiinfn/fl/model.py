"""The federated training description (``kind: federated-training``): what a researcher writes.

One file names the facilities the training runs on, and for each one where its data already is (never
copied), the image the training runs in, the resources of one round and how the facility is reached: a
platform site through its batch queues (``kind: site``), or an HPC facility's login node over SSH with
its queue manager (``kind: slurm``, ``pbs`` or ``flux``), or one of a site's offload targets
(``kind: offload``: queue manager, login node and limits from the site's environment). The rest says
what one round is (the entry point, its arguments), how many rounds, how the facilities' updates are
combined and where.

Every string of the file is data. It reaches SLURM batch scripts and the shell of HPC login nodes
(StreamFlow builds ``sh -c '...'`` command lines from the step's arguments without quoting them for that
shell), Jinja2 (StreamFlow renders each facility's batch script template) and Kubernetes objects. So
each field accepts only the characters its kind is made of (``ARGUMENT``: exactly what ``shlex.quote``
leaves alone), and nothing a shell, Jinja2 or SLURM reads as syntax can get in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from ..config.models import (
    AbsolutePath,
    AcceleratorKind,
    DnsLabel,
    Hostname,
    ImageRef,
    Model,
    TextKind,
)

KIND = "federated-training"

#: A facility's name: it becomes part of CWL step ids, file names, SLURM job names and Helm release names.
FACILITY_NAME = TextKind("a facility name", "a-z0-9-", r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]", limit=32,
                         hint="lowercase letters, digits and '-', starting with a letter, at most 32")
#: One argument of the entry point: exactly the characters ``shlex.quote`` leaves unquoted, so that no
#: shell on the way (StreamFlow's ``sh -c '...'``, the batch script) reads anything but the word itself.
ARGUMENT = TextKind("a plain argument", r"A-Za-z0-9@%+=:,./_-", r"[A-Za-z0-9@%+=:,./_-]+", limit=256,
                    hint="letters, digits and @%+=:,./_- only; no spaces, quotes or shell characters")
#: A file of the description's directory (the entry point, the initial model): relative, no '..'.
RELATIVE_FILE = TextKind("a relative file path", "A-Za-z0-9._/+-", r"(?!/)((?!\.{1,2}(/|$))[A-Za-z0-9._+-]+/?)+",
                         hint="a path relative to the description, made of letters, digits and ._+- with no "
                         "'..' part")
#: A path of this machine (an SSH key, a known_hosts file, a kubeconfig): '~' allowed at the start.
LOCAL_PATH = TextKind("a local file path", "A-Za-z0-9._/+@=,~-", r"(~|/|\.{0,2}/)?[A-Za-z0-9._/+@=,~-]+",
                      hint="letters, digits and ._/+@=,~- (it is a path on this machine, never copied anywhere)")
#: A POSIX account name on a login node.
USER = TextKind("a user name", "a-z0-9_-", r"[a-z_][a-z0-9_-]{0,31}", limit=32,
                hint="lowercase letters, digits, '_' and '-', as useradd accepts")
#: A SLURM/PBS partition (queue), account or QOS name.
BATCH_NAME = TextKind("a batch-system name", "A-Za-z0-9_.-", r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", limit=64,
                      hint="letters, digits, '_', '.' and '-'")
#: A PersistentVolumeClaim's sub-path at a platform site: relative, no '..'.
SUB_PATH = TextKind("a sub-path", "A-Za-z0-9._/+-", r"((?!\.{1,2}(/|$))[A-Za-z0-9._+-]+)(/(?!\.{1,2}(/|$))"
                    r"[A-Za-z0-9._+-]+)*", hint="a relative path without '..'")

FacilityName = Annotated[str, AfterValidator(FACILITY_NAME)]
Argument = Annotated[str, AfterValidator(ARGUMENT)]
RelativeFile = Annotated[str, AfterValidator(RELATIVE_FILE)]
LocalPath = Annotated[str, AfterValidator(LOCAL_PATH)]
User = Annotated[str, AfterValidator(USER)]
BatchName = Annotated[str, AfterValidator(BATCH_NAME)]
SubPath = Annotated[str, AfterValidator(SUB_PATH)]

#: Longest a round may take at one facility (a week): SLURM's --time and the pod's activeDeadline.
MAX_MINUTES = 7 * 24 * 60


class Resources(Model):
    """What one round's job gets at a facility."""

    cpus: int = Field(1, ge=1, le=1024, description="cores of the job")
    memory_gb: float = Field(1.0, gt=0, le=4096, description="memory of the job, GB")
    gpus: int = Field(0, ge=0, le=64, description="HPC: GPUs of the job (SLURM --gpus, PBS ngpus)")
    accelerator: AcceleratorKind | None = Field(
        None, description="platform site: the accelerator kind of one unit (MODEL or MODEL/PROFILE)"
    )
    time_minutes: int = Field(30, ge=1, le=MAX_MINUTES, description="wall-time limit of one round's job")

    @property
    def slurm_time(self) -> str:
        """``--time`` as SLURM writes it: D-HH:MM:00."""
        days, rest = divmod(self.time_minutes, 24 * 60)
        return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"

    @property
    def memory_mb(self) -> int:
        return max(1, round(self.memory_gb * 1024))


class _HpcCommon(Model):
    """What every HPC facility names: the account on its login node, its batch names, data and image."""

    port: int = Field(22, ge=1, le=65535)
    user: User
    ssh_key: LocalPath = Field(description="path of the private key on this machine (read by the SSH client only)")
    known_hosts: LocalPath | None = Field(
        None, description="known_hosts file that holds the login node's host key (default ~/.ssh/known_hosts)"
    )
    partition: BatchName | None = Field(None, description="SLURM partition, PBS queue or Flux queue")
    account: BatchName | None = Field(None, description="SLURM account, PBS project (-A) or Flux bank")
    qos: BatchName | None = Field(None, description="SLURM only: the job's QOS")
    workdir: AbsolutePath = Field("/tmp/aiinfn-fl", description="scratch directory of the jobs on the facility")
    image: ImageRef = Field(description="Apptainer image in the platform registry's apptainer project")
    dataset: AbsolutePath = Field(description="where the facility's data is (read in place, never copied)")
    resources: Resources = Field(default_factory=Resources)

    @model_validator(mode="after")
    def _hpc_resources(self) -> _HpcCommon:
        if self.resources.accelerator is not None:
            raise ValueError("resources.accelerator is for platform sites; an HPC facility asks for resources.gpus")
        kind = getattr(self, "kind", "slurm")
        if self.qos is not None and kind not in ("slurm", "offload"):
            raise ValueError(f"qos is a SLURM setting; a {kind} facility has none (use partition or account)")
        return self


class HpcFacility(_HpcCommon):
    """An HPC facility: its login node over SSH, its queue manager, its data and its Apptainer image."""

    kind: Literal["slurm", "pbs", "flux"]
    host: Hostname = Field(description="the login node (hostname or IPv4 address)")
    #: ``SITE/TARGET`` when the facility was described as a site's offload target (OffloadFacility)
    _offload_of: str | None = PrivateAttr(None)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def offload_of(self) -> str | None:
        return self._offload_of


class OffloadFacility(_HpcCommon):
    """An HPC facility a platform site already offloads to (``offload.targets`` of the site's environment):
    its queue manager and its limits come from the site's description, its login node from the target's
    interLink endpoint unless ``host`` names another. aiinfn fl reaches it over SSH like any HPC facility
    (not through interLink, whose API runs pods, not batch scripts)."""

    kind: Literal["offload"]
    site: DnsLabel = Field(description="the site whose offload target this is, such as cnaf")
    target: DnsLabel = Field(description="the target's name under the site's offload.targets")
    host: Hostname | None = Field(None, description="the login node, when it is not the host of the target's "
                                  "interLink endpoint")


class SiteDataset(Model):
    """Data at a platform site: a claim of the project's namespace, mounted read-only."""

    claim: DnsLabel = Field(description="PersistentVolumeClaim in the project's namespace that holds the data")
    path: SubPath | None = Field(None, description="sub-path of the claim (default: the whole claim)")


class SiteFacility(Model):
    """A platform site (an environment under environments/), used through the project's batch queue."""

    kind: Literal["site"]
    site: DnsLabel = Field(description="the site's environment name, such as cnaf")
    kubeconfig: LocalPath = Field(description="the user's kubeconfig for the site's cluster (path only)")
    image: ImageRef = Field(description="OCI image in the platform registry's environments project")
    dataset: SiteDataset
    resources: Resources = Field(default_factory=Resources)

    @model_validator(mode="after")
    def _site_resources(self) -> SiteFacility:
        if self.resources.gpus:
            raise ValueError("resources.gpus is for HPC facilities; a platform site asks for resources.accelerator")
        return self


Facility = Annotated[HpcFacility | OffloadFacility | SiteFacility, Field(discriminator="kind")]


class Method(StrEnum):
    fedavg = "fedavg"
    mean = "mean"


#: Where the aggregator runs by default: the machine running ``aiinfn fl``.
CONTROLLER = "controller"


class AggregatorResources(Model):
    """What one round's aggregation job gets at a facility (it averages a few model-sized arrays)."""

    cpus: int = Field(1, ge=1, le=256, description="cores of the aggregation job")
    memory_gb: float = Field(1.0, gt=0, le=1024, description="memory of the aggregation job, GB")
    time_minutes: int = Field(10, ge=1, le=MAX_MINUTES, description="wall-time limit of one aggregation job")

    def as_round(self) -> Resources:
        return Resources(cpus=self.cpus, memory_gb=self.memory_gb, time_minutes=self.time_minutes)


class Aggregation(Model):
    method: Method = Field(
        Method.fedavg,
        description="fedavg: each facility's update weighted by its sample count (default); mean: equal weights",
    )
    runs_on: Annotated[str, AfterValidator(FACILITY_NAME)] = Field(
        CONTROLLER,
        description="where the aggregator runs: controller (the machine running aiinfn fl, the default) or the "
        "name of one of the HPC facilities below, where each round's aggregation is a batch job of its queue "
        "manager (aiinfn.fl.description checks the name)",
    )
    resources: AggregatorResources | None = Field(
        None, description="the aggregation job's resources at a facility (default 1 core, 1 GB, 10 minutes)"
    )

    @property
    def at_facility(self) -> str | None:
        return None if self.runs_on == CONTROLLER else self.runs_on

    @property
    def job_resources(self) -> Resources:
        return (self.resources or AggregatorResources()).as_round()


class Entrypoint(Model):
    script: RelativeFile = Field(description="the training program, relative to the description (run with python3)")
    args: list[Argument] = Field(default_factory=list, max_length=64, description="extra arguments, one word each")


class Training(Model):
    """The whole description."""

    kind: Literal["federated-training"]
    name: DnsLabel
    project: DnsLabel = Field(description="the user's platform project (its batch queue at platform sites)")
    rounds: int = Field(ge=1, le=1000)
    initial_model: RelativeFile = Field(description="the model before round 1: an .npz file of named arrays")
    entrypoint: Entrypoint
    aggregation: Aggregation = Field(default_factory=Aggregation)
    poll_seconds: int = Field(5, ge=1, le=300, description="how often the engine asks a queue manager about a job")
    facilities: dict[FacilityName, Facility] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _one_facility_per_login_node(self) -> Training:
        seen: dict[str, str] = {}
        for name, f in self.hpc().items():
            other = seen.setdefault(f.address, name)
            if other != name:
                raise ValueError(f"facilities {other} and {name} are the same login node {f.address}: one facility "
                                 "per login node (give a facility more resources instead)")
        return self

    def offload(self) -> dict[str, OffloadFacility]:
        """Facilities described as a site's offload target, before aiinfn.fl.description resolves them."""
        return {n: f for n, f in self.facilities.items() if isinstance(f, OffloadFacility)}

    def resolved(self) -> dict[str, HpcFacility | SiteFacility]:
        """The facilities once offload targets are resolved (aiinfn.fl.description.load does it)."""
        if self.offload():
            raise ValueError(f"offload facilities not resolved: {', '.join(self.offload())}")
        return {n: f for n, f in self.facilities.items() if not isinstance(f, OffloadFacility)}

    def hpc(self) -> dict[str, HpcFacility]:
        return {n: f for n, f in self.facilities.items() if isinstance(f, HpcFacility)}

    def sites(self) -> dict[str, SiteFacility]:
        return {n: f for n, f in self.facilities.items() if isinstance(f, SiteFacility)}
