"""Load a federated training description and check it against what the platform knows, offline.

``load(path)`` reads the YAML the way environments are read (safe loader, duplicate keys refused, size
and nesting bounded), validates it with the models of aiinfn.fl.model and checks its files; then
``check_platform`` checks every platform site it names against the site's own plan: the site exists, the
user's project has a batch queue there (the project's Kueue LocalQueue), the accelerator kind asked for
is one the project's queue offers, and every image is in the platform registry's right project
(``environments`` for sites, ``apptainer`` for HPC). The first problem is one ``ConfigError``:
``<file>: <field.path>: <message>``, exit code 2. Checks that need the network (the registry's API,
the facilities' login nodes) are in aiinfn.fl.registry and aiinfn.fl.remote.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ..config.loader import _data_loc, _describe, _read_yaml, display, list_environments, load_site
from ..config.paths import format_path
from ..errors import ConfigError
from .model import CONTROLLER, KIND, HpcFacility, OffloadFacility, SiteFacility, Training

#: Harbor projects the platform's registry holds (aiinfn.jobs.harbor_setup creates them).
OCI_PROJECT = "environments"
APPTAINER_PROJECT = "apptainer"
#: Largest initial model accepted (the model travels to every facility every round).
MAX_MODEL_BYTES = 512 << 20


@dataclass(frozen=True)
class Description:
    training: Training
    path: Path

    @property
    def base(self) -> Path:
        return self.path.parent

    @property
    def file(self) -> str:
        return display(self.path)

    def local(self, relative: str) -> Path:
        return (self.base / relative).resolve()

    def machine_path(self, value: str) -> Path:
        """A path of this machine the description names (key, known_hosts, kubeconfig): ``~`` expanded, a
        relative one taken from the description's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base / p).resolve()

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, path=path)

    def digest(self) -> str:
        """What a checkpoint belongs to: the description's content and the files it names (resume is refused
        when they changed since)."""
        h = hashlib.sha256(json.dumps(self.training.model_dump(mode="json"), sort_keys=True).encode())
        for rel in (self.training.initial_model, self.training.entrypoint.script):
            h.update(self.local(rel).read_bytes())
        return h.hexdigest()


@dataclass(frozen=True)
class SiteQueue:
    """What a platform site offers the user's project: its namespace, LocalQueue and the resource name of
    the accelerator kind asked for."""

    site: str
    namespace: str
    local_queue: str
    cluster_queue: str
    accelerator_resource: str | None


def load(path: str | Path) -> Description:
    p = Path(path)
    name = display(p)
    if not p.is_file():
        raise ConfigError("no such file: write the federated training description there", file=name)
    data = _read_yaml(p)
    if data.get("kind") != KIND:
        raise ConfigError(f"kind: must be {KIND!r} (a federated training description), got "
                          f"{data.get('kind')!r}", file=name)
    try:
        training = Training.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        first = errors[0]
        loc = _data_loc(data, tuple(x for x in first["loc"] if x != "[key]"))
        # a discriminated union puts the tag (slurm, site ...) in the location: not a field of the file
        loc = tuple(x for i, x in enumerate(loc) if not (i >= 2 and loc[i - 2] == "facilities" and
                                                          x in ("slurm", "pbs", "flux", "offload", "site")))
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = _describe(dict(first), Training)
        if first["type"] == "union_tag_invalid":
            kind = first.get("input", {}).get("kind")
            message = f"kind: {kind!r} is not a facility kind (valid: slurm, pbs, flux, offload, site)"
        elif first["type"] == "union_tag_not_found":
            message = "kind: required field is missing (slurm, pbs, flux, offload or site)"
        raise ConfigError(message + extra, file=name, path=format_path(loc) or None) from None
    desc = Description(training, p.resolve())
    if training.offload():
        desc = Description(resolve_offload(desc), desc.path)
    _check_aggregation(desc)
    _check_files(desc)
    return desc


def _check_aggregation(desc: Description) -> None:
    """``aggregation.runs_on`` is the controller or one of the training's HPC facilities (its queue manager runs
    each round's aggregation as a job); ``aggregation.resources`` only says something at a facility."""
    t = desc.training
    agg = t.aggregation
    if CONTROLLER in t.facilities:
        raise desc.error(f"facilities.{CONTROLLER}", f"{CONTROLLER!r} is where aggregation.runs_on puts the aggregator "
                         "by default, not a facility name: name the facility otherwise")
    where = agg.at_facility
    if where is None:
        if agg.resources is not None:
            raise desc.error("aggregation.resources", "only for an aggregator at a facility (aggregation.runs_on names "
                             "one); on the controller the aggregation is no batch job")
        return
    f = t.facilities.get(where)
    if f is None:
        known = ", ".join(sorted(t.facilities))
        raise desc.error("aggregation.runs_on", f"{where!r} is not a facility of this training (facilities: {known}; "
                         f"or {CONTROLLER})")
    if isinstance(f, SiteFacility):
        raise desc.error("aggregation.runs_on", f"{where!r} is a platform site: the aggregator runs on the controller "
                         "or at an HPC facility (slurm, pbs, flux or offload), as a job of its queue manager")


#: Queue managers of a site's offload targets that aiinfn fl reaches over SSH (interLink's kinds).
OFFLOAD_KINDS = {"slurm": "slurm"}


def resolve_offload(desc: Description) -> Training:
    """Every ``kind: offload`` facility as the HPC facility it is, from its site's ``offload.targets``: the
    queue manager (the target's kind), the login node (``host``, or the host of the target's interLink
    endpoint), and the round's resources checked against the target's limits (one ConfigError naming the
    field otherwise)."""
    t = desc.training
    facilities: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for fname, f in t.facilities.items():
        if not isinstance(f, OffloadFacility):
            facilities[fname] = f.model_dump(mode="json", exclude_none=True)
            continue
        field = f"facilities.{fname}"
        sites = list_environments(kind="site")
        if f.site not in sites:
            raise desc.error(f"{field}.site", f"{f.site!r} is not a platform site (sites: {', '.join(sites)})")
        targets = load_site(f.site).offload.targets
        target = targets.get(f.target)
        if target is None:
            known = ", ".join(sorted(targets)) or "none"
            raise desc.error(f"{field}.target", f"{f.target!r} is not an offload target of site {f.site!r} "
                             f"(its targets: {known})")
        kind = OFFLOAD_KINDS.get(target.kind)
        if kind is None:
            raise desc.error(f"{field}.target", f"offload target {f.target!r} of site {f.site!r} runs {target.kind}, "
                             "which aiinfn fl cannot submit to over SSH (it reaches slurm targets)")
        limits, r = target.limits, f.resources
        if r.time_minutes > limits.max_wall_time_hours * 60:
            raise desc.error(f"{field}.resources.time_minutes", f"{r.time_minutes} is more than offload target "
                             f"{f.target!r} runs ({limits.max_wall_time_hours} h at most)")
        if limits.max_cpu is not None and r.cpus > limits.max_cpu:
            raise desc.error(f"{field}.resources.cpus", f"{r.cpus} is more than one job may ask of offload target "
                             f"{f.target!r} ({limits.max_cpu})")
        if limits.max_memory_gb is not None and r.memory_gb > limits.max_memory_gb:
            raise desc.error(f"{field}.resources.memory_gb", f"{r.memory_gb:g} is more than one job may ask of "
                             f"offload target {f.target!r} ({limits.max_memory_gb} GB)")
        data = f.model_dump(mode="json", exclude_none=True, exclude={"site", "target"})
        data.update(kind=kind, host=f.host or urlsplit(target.endpoint).hostname)
        facilities[fname] = data
        origin[fname] = f"{f.site}/{f.target}"
    try:
        resolved = Training.model_validate({**t.model_dump(mode="json", exclude_none=True), "facilities": facilities})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise desc.error(format_path(tuple(x for x in first["loc"] if x not in ("slurm", "[key]"))) or "facilities",
                         _describe(dict(first), Training)) from None
    for fname, where in origin.items():
        f = resolved.facilities[fname]
        assert isinstance(f, HpcFacility)
        f._offload_of = where
    return resolved


def _check_files(desc: Description) -> None:
    t = desc.training
    script = desc.local(t.entrypoint.script)
    if not script.is_file():
        raise desc.error("entrypoint.script", f"{t.entrypoint.script!r} is not a file beside the description")
    model = desc.local(t.initial_model)
    if not model.is_file():
        raise desc.error("initial_model", f"{t.initial_model!r} is not a file beside the description")
    if model.stat().st_size > MAX_MODEL_BYTES:
        raise desc.error("initial_model", f"larger than {MAX_MODEL_BYTES >> 20} MB: every round sends it to "
                         "every facility")
    describe_model(model, desc)
    for fname, f in t.resolved().items():
        if isinstance(f, HpcFacility):
            for field in ("ssh_key", "known_hosts"):
                value = getattr(f, field)
                if value is not None and not desc.machine_path(value).is_file():
                    raise desc.error(f"facilities.{fname}.{field}", f"{value!r} is not a file on this machine")
        else:
            if not desc.machine_path(f.kubeconfig).is_file():
                raise desc.error(f"facilities.{fname}.kubeconfig", f"{f.kubeconfig!r} is not a file on this machine")


def describe_model(path: Path, desc: Description | None = None) -> dict[str, Any]:
    """Names, shapes and dtypes of the arrays of an .npz model (read without unpickling anything)."""
    import numpy as np

    def bad(why: str) -> ConfigError:
        if desc is None:
            return ConfigError(f"{display(path)}: {why}")
        return desc.error("initial_model", why)

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {n: data[n] for n in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise bad(f"not an .npz file of arrays ({type(e).__name__}): save it with numpy.savez") from None
    if not arrays:
        raise bad("holds no arrays")
    for n, a in arrays.items():
        if not np.issubdtype(a.dtype, np.number):
            raise bad(f"array {n!r} is {a.dtype}, not numbers")
    return {n: {"shape": list(a.shape), "dtype": str(a.dtype)} for n, a in sorted(arrays.items())}


def platform_registries() -> set[str]:
    """Hostnames of the platform's Harbor registries (every site environment's ``services.harbor``)."""
    hosts = set()
    for name in list_environments(kind="site"):
        try:
            env = load_site(name)
        except ConfigError:
            continue
        if env.services.harbor is not None and env.services.harbor.hostname:
            hosts.add(env.services.harbor.hostname)
    return hosts


def split_image(image: str) -> tuple[str, str, str, str]:
    """``host/project/repo/sub:tag`` -> (host, project, repository, reference: tag or digest)."""
    rest, _, digest = image.partition("@")
    host, _, path = rest.partition("/")
    reference = digest
    if not reference:
        path, sep, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
        reference = tag if sep else "latest"
    project, _, repository = path.partition("/")
    return host, project, repository, reference


def check_images(desc: Description, registries: set[str] | None = None) -> None:
    registries = platform_registries() if registries is None else registries
    for fname, f in desc.training.facilities.items():
        field = f"facilities.{fname}.image"
        host, project, repository, _ref = split_image(f.image)
        want = APPTAINER_PROJECT if isinstance(f, HpcFacility) else OCI_PROJECT
        if ("." not in host and ":" not in host) or host not in registries:
            known = ", ".join(sorted(registries)) or "none configured"
            raise desc.error(field, f"{f.image!r} is not in the platform registry (registries: {known})")
        if project != want or not repository:
            what = "an Apptainer image" if want == APPTAINER_PROJECT else "an OCI image"
            raise desc.error(field, f"{f.image!r}: {what} comes from the registry's {want!r} project "
                             f"({host}/{want}/NAME:TAG)")


def site_queue(desc: Description, fname: str, f: SiteFacility) -> SiteQueue:
    """The project's batch queue at the facility's site, from the site's own plan, or one ConfigError."""
    from ..planning import make_plan
    from ..services import kueue

    field = f"facilities.{fname}"
    if f.site not in list_environments(kind="site"):
        sites = ", ".join(list_environments(kind="site"))
        raise desc.error(f"{field}.site", f"{f.site!r} is not a platform site (sites: {sites})")
    env = load_site(f.site)
    plan = make_plan(env)
    project = desc.training.project
    quota = next((q for q in plan.quotas if q.project == project), None)
    queues = [o for o in kueue.objects(plan, None) if o["kind"] == "LocalQueue"
              and quota is not None and o["metadata"]["namespace"] == quota.namespace]
    if quota is None or not queues:
        have = ", ".join(q.project for q in plan.quotas) or "none"
        raise desc.error("project", f"project {project!r} has no batch queue at site {f.site!r} (facility "
                         f"{fname}; projects with queues there: {have})")
    resource = None
    kind = f.resources.accelerator
    if kind is not None:
        offered = plan.visible_kinds(quota.iam_group)
        if kind not in offered:
            valid = ", ".join(sorted(offered)) or "none"
            raise desc.error(f"{field}.resources.accelerator", f"{kind!r} is not offered to project {project!r} at "
                             f"site {f.site!r} (kinds its queue offers: {valid})")
        resource = offered[kind].kind.resource
    return SiteQueue(f.site, quota.namespace, queues[0]["metadata"]["name"], quota.project, resource)


def check_platform(desc: Description, registries: set[str] | None = None) -> dict[str, SiteQueue]:
    """Every offline rule across the platform: sites, queues, accelerator kinds, image projects."""
    queues = {n: site_queue(desc, n, f) for n, f in desc.training.sites().items()}
    check_images(desc, registries)
    return queues
