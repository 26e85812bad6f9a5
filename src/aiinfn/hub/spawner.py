"""The platform's spawner (shipped to the hub as ``aiinfn_spawner.py``): KubeSpawner 7 plus what the
platform decides before a notebook pod exists.

``PlatformSpawner`` (``c.JupyterHub.spawner_class``) keeps KubeSpawner's profiles and options and adds,
every check done by the hub before the pod is created (the form is answered at once, with the reason;
a spawn through the REST API is refused the same way):

* **the form per user**: the site's profiles the user's groups may see, the profiles of the events
  whose window is open today (UTC) for the user's groups (an event-only participant sees only those),
  and on each profile the options of *this* user: project to charge (their groups' projects, the first
  by default), CPU, memory and /dev/shm up to the largest limits of their groups, the image (a custom
  one from the platform's registry for the groups allowed), and, on accelerator profiles, whether to
  wait in the queue; each accelerator profile says how many units are free now and in total
  (``aiinfn_cluster``: nodes the user may use, Kueue's use);
* **a full kind** is refused at once unless the user chose to wait in the queue, with the expected
  wait (``aiinfn_cluster.expected_wait``: at most ~N min, or unknown); waiting, the spawn shows the
  Workload's state, its place in the queue and the expected wait as progress, and may wait
  ``queue_timeout_seconds``; a spawn that times out while queued says so with the Workload's last state;
* **the pod**: the user's UID/GID (``aiinfn_identity``) and their groups' GIDs, the home
  ``home/<name>`` of the platform areas (a subPath of the areas claim), the group areas
  ``/shared/<area>``, ``/public`` (read-only but for the admins), ``/envs``; the project (or event)
  label; ``/dev/shm`` a memory-backed emptyDir of the chosen size (an event's: its profile's
  ``shm_gb``); the areas provisioned first
  (``aiinfn_provisioner``, called with its token);
* **event notebooks** run in the event's namespace with a home claim there (not the platform areas,
  which no tenant namespace may mount; the claim records its owner's UID/GID for the archive),
  labelled with the event, and get the event's materials (``aiinfn_materials``) when the
  registration carries them.

KubeSpawner applies profile overrides onto the spawner object, which outlives a spawn; the traits any
profile may change are put back to their configured values before each spawn, so nothing leaks from
one spawn (an event's namespace, a node selector) into the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubespawner import KubeSpawner
from tornado import httpclient
from traitlets import Dict

if TYPE_CHECKING:
    from aiinfn.hub import cluster, materials
else:
    try:  # shipped beside this module in the hub
        import aiinfn_cluster as cluster
        import aiinfn_materials as materials
    except ImportError:  # the project's own tests import the package
        from aiinfn.hub import cluster, materials

#: Traits a profile, an option or this spawner may change: restored before every spawn.
RESET_TRAITS = (
    "namespace", "image", "node_selector", "tolerations", "extra_labels", "extra_resource_limits",
    "extra_resource_guarantees", "cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee", "volumes",
    "volume_mounts", "storage_pvc_ensure", "pvc_name_template", "storage_class", "storage_capacity",
    "storage_access_modes", "storage_extra_annotations", "uid", "gid", "fs_gid", "supplemental_gids", "start_timeout",
    "init_containers", "container_security_context", "pod_security_context",
)

CPU_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MEMORY_LADDER = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SHM_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_NOW, QUEUE_WAIT = "now", "wait"
HOME_MOUNT = "/home/jovyan"

SETTINGS: dict[str, Any] = {}


def configure(settings: Mapping[str, Any]) -> None:
    SETTINGS.clear()
    SETTINGS.update(copy.deepcopy(dict(settings)))
    cluster.LABELS.update(SETTINGS.get("labels") or {})


def _kinds() -> list[cluster.Kind]:
    return [cluster.Kind(k, v["slug"], v["resource"], dict(v["node_labels"]), v["flavor"])
            for k, v in (SETTINGS.get("kinds") or {}).items()]


def _limits(groups: set[str]) -> dict[str, int]:
    sizing = SETTINGS.get("sizing") or {}
    out = dict(sizing.get("default") or {"max_cpu": 8, "max_memory_gb": 32, "max_shm_gb": 8})
    for g, lim in (sizing.get("groups") or {}).items():
        if g in groups:
            out = {k: max(out[k], lim[k]) for k in out}
    return out


def _choices(ladder: tuple[int, ...], top: int, default: int, unit: str) -> dict[str, Any]:
    values = [v for v in ladder if v <= top] or [ladder[0]]
    pick = max((v for v in values if v <= default), default=values[0])
    return {str(v): {"display_name": f"{v}{unit}", **({"default": True} if v == pick else {})} for v in values}


def user_projects(groups: set[str]) -> list[str]:
    return [p for p, g in (SETTINGS.get("projects") or {}).items() if g in groups]


def custom_image_ok(groups: set[str]) -> bool:
    return bool(groups & set((SETTINGS.get("custom_images") or {}).get("groups") or []))


class PlatformSpawner(KubeSpawner):
    """KubeSpawner with the platform's checks (see the module docstring)."""

    platform_settings = Dict(config=True, help="aiinfn settings (set by aiinfn_hub.configure)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configured = {t: copy.deepcopy(getattr(self, t)) for t in RESET_TRAITS}
        self._queued = False
        self._registration: cluster.Registration | None = None
        #: The user's identity once their home is provisioned (get_state; the batch service reads it).
        self._posix: dict[str, Any] | None = None

    # ----------------------------------------------------------------- helpers

    @property
    def groups(self) -> set[str]:
        return {g.name for g in self.user.groups}

    @property
    def platform_api(self) -> cluster.Cluster:
        return shared_cluster()

    async def open_events(self) -> list[cluster.Registration]:
        day = cluster.today()
        regs = await self.platform_api.registrations(self.log)
        return [r for r in regs if r.open_on(day) and self.groups & set(r.groups)]

    async def free(self) -> dict[str, cluster.Free]:
        kinds = _kinds()
        try:
            nodes, queues = await self.platform_api.nodes(), await self.platform_api.cluster_queues()
            pending = await self.platform_api.workloads(str(SETTINGS.get("notebooks_namespace") or self.namespace))
        except Exception as e:  # the form still works without live numbers
            self.log.warning("availability unknown (%s)", e)
            return {}
        self._workloads = pending
        return cluster.availability(kinds, nodes, queues, self.groups, cluster.waiting(kinds, pending))

    _workloads: list[dict[str, Any]] = []

    def wait_for(self, kind: cluster.Kind, free: cluster.Free, pod_uid: str | None = None) -> float | None:
        """The expected wait (s, at most; None: unknown) of a new spawn of ``kind`` (or of pod ``pod_uid``'s
        place in the queue), from the Workloads read by the last ``free()``."""
        position = cluster.queue_position(kind, self._workloads, pod_uid)
        return cluster.expected_wait(kind, free, self._workloads, position, time.time(),
                                     float(SETTINGS.get("session_bound_seconds") or 0))

    # ----------------------------------------------------------------- the form

    async def profiles_for_user(self) -> list[dict[str, Any]]:
        """The profiles this user sees, with their options and live availability."""
        groups = self.groups
        allowed: dict[str, list[str] | None] = SETTINGS.get("profiles") or {}
        site_groups = set(SETTINGS.get("site_groups") or [])
        out: list[dict[str, Any]] = []
        if groups & site_groups:
            free = await self.free()
            by_slug = {k.slug: k.key for k in _kinds()}
            # one copy per profile: profiles may share their options' objects (YAML anchors in the values),
            # and one profile's options (the queue, its wait) are not another's
            for p in [copy.deepcopy(x) for x in SETTINGS.get("profile_list") or []]:
                who = allowed.get(p["slug"], [])
                if who is not None and not groups & set(who):
                    continue
                key = by_slug.get(p["slug"])
                wait: float | None = None
                if key is not None:
                    f = free.get(key)
                    kind = next(k for k in _kinds() if k.key == key)
                    wait = self.wait_for(kind, f) if f is not None and f.free == 0 else None
                    p["description"] = p.get("description", "") + "; " + (
                        _describe(f, wait) if f is not None else "free units unknown right now")
                self._add_options(p, key is not None, wait if key is not None and free.get(key) is not None
                                  and free[key].free == 0 else 0.0)
                out.append(p)
        for reg in await self.open_events():
            for ep in reg.profiles_for(self.user.name, groups):
                p = copy.deepcopy(ep)
                p.setdefault("kubespawner_override", {})
                p["display_name"] = str(p.get("display_name") or p["slug"])
                out.append(p)
        if out and not any(p.get("default") for p in out):
            out[0]["default"] = True
        return out

    def _add_options(self, profile: dict[str, Any], accelerator: bool, wait: float | None = 0.0) -> None:
        groups = self.groups
        options = profile.setdefault("profile_options", {})
        over = profile.get("kubespawner_override", {})
        lim = _limits(groups)
        projects = user_projects(groups)
        if projects:
            options["project"] = {"display_name": "Project charged",
                                  "choices": {p: {"display_name": p} for p in projects}}
        options["cpu"] = {"display_name": "CPU cores",
                          "choices": _choices(CPU_LADDER, lim["max_cpu"], int(float(over.get("cpu_limit", 4))), "")}
        mem_default = int(str(over.get("mem_limit", "16G")).rstrip("G"))
        options["memory"] = {"display_name": "Memory",
                             "choices": _choices(MEMORY_LADDER, lim["max_memory_gb"], mem_default, " GB")}
        options["shm"] = {"display_name": "/dev/shm (counts as memory)",
                          "choices": _choices(SHM_LADDER, lim["max_shm_gb"], 2, " GB")}
        teams = {n: t for n, t in (SETTINGS.get("team_images") or {}).items() if groups & set(t["groups"])}
        if teams:
            image = options.setdefault("image", {"display_name": "Environment", "choices": {"default": {
                "display_name": f"default ({SETTINGS.get('default_image', '')})",
                "kubespawner_override": {"image": SETTINGS.get("default_image", "")}}}})
            for n, t in sorted(teams.items()):
                image["choices"][n] = {"display_name": f"{n}: your team's image" + (
                    f" ({t['description']})" if t.get("description") else ""),
                    "kubespawner_override": {"image": t["image"]}}
        image = options.get("image")
        if image is not None and custom_image_ok(groups):
            custom = SETTINGS.get("custom_images") or {}
            image["unlisted_choice"] = {
                "enabled": True, "display_name": f"Your team's image ({custom.get('example', '')})",
                "validation_regex": custom.get("pattern", "^$"), "kubespawner_override": {"image": "{value}"}}
        if accelerator:
            options["queue"] = {"display_name": "When none is free", "choices": {
                QUEUE_NOW: {"display_name": "Start only if one is free now", "default": True},
                QUEUE_WAIT: {"display_name": "Wait in the queue" + (
                    f" ({cluster.describe_wait(wait)})" if wait != 0.0 else "")}}}

    # ----------------------------------------------------------------- checks

    async def run_options_from_form(self, form_data: Any) -> Any:
        options = await asyncio.ensure_future(_maybe(super().run_options_from_form(form_data)))
        await self.check_options(dict(options or {}))
        return options

    async def check_options(self, opts: dict[str, Any]) -> tuple[dict[str, Any], cluster.Registration | None]:
        """Refuse (ValueError, one sentence) what the user may not have; returns the profile chosen."""
        profiles = await self.profiles_for_user()
        if not profiles:
            raise ValueError("no profile is open to you on this hub right now")
        slug = opts.get("profile")
        profile = next((p for p in profiles if p["slug"] == slug), None) if slug else next(
            p for p in profiles if p.get("default"))
        if profile is None:
            raise ValueError(f"the profile {slug!r} is not open to you (yours: "
                             f"{', '.join(p['slug'] for p in profiles)})")
        reg = next((r for r in await self.open_events()
                    if any(p["slug"] == profile["slug"] for p in r.profiles_for(self.user.name, self.groups))), None)
        options = profile.get("profile_options") or {}
        for name, option in options.items():
            value = opts.get(name)
            if value == "unlisted-choice" and opts.get(f"{name}--unlisted-choice"):
                continue  # the form's "Other..." entry: the value itself is checked below
            if value is not None and value not in (option.get("choices") or {}):
                raise ValueError(f"{option.get('display_name', name)}: {value!r} is not one of yours "
                                 f"({', '.join(option.get('choices') or {})})")
        for name in opts:
            if name.endswith("--unlisted-choice"):
                base = name[: -len("--unlisted-choice")]
                unlisted = (options.get(base) or {}).get("unlisted_choice") or {}
                if not unlisted.get("enabled"):
                    raise ValueError(f"{base}: only the groups allowed a custom image may name one")
                if not re.fullmatch(unlisted.get("validation_regex", "^$").strip("^$"), str(opts[name])):
                    raise ValueError(f"{opts[name]!r} is not an image of the platform's registry projects "
                                     f"{', '.join((SETTINGS.get('custom_images') or {}).get('projects') or [])}")
        if "memory" in options and "shm" in options:
            mem = int(opts.get("memory") or _default(options["memory"]))
            shm = int(opts.get("shm") or _default(options["shm"]))
            if shm > mem:
                raise ValueError(f"/dev/shm ({shm} GB) cannot exceed the memory ({mem} GB): it is memory")
        kind = next((k for k in _kinds() if k.slug == profile["slug"]), None)
        self._queued = False
        if kind is not None and reg is None:
            free = (await self.free()).get(kind.key)
            wait = (opts.get("queue") or QUEUE_NOW) == QUEUE_WAIT
            if free is not None and free.free == 0 and not wait:
                raise ValueError(self._full_message(kind, free, await self.free(), self.wait_for(kind, free)))
            self._queued = wait
        return profile, reg

    @staticmethod
    def _full_message(kind: cluster.Kind, free: cluster.Free, all_free: dict[str, cluster.Free],
                      wait: float | None) -> str:
        others = [f"{k} ({f.free} free)" for k, f in all_free.items() if k != kind.key and f.free > 0]
        ahead = f" and {free.waiting} notebooks already wait for one" if free.waiting else ""
        return (f"{kind.key}: none of the {free.total} is free now{ahead}. Choose 'Wait in the queue' to wait "
                f"({cluster.describe_wait(wait)}), or another "
                "kind" + (f": {', '.join(others)}." if others else "."))

    # ----------------------------------------------------------------- the spawn

    async def load_user_options(self) -> None:
        for trait, value in self._configured.items():
            setattr(self, trait, copy.deepcopy(value))
        opts = dict(self.user_options or {})
        profile, reg = await self.check_options(opts)
        self._registration = reg
        await super().load_user_options()
        self._apply_platform(profile, reg, opts)

    def _apply_platform(self, profile: Mapping[str, Any], reg: cluster.Registration | None,
                        opts: Mapping[str, Any]) -> None:
        options = profile.get("profile_options") or {}
        if "cpu" in options:
            cpu = float(opts.get("cpu") or _default(options["cpu"]))
            self.cpu_limit = self.cpu_guarantee = cpu
        if "memory" in options:
            mem = opts.get("memory") or _default(options["memory"])
            self.mem_limit = self.mem_guarantee = f"{mem}G"
        shm = opts.get("shm") or (_default(options["shm"]) if "shm" in options else None)
        if reg is not None and not shm:
            shm = _event_shm(profile)
        volumes: dict[str, Any] = dict(getattr(self, "volumes"))  # noqa: B009 - KubeSpawner's untyped traits
        mounts: dict[str, Any] = dict(getattr(self, "volume_mounts"))  # noqa: B009
        if shm:
            volumes["dshm"] = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm}Gi"}}
            mounts["dshm"] = {"name": "dshm", "mountPath": "/dev/shm"}
        labels: dict[str, str] = dict(getattr(self, "extra_labels"))  # noqa: B009
        ident = self.authenticator.identities.posix(self.user.name)
        self.uid, self.gid, self.fs_gid = ident.uid, ident.gid, ident.gid
        if reg is None:
            projects = user_projects(self.groups)
            labels[SETTINGS["project_label"]] = str(opts.get("project") or (projects[0] if projects
                                                                              else SETTINGS["no_project"]))
            self._areas(volumes, mounts, ident)
        else:
            labels[SETTINGS["event_label"]] = reg.event
            labels.pop(SETTINGS["project_label"], None)
            self._event_storage(volumes, mounts)
            block = reg.extra.get("materials")
            if block:
                try:
                    program = Path(materials.__file__).read_text()
                    self.init_containers = [_literal(materials.init_container(
                        block, reg.event, str(self.image), HOME_MOUNT, self.user.name, program))]
                except ValueError as e:
                    self.log.warning("event %s: materials not given (%s)", reg.event, e)
        self.extra_labels = labels
        self.volumes, self.volume_mounts = volumes, mounts
        self.pod_security_context, self.container_security_context = apptainer_security(
            str(self.image), dict(getattr(self, "pod_security_context")),  # noqa: B009 - untyped traits
            dict(getattr(self, "container_security_context")))  # noqa: B009
        if self._queued:
            self.start_timeout = int(SETTINGS.get("queue_timeout_seconds", 14400))

    def _areas(self, volumes: dict[str, Any], mounts: dict[str, Any], ident: Any) -> None:
        areas = SETTINGS.get("areas") or {}
        if not areas:
            return
        claim = areas["claim"]
        volumes["home"] = {"name": "home", "persistentVolumeClaim": {"claimName": claim}}
        mounts["home"] = {"name": "home", "mountPath": HOME_MOUNT, "subPath": f"home/{ident.home}"}
        gids = []
        for g in sorted(self.groups & set(areas.get("groups") or [])):
            gid, area = self.authenticator.identities.group_gid(g)
            gids.append(gid)
            mounts[f"shared-{area}"] = {"name": "home", "mountPath": f"/shared/{area}", "subPath": f"shared/{area}"}
        admin = bool(self.groups & set(areas.get("admin_groups") or []))
        mounts["public"] = {"name": "home", "mountPath": "/public", "subPath": "public", "readOnly": not admin}
        maintains = self.groups & {e["maintainers"] for e in (areas.get("envs") or {}).values()}
        mounts["envs"] = {"name": "home", "mountPath": "/envs", "subPath": "envs", "readOnly": not maintains}
        for g in sorted(self.groups & ({*(areas.get("admin_groups") or [])} | maintains)):
            gids.append(self.authenticator.identities.group_gid(g)[0])
        self.supplemental_gids = sorted(set(gids))

    def _event_storage(self, volumes: dict[str, Any], mounts: dict[str, Any]) -> None:
        ev = SETTINGS.get("event_storage") or {}
        self.storage_pvc_ensure = True
        self.pvc_name_template = "claim-{username}"
        self.pvc_name = self._expand_user_properties(self.pvc_name_template)
        self.storage_class = ev.get("storage_class", "")
        self.storage_capacity = ev.get("capacity", "10Gi")
        self.storage_access_modes = list(ev.get("access_modes") or ["ReadWriteMany"])
        # the owner, for the archive at teardown (services/event.py; keys from the platform settings)
        owner = {cluster.LABELS[k]: str(v) for k, v in (("owner_uid", self.uid), ("owner_gid", self.gid))
                 if k in cluster.LABELS}
        self.storage_extra_annotations = {**dict(getattr(self, "storage_extra_annotations")), **owner}  # noqa: B009
        for key in [k for k, m in mounts.items() if isinstance(m, dict) and m.get("name") == "home"]:
            mounts.pop(key)
        volumes["home"] = {"name": "home", "persistentVolumeClaim": {"claimName": self.pvc_name}}
        mounts["home"] = {"name": "home", "mountPath": HOME_MOUNT}
        if "files" in volumes:  # the notebook files' ConfigMap may not exist in an event's namespace yet
            volumes["files"] = {**volumes["files"],
                                "configMap": {**volumes["files"].get("configMap", {}), "optional": True}}

    async def provision(self) -> None:
        """Make the user's areas before the pod exists (site notebooks)."""
        areas = SETTINGS.get("areas") or {}
        url = SETTINGS.get("provisioner_url")
        if self._registration is not None or not areas or not url:
            return
        ids = self.authenticator.identities
        ident = ids.posix(self.user.name)
        request = {
            "user": {"home": ident.home, "uid": ident.uid, "gid": ident.gid},
            "groups": [{"area": ids.group_gid(g)[1], "gid": ids.group_gid(g)[0]}
                       for g in sorted(self.groups & set(areas.get("groups") or []))],
            "public_gid": ids.group_gid(sorted(areas["admin_groups"])[0])[0] if areas.get("admin_groups") else None,
            "envs": [{"name": n, "gid": ids.group_gid(e["maintainers"])[0]}
                     for n, e in sorted((areas.get("envs") or {}).items())],
        }
        try:
            await httpclient.AsyncHTTPClient().fetch(
                f"{url.rstrip('/')}/provision", method="POST", body=json.dumps(request),
                headers={"Authorization": f"token {SETTINGS.get('provisioner_token', '')}",
                         "Content-Type": "application/json"}, request_timeout=60)
        except httpclient.HTTPClientError as e:
            reason = e.response.body.decode(errors="replace") if e.response is not None else str(e)
            with contextlib.suppress(ValueError):
                reason = json.loads(reason).get("error", reason)
            raise RuntimeError(f"your areas on the platform filesystem could not be prepared: {reason}") from None
        except OSError as e:
            raise RuntimeError(f"the platform's provisioner is unreachable ({e}): try again shortly") from None
        self._posix = {"uid": ident.uid, "gid": ident.gid, "home": ident.home}

    async def _start(self) -> Any:
        self._last_state: str | None = None
        try:
            return await super()._start()
        except TimeoutError:
            if self._last_state:
                raise TimeoutError(f"still waiting for Kueue after {self.start_timeout} s: {self._last_state}. "
                                   "Start again and choose 'Wait in the queue', or another kind") from None
            raise

    async def progress(self) -> Any:
        """KubeSpawner's events, and the state of the pod's Kueue Workload while it waits."""
        base = super().progress()
        state_task = asyncio.ensure_future(self._watch_workload())
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for event in base:
                await queue.put(event)
            await queue.put(None)

        pump_task = asyncio.ensure_future(pump())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, state_task}, return_when=asyncio.FIRST_COMPLETED)
                if state_task in done and getter not in done:
                    state_task = asyncio.ensure_future(self._watch_workload())
                    getter.cancel()
                    if self._pending_message:
                        yield {"progress": 40, "message": self._pending_message}
                        self._pending_message = None
                    continue
                event = getter.result()
                if event is None:
                    break
                yield event
        finally:
            state_task.cancel()
            pump_task.cancel()

    _pending_message: str | None = None
    _free_now: dict[str, cluster.Free] = {}

    async def _watch_workload(self) -> None:
        """Wait until the Workload's state changes (or 2 s), keeping the last one for progress."""
        while True:
            await asyncio.sleep(1)
            pod = (self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}") if self.pod_reflector else None)
            if not pod or (pod.get("status") or {}).get("phase") == "Running":
                continue
            uid = pod.get("metadata", {}).get("uid")
            try:
                state = cluster.workload_state(await self.platform_api.workloads(self.namespace, fresh=True), str(uid))
                self._free_now = await self.free()
            except Exception as e:
                self.log.debug("workload of %s unknown: %s", self.pod_name, e)
                continue
            if state and state.startswith("waiting"):
                state += self._queue_note(str(uid))
            if state and state != getattr(self, "_last_state", None):
                self._last_state = state
                self._pending_message = f"Kueue ({self.namespace}): {state}"
                return

    def _queue_note(self, pod_uid: str) -> str:
        """``; place N in the queue, expected wait ...`` for the waiting pod ``pod_uid``."""
        kind = next((k for k in _kinds() if all(self.node_selector.get(a) == b for a, b in k.node_labels.items())
                     and k.resource in self.extra_resource_limits), None)
        free = self._free_now.get(kind.key) if kind is not None else None
        if kind is None or free is None:
            return ""
        position = cluster.queue_position(kind, self._workloads, pod_uid)
        wait = cluster.expected_wait(kind, free, self._workloads, position, time.time(),
                                     float(SETTINGS.get("session_bound_seconds") or 0))
        return f"; place {position} in the queue, {cluster.describe_wait(wait)}"

    def get_state(self) -> dict[str, Any]:
        """KubeSpawner's state plus, once the user's home has been provisioned (a site notebook started),
        their POSIX identity on the platform filesystem (``aiinfn_posix``: uid, gid, home): what the batch
        service (the hub's ``admin:server_state`` for it) mounts a job's home as, so a job and the
        notebook share the same directory as the same UID. Kept across stops and hub restarts."""
        state: dict[str, Any] = super().get_state()
        if self._posix:
            state["aiinfn_posix"] = dict(self._posix)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if isinstance(state.get("aiinfn_posix"), dict):
            self._posix = dict(state["aiinfn_posix"])

    async def start(self) -> Any:
        await self.load_user_options_once()
        await self.provision()
        return await super().start()

    async def load_user_options_once(self) -> None:
        """Checks before anything is created (KubeSpawner loads the options again in ``_start``)."""
        _, self._registration = await self.check_options(dict(self.user_options or {}))


def carries_apptainer(image: str) -> bool:
    """Whether ``image`` is one the platform built with Apptainer (the managed image, a team image)."""
    app = SETTINGS.get("apptainer") or {}
    return any(image.startswith(prefix) for prefix in app.get("repositories") or [])


def apptainer_security(image: str, pod: dict[str, Any], container: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                          dict[str, Any]]:
    """The pod's and container's security contexts for ``image``: an image with Apptainer runs under the
    platform's Localhost seccomp profile (RuntimeDefault plus user namespaces, installed on every node by
    the rke2 role); everything else of ``restricted`` (non-root, no escalation, no capability) stays."""
    profile = (SETTINGS.get("apptainer") or {}).get("seccomp")
    if not profile or not carries_apptainer(image):
        return pod, container
    local = {"type": "Localhost", "localhostProfile": profile}
    return {**pod, "seccompProfile": dict(local)}, {**container, "seccompProfile": dict(local)}


def _default(option: Mapping[str, Any]) -> str:
    choices = option.get("choices") or {}
    return next((k for k, c in choices.items() if c.get("default")), next(iter(choices)))


def _literal(value: Any) -> Any:
    """``value`` with its braces doubled: KubeSpawner expands ``{username}``-style fields in every string
    of ``init_containers`` (str.format), and the materials program's own braces are no such fields."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def _event_shm(profile: Mapping[str, Any]) -> int:
    """An event profile's /dev/shm (GiB): the registration's ``shm_gb``, else the site's sizing default;
    never more than the profile's memory (it is memory)."""
    over = profile.get("kubespawner_override") or {}
    mem = int(float(str(over.get("mem_limit", "0")).rstrip("G") or 0))
    default = ((SETTINGS.get("sizing") or {}).get("default") or {}).get("max_shm_gb", 8)
    shm = int(profile.get("shm_gb") or default)
    return max(1, min(shm, mem)) if mem else shm


def _describe(f: cluster.Free, wait: float | None = None) -> str:
    if f.free > 0:
        return f"{f.free} of {f.total} free now"
    ahead = f", {f.waiting} waiting" if f.waiting else ""
    return (f"none free now (0 of {f.total}{ahead}): wait in the queue ({cluster.describe_wait(wait)}) "
            "or pick another kind")


async def _maybe(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


_CLUSTER: cluster.Cluster | None = None


def shared_cluster() -> cluster.Cluster:
    global _CLUSTER
    if _CLUSTER is None:
        _CLUSTER = cluster.Cluster(SETTINGS.get("hub_namespace", "jupyterhub"),
                                   float(os.environ.get("AIINFN_CLUSTER_CACHE_SECONDS") or
                                         SETTINGS.get("cache_seconds", 10)))
    return _CLUSTER
