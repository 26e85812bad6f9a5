"""The pure part of the batch service: a submission checked field by field, the Job it becomes, its state.

Standard library only (shipped beside ``service.py``). ``Settings`` is the JSON document the bundle
writes (``aiinfn.services.batch.settings``): projects (namespace, IAM group, LocalQueue, the kinds its
queue holds), accelerator kinds (extended resource and node labels, as the hub profiles and the Kueue
flavors use them), managed images, limits, label keys, the home claim and the offload targets.

``parse(body, settings, groups)`` returns a ``Submission`` or raises ``Refused`` with the HTTP status
and one line naming the field: nothing is created before every field is valid. ``job(...)`` is the
``batch/v1`` Job, created suspended for Kueue to admit:

* ``kueue.x-k8s.io/queue-name`` = the project's LocalQueue, ``kueue.x-k8s.io/priority-class`` = batch;
* the owner as a label (a label value) and an annotation (the hub name itself);
* the image: a managed one (by name, or the session's own reference when it is one of them);
* the script copied into the Job at submission (like ``sbatch``): an environment value written to
  ``/tmp`` by a fixed runner and executed (python, bash, or a notebook run headless by nbconvert); the
  user's text is never part of a command line;
* the requested CPU, memory and accelerator (requests = limits), ``activeDeadlineSeconds`` from the
  time limit, a restricted security context, no service-account token, no service links;
* an event's job (``event``, for its participants and tutors while it is open): the event's LocalQueue
  in its namespace, the event label, only the kinds of the event's profiles, no offload, a time limit
  within the window; the home and the UID/GID are the participant's event claim's (set by the service);
* here: the user's notebook home. A notebook mounts ``home/<name>`` of the platform areas (a subPath
  of the areas claim, which no tenant namespace holds) as the user's UID/GID; a job mounts the very same
  directory through the user's home claim in the project (``aiinfn-home-<uid>``, see ``home_objects``:
  a PersistentVolume whose nfs source is that directory, pre-bound to the claim, both made by the
  service) at the same path, as the same UID/GID (the admission policy ``aiinfn-home-claims`` holds a
  pod mounting ``aiinfn-home-<uid>`` to ``runAsUser`` = ``runAsGroup`` = ``fsGroup`` = ``<uid>``, and
  only the service's Jobs and their pods may mount one); a node selector for the kind's nodes and an
  affinity that keeps it off virtual nodes; offloaded: the target's virtual node by hostname and only
  volumes a virtual node runs.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The longest script or notebook a Job carries: it travels as one environment value, and Linux
#: refuses a single argument or environment string over 128 KiB (MAX_ARG_STRLEN) at exec.
MAX_SCRIPT_BYTES = 96 * 1024
MAX_ARGS = 64
MAX_ARG_CHARS = 1024
SCRIPT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.(py|sh|ipynb)")
JOB_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
#: Volumes a virtual node (interLink 0.6) can give a pod: anything else never reaches the remote system.
OFFLOAD_VOLUMES = ("secret", "configMap", "emptyDir")
#: What the Job's container runs (fixed text; the script and its name are environment values).
RUNNER = """set -eu
d=/tmp/aiinfn-batch
mkdir -p "$d"
f="$d/$AIINFN_BATCH_SCRIPT_NAME"
printf '%s' "$AIINFN_BATCH_SCRIPT" > "$f"
unset AIINFN_BATCH_SCRIPT
case "$AIINFN_BATCH_SCRIPT_NAME" in
  *.ipynb) exec jupyter nbconvert --to notebook --execute "$f" --output-dir "$PWD" \\
             --output "${AIINFN_BATCH_SCRIPT_NAME%.ipynb}.$AIINFN_BATCH_JOB.ipynb" ;;
  *.sh) exec bash "$f" "$@" ;;
  *) exec python3 "$f" "$@" ;;
esac
"""
FIELDS = {"project", "event", "script", "args", "cpu", "memory", "gpu", "gpus", "time", "image", "offload", "home"}
TIME_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
CLOCK_RE = re.compile(r"(\d{1,4}):([0-5]\d)(?::([0-5]\d))?")
MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(G|Gi|GB|M|Mi|MB|T|Ti|TB)?")
MEMORY_UNITS = {None: 1.0, "G": 1.0, "Gi": 1.0, "GB": 1.0, "M": 1 / 1024, "Mi": 1 / 1024, "MB": 1 / 1024,
                "T": 1024.0, "Ti": 1024.0, "TB": 1024.0}


class Refused(Exception):
    """A request the service will not act on: ``status`` (4xx) and one line naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Settings:
    doc: Mapping[str, Any]

    @classmethod
    def load(cls, text: str) -> Settings:
        return cls(json.loads(text))

    @property
    def projects(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc["projects"])

    @property
    def kinds(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc["kinds"])

    @property
    def images(self) -> dict[str, str]:
        return dict(self.doc["images"])

    @property
    def limits(self) -> dict[str, int]:
        return dict(self.doc["limits"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.doc["labels"])

    @property
    def offload(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("offload") or {})

    def team_images(self, groups: set[str]) -> dict[str, str]:
        """Name -> reference of the team images whose groups include one of ``groups``."""
        teams = dict(self.doc.get("team_images") or {})
        return {name: str(t["image"]) for name, t in teams.items() if groups & set(t["groups"])}

    def carries_apptainer(self, image: str) -> bool:
        """Whether ``image`` is one the platform built with Apptainer (the managed image, a team image)."""
        app = dict(self.doc.get("apptainer") or {})
        return bool(app.get("seccomp")) and any(image.startswith(p) for p in app.get("repositories") or [])

    def member_projects(self, groups: set[str]) -> dict[str, dict[str, Any]]:
        """The projects whose IAM group is one of ``groups``."""
        return {name: p for name, p in self.projects.items() if p["group"] in groups}


@dataclass(frozen=True)
class Submission:
    #: The project whose queue takes the job (None: an event's).
    project: str | None
    namespace: str
    queue: str
    script_name: str
    script: str
    args: tuple[str, ...]
    cpu: str
    memory_gib: float
    kind: str | None
    resource: str | None
    units: int
    seconds: int
    image: str
    offload: str | None
    home: bool
    node_selector: dict[str, str] = field(default_factory=dict)
    #: The event whose queue takes the job (None: a project's), and whether ``home`` was asked for
    #: (an event's home is the participant's event claim, used when it exists).
    event: str | None = None
    home_asked: bool = False
    #: Who the pod runs as (None: the platform's notebook UID/GID); an event job: its home's owner.
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class Posix:
    """A user's POSIX identity on the platform filesystem, as the hub's spawner records it."""

    uid: int
    gid: int
    home: str


#: The users' UIDs (aiinfn_identity's range) and a home directory's name (the provisioner's rule).
UID_RANGE = (200_000, 200_000 + (1 << 24))
HOME_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


def posix(record: Any) -> Posix | None:
    """The ``aiinfn_posix`` record of a server's state (``{"uid", "gid", "home"}``), checked, or None."""
    if not isinstance(record, Mapping):
        return None
    uid, gid, home = record.get("uid"), record.get("gid"), record.get("home")
    if not (isinstance(uid, int) and not isinstance(uid, bool) and UID_RANGE[0] <= uid < UID_RANGE[1]):
        return None
    if gid != uid or not isinstance(home, str) or not HOME_NAME_RE.fullmatch(home):
        return None
    return Posix(uid, uid, home)


def home_claim(settings: Settings, uid: int) -> str:
    """The home claim of the user with ``uid`` in a project's namespace."""
    return f"{settings.doc['home']['claim_prefix']}{uid}"


def home_objects(settings: Settings, user: str, namespace: str, ident: Posix,
                 areas: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PersistentVolume (nfs: the user's notebook home, ``<areas>/home/<name>``, pre-bound to the
    claim) and the claim of ``user`` in ``namespace``; ``areas``: the platform areas' PersistentVolume
    (its server, export path and mount options are the notebooks')."""
    home = settings.doc["home"]
    labels = settings.labels
    claim = home_claim(settings, ident.uid)
    size = f"{home['size_gb']}Gi"
    nfs = dict(areas["spec"]["nfs"])
    meta = {
        "labels": {labels["owner"]: owner_label(user), labels["managed_by"]: "aiinfn-batch"},
        "annotations": {labels["owner_annotation"]: user, labels["owner_uid"]: str(ident.uid),
                        labels["owner_gid"]: str(ident.gid)},
    }
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{claim}-{namespace}", **meta},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": list(areas["spec"].get("mountOptions") or []),
            "nfs": {"server": str(nfs["server"]), "path": f"{str(nfs['path']).rstrip('/')}/home/{ident.home}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace, **meta},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "resources": {"requests": {"storage": size}}},
    }
    return pv, pvc


# --------------------------------------------------------------------------- parsing


def _bad(message: str) -> Refused:
    return Refused(400, message)


def parse_time(value: Any) -> int:
    """``4h``, ``90m``, ``1d12h``, ``2h30m``, ``01:30:00`` or a number of seconds -> seconds."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad("time: give a duration such as 4h, 90m, 1d12h or 02:30:00")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        clock = CLOCK_RE.fullmatch(text)
        span = TIME_RE.fullmatch(text)
        if clock:
            seconds = int(clock[1]) * 3600 + int(clock[2]) * 60 + int(clock[3] or 0)
        elif text.isdigit():
            seconds = int(text)
        elif span and text:
            d, h, m, s = (int(x or 0) for x in span.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + s
        else:
            raise _bad(f"time: {text[:40]!r} is not a duration such as 4h, 90m, 1d12h or 02:30:00")
    if seconds <= 0:
        raise _bad("time: the time limit must be positive")
    return seconds


def parse_memory(value: Any) -> float:
    """``16G``, ``16Gi``, ``512M``, ``1T`` or a number of GiB -> GiB."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad("memory: give an amount such as 16G or 512M")
    if isinstance(value, int | float):
        gib = float(value)
    else:
        m = MEMORY_RE.fullmatch(value.strip())
        if not m:
            raise _bad(f"memory: {value[:40]!r} is not an amount such as 16G or 512M")
        gib = float(m[1]) * MEMORY_UNITS[m[2]]
    if not gib > 0:
        raise _bad("memory: the amount must be positive")
    return gib


def parse_cpu(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad("cpu: give a number of cores such as 4 or 0.5")
    try:
        cores = float(value)
    except ValueError:
        raise _bad(f"cpu: {str(value)[:40]!r} is not a number of cores") from None
    if not cores > 0 or cores != cores:
        raise _bad("cpu: the number of cores must be positive")
    return cores


def cpu_quantity(cores: float) -> str:
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(gib: float) -> str:
    mib = round(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _plain(value: str, what: str, limit: int) -> str:
    if "\x00" in value:
        raise _bad(f"{what}: holds a NUL character")
    if len(value) > limit:
        raise _bad(f"{what}: longer than {limit} characters")
    return value


def _kind(value: str, settings: Settings, allowed: list[str]) -> str:
    """A kind by its name (``A100-80GB/1g.10gb``, any case) or its hub profile slug (``a100-80gb-1g-10gb``)."""
    wanted = value.strip().lower()
    for key, k in settings.kinds.items():
        if wanted in (key.lower(), str(k.get("slug", "")).lower()):
            if key not in allowed:
                holds = ", ".join(allowed) or "none"
                raise Refused(403, f"gpu: {key} is not in this queue (it holds: {holds})")
            return key
    raise _bad(f"gpu: {value[:60]!r} is not an accelerator kind of the platform "
               f"(kinds: {', '.join(settings.kinds) or 'none'})")


def _tighter(limit: int, other: Any) -> int:
    return min(limit, int(other)) if other else limit


def _event(value: Any, events: Mapping[str, Mapping[str, Any]], groups: set[str]) -> Mapping[str, Any]:
    """The event a participant (or tutor) in ``groups`` may submit to now, or Refused.

    ``events``: the site's event registrations as the service read them, each ``namespace``,
    ``queue``, ``groups`` (participants and tutors), ``starts``, ``ends``, ``open`` (today is in the
    window, as the hub decides), ``kinds`` and ``seconds_left`` (to the window's end)."""
    theirs = sorted(n for n, e in events.items() if groups & set(e["groups"]))
    if not isinstance(value, str) or value not in events:
        raise _bad(f"event: {str(value)[:63]!r} is not an event of this site (yours: {', '.join(theirs) or 'none'})")
    ev = events[value]
    if value not in theirs:
        raise Refused(403, f"event: you are not a participant or a tutor of {value}, so you cannot use its queue")
    if not ev["open"]:
        raise Refused(403, f"event: {value}'s queue takes jobs only during the event, {ev['starts']} to "
                      f"{ev['ends']} (UTC dates, inclusive)")
    return ev


def parse(body: Any, settings: Settings, groups: set[str],
          events: Mapping[str, Mapping[str, Any]] | None = None) -> Submission:
    """Check every field of a submission (``body``: the decoded JSON) for a user in IAM ``groups``
    (``events``: the site's events, see ``_event``; a submission names a project or an event)."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _bad(f"{unknown[0]}: unknown field (fields: {', '.join(sorted(FIELDS))})")
    limits = settings.limits

    project = body.get("project")
    mine = settings.member_projects(groups)
    event: Mapping[str, Any] | None = None
    if body.get("event") is not None:
        if project is not None:
            raise _bad("event: give a project or an event, not both")
        event = _event(body["event"], events or {}, groups)
        if body.get("offload") is not None:
            raise _bad("offload: an event's jobs run on the event's own seats at this site, not on an offload "
                       "target")
    elif not isinstance(project, str) or not project:
        if len(mine) == 1:
            project = next(iter(mine))
        else:
            raise _bad(f"project: say which project's queue to use (yours: {', '.join(sorted(mine)) or 'none'})")
    if event is None:
        if project not in settings.projects:
            yours = ", ".join(sorted(mine)) or "none"
            raise _bad(f"project: {str(project)[:63]!r} is not a project of this site (yours: {yours})")
        if project not in mine:
            raise Refused(403, f"project: you are not in {project}'s group, so you cannot use its queue "
                          f"(yours: {', '.join(sorted(mine)) or 'none'})")
        proj = settings.projects[project]
    else:
        project = None
        proj = {"namespace": event["namespace"], "queue": event["queue"], "kinds": list(event["kinds"]),
                "offload": False}

    script = body.get("script")
    if not isinstance(script, dict) or set(script) != {"name", "content"}:
        raise _bad("script: give {\"name\": \"train.py\", \"content\": \"...\"} (a .py, .sh or .ipynb file)")
    name, content = script["name"], script["content"]
    if not isinstance(name, str) or not SCRIPT_NAME_RE.fullmatch(name):
        raise _bad("script.name: a file name ending in .py, .sh or .ipynb (letters, digits, '.', '_', '-')")
    if not isinstance(content, str):
        raise _bad("script.content: the file's text")
    if len(content.encode()) > MAX_SCRIPT_BYTES:
        raise Refused(413, f"script.content: larger than {MAX_SCRIPT_BYTES // 1024} KiB: keep code in the script "
                      "and data in your home, JuiceFS or S3 (a notebook is sent without its outputs)")
    _plain(content, "script.content", MAX_SCRIPT_BYTES)

    args = body.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _bad("args: a list of strings")
    if len(args) > MAX_ARGS:
        raise _bad(f"args: more than {MAX_ARGS} arguments")
    for i, a in enumerate(args):
        _plain(a, f"args[{i}]", MAX_ARG_CHARS)

    offload = body.get("offload")
    target: dict[str, Any] | None = None
    if offload is not None:
        if not isinstance(offload, str) or offload not in settings.offload:
            raise _bad(f"offload: {str(offload)[:63]!r} is not an offload target of this site "
                       f"(targets: {', '.join(settings.offload) or 'none'})")
        target = settings.offload[offload]
        if not proj.get("offload", True):
            raise Refused(403, f"offload: project {project}'s queue may not borrow (borrowing: false), so it "
                          "cannot reach offload targets")

    cores = parse_cpu(body.get("cpu", 1))
    max_cpu = _tighter(limits["max_cpu"], target and target.get("max_cpu"))
    if cores > max_cpu:
        raise _bad(f"cpu: {cores:g} cores is more than a job may ask for ({max_cpu})")
    gib = parse_memory(body.get("memory", "4G"))
    max_mem = _tighter(limits["max_memory_gb"], target and target.get("max_memory_gb"))
    if gib > max_mem:
        raise _bad(f"memory: {gib:g} GiB is more than a job may ask for ({max_mem} GiB)")
    seconds = parse_time(body.get("time", "1h"))
    max_hours = limits["max_time_hours"] if target is None else min(limits["max_time_hours"], target["max_time_hours"])
    if seconds > max_hours * 3600:
        where = f"on {offload}" if target is not None else "here"
        raise _bad(f"time: {seconds // 3600} h {seconds % 3600 // 60} min is longer than a job may run {where} "
                   f"({max_hours} h)")
    if event is not None and seconds > int(event["seconds_left"]):
        left = int(event["seconds_left"])
        raise _bad(f"time: {seconds // 3600} h {seconds % 3600 // 60} min runs past the end of {body['event']} "
                   f"({event['ends']}, UTC): at most {left // 3600} h {left % 3600 // 60} min now")

    units = body.get("gpus", 1)
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise _bad("gpus: a positive whole number of units")
    if units > limits["max_accelerators"]:
        raise _bad(f"gpus: {units} units is more than a job may ask for ({limits['max_accelerators']})")
    gpu = body.get("gpu")
    kind = resource = None
    selector: dict[str, str] = {}
    if gpu is not None:
        if not isinstance(gpu, str) or not gpu.strip():
            raise _bad("gpu: an accelerator kind such as A100-80GB/1g.10gb or T4")
        if target is None:
            kind = _kind(gpu, settings, list(proj["kinds"]))
            resource = str(settings.kinds[kind]["resource"])
            selector = dict(settings.kinds[kind]["node_labels"])
        else:
            offered = {m.lower(): (m, r) for m, r in dict(target["accelerators"]).items()}
            if gpu.strip().lower() not in offered:
                raise _bad(f"gpu: {offload} offers {', '.join(target['accelerators']) or 'no accelerator'}, "
                           f"not {gpu[:60]!r}")
            kind, resource = offered[gpu.strip().lower()]
    elif "gpus" in body:
        raise _bad("gpus: say which kind with gpu")
    if target is not None:
        selector = {settings.labels["hostname"]: str(target["node"])}

    image = body.get("image")
    # the managed images, and the team images of the user's teams (as the spawn form offers them)
    images = {**settings.images, **settings.team_images(groups)}
    if image is None:
        ref = str(settings.doc["default_image"])
    elif isinstance(image, str) and image in images:
        ref = images[image]
    elif isinstance(image, str) and image in images.values():
        ref = image
    else:
        raise _bad(f"image: {str(image)[:80]!r} is not a managed image (names: {', '.join(images) or 'none'})")

    home = body.get("home", target is None)
    if not isinstance(home, bool):
        raise _bad("home: true or false")

    return Submission(project, str(proj["namespace"]), str(proj["queue"]), name, content, tuple(args),
                      cpu_quantity(cores), gib, kind, resource, units if kind else 0, seconds, ref,
                      offload, home, selector, event=None if event is None else str(body["event"]),
                      home_asked="home" in body)


# --------------------------------------------------------------------------- the Job


def owner_label(user: str) -> str:
    """A hub name as a label value (63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", user)[:63].strip("._-")
    return value or "user"


def job_name(user_slug: str) -> str:
    """``batch-<user>-<8 hex>``: unique, at most 63 characters, a valid label value (pods' job-name)."""
    base = re.sub(r"[^a-z0-9-]", "-", user_slug.lower())[:40].strip("-") or "user"
    return f"batch-{base}-{secrets.token_hex(4)}"


def job(sub: Submission, user: str, claim: str, name: str, settings: Settings) -> dict[str, Any]:
    """The suspended Job of ``sub`` for hub user ``user`` whose home claim in the project is ``claim``
    (``sub.uid``/``sub.gid``: the home's owner, set by the service with the claim)."""
    labels = settings.labels
    limits = settings.limits
    home = settings.doc["home"]
    pod_labels = {labels["owner"]: owner_label(user), labels["managed_by"]: "aiinfn-batch"}
    if sub.offload:
        pod_labels[labels["offload"]] = sub.offload
    if sub.event:
        pod_labels[labels["event"]] = sub.event
    job_labels = {**pod_labels, labels["queue"]: sub.queue, labels["priority"]: settings.doc["priority_class"]}
    resources: dict[str, Any] = {"cpu": sub.cpu, "memory": memory_quantity(sub.memory_gib)}
    if sub.resource:
        resources[sub.resource] = str(sub.units)
    # An image with Apptainer runs under the platform's Localhost profile (RuntimeDefault plus user
    # namespaces, installed on every node, aiinfn.images.seccomp), as its notebooks do; never on a virtual
    # node, whose remote side has no such profile.
    seccomp: dict[str, str] = {"type": "RuntimeDefault"}
    if not sub.offload and settings.carries_apptainer(sub.image):
        seccomp = {"type": "Localhost", "localhostProfile": str(settings.doc["apptainer"]["seccomp"])}
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": f"{settings.doc['tmp_size_gb']}Gi"}}]
    if sub.home:
        mounts.append({"name": "home", "mountPath": home["mount_path"]})
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": claim}})
    container: dict[str, Any] = {
        "name": "job",
        "image": sub.image,
        "command": ["/bin/sh", "-c", RUNNER, "aiinfn-batch"],
        "args": list(sub.args),
        "workingDir": home["mount_path"] if sub.home else "/tmp",
        "env": [
            {"name": "AIINFN_BATCH_JOB", "value": name},
            {"name": "AIINFN_BATCH_SCRIPT_NAME", "value": sub.script_name},
            {"name": "AIINFN_BATCH_SCRIPT", "value": sub.script},
            {"name": "HOME", "value": home["mount_path"] if sub.home else "/tmp"},
        ],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": dict(seccomp),
        },
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": int(settings.doc["uid"] if sub.uid is None else sub.uid),
            "runAsGroup": int(settings.doc["gid"] if sub.gid is None else sub.gid),
            "fsGroup": int(settings.doc["gid"] if sub.gid is None else sub.gid),
            "seccompProfile": dict(seccomp),
        },
        "containers": [container],
        "volumes": volumes,
    }
    if sub.node_selector:
        spec["nodeSelector"] = dict(sub.node_selector)
    virtual = list(settings.doc.get("virtual_nodes") or [])
    if not sub.offload and virtual:
        # Kueue must never give a local job an offload flavor (its node label is the virtual node's name)
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": labels["hostname"], "operator": "NotIn", "values": virtual}]}
        ]}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": sub.namespace,
            "labels": job_labels,
            "annotations": {labels["owner_annotation"]: user},
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "activeDeadlineSeconds": sub.seconds,
            "ttlSecondsAfterFinished": int(limits["finished_ttl_hours"]) * 3600,
            "template": {"metadata": {"labels": pod_labels}, "spec": spec},
        },
    }


def offload_refusal(pod_spec: Mapping[str, Any], target: str) -> str | None:
    """Why a virtual node cannot run ``pod_spec`` (one line), or None: interLink gives a remote job only
    Secret, ConfigMap and EmptyDir volumes."""
    for v in pod_spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        bad = [k for k in kinds if k not in OFFLOAD_VOLUMES]
        if bad:
            what = "your home (the platform's NFS)" if v.get("name") == "home" else f"volume {v.get('name')!r}"
            return (f"offload: {target} is a virtual node (interLink): it runs only Secret, ConfigMap and EmptyDir "
                    f"volumes, and {what} is {bad[0]}: bring data through JuiceFS or S3 (and submit without --home)")
    return None


# --------------------------------------------------------------------------- state


def state(job_obj: Mapping[str, Any], workload: Mapping[str, Any] | None) -> str:
    """One word for a Job and its Kueue Workload: queued, admitted, running, succeeded, failed,
    timed-out, preempted, inadmissible."""
    status = job_obj.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return "succeeded"
        if c.get("type") == "Failed":
            return "timed-out" if c.get("reason") == "DeadlineExceeded" else "failed"
    wl_conditions = {c.get("type"): c for c in ((workload or {}).get("status") or {}).get("conditions") or []}
    if (wl_conditions.get("Evicted") or {}).get("status") == "True" and (job_obj.get("spec") or {}).get("suspend"):
        return "preempted"
    if status.get("active"):
        return "running"
    if (wl_conditions.get("Admitted") or {}).get("status") == "True":
        return "admitted"
    qr = wl_conditions.get("QuotaReserved") or {}
    if qr.get("status") == "False" and qr.get("reason") == "Inadmissible":
        return "inadmissible"
    return "queued"


def summary(job_obj: Mapping[str, Any], workload: Mapping[str, Any] | None, settings: Settings) -> dict[str, Any]:
    """What ``list`` shows of a Job."""
    meta = job_obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = job_obj.get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec") or {})
    requests = ((pod.get("containers") or [{}])[0].get("resources") or {}).get("requests") or {}
    project = next((n for n, p in settings.projects.items() if p["namespace"] == meta.get("namespace")), None)
    wl_status = (workload or {}).get("status") or {}
    flavors = sorted({f for ps in (wl_status.get("admission") or {}).get("podSetAssignments") or []
                      for f in (ps.get("flavors") or {}).values()})
    return {
        "name": meta.get("name"),
        "project": project,
        "event": labels.get(settings.labels["event"]) if "event" in settings.labels else None,
        "state": state(job_obj, workload),
        "offload": labels.get(settings.labels["offload"]),
        "created": meta.get("creationTimestamp"),
        "requests": dict(requests),
        "flavors": flavors,
        "time_limit_seconds": spec.get("activeDeadlineSeconds"),
    }
