"""aiinfn-batch: the JupyterHub service between a user's session and Kubernetes Jobs queued by Kueue.

Shipped as the package ``aiinfn_batch`` (with ``jobs.py``) and run as ``python3 -m aiinfn_batch.service``
in its own pod next to the hub (``aiinfn.services.batch``). API, under the service prefix
(``/services/aiinfn-batch/``), JSON in and out, one ``{"error", "status"}`` line on refusal:

* ``POST api/jobs``: submit (``jobs.parse`` says what a body holds) -> 201 with the Job's name;
* ``GET api/jobs``: the caller's jobs in their projects, each with its Kueue state;
* ``GET api/jobs/<name>``, ``DELETE api/jobs/<name>`` (cancel), ``GET api/jobs/<name>/logs``;
* ``GET api/whoami``: the caller's projects, kinds, images and offload targets;
* ``GET health``: no authentication (the pod's probes).

Authentication is the hub's (``HubOAuth``): a JupyterHub token in ``Authorization: token ...`` (a
server's own token, as in notebooks) or the service's OAuth cookie. No token, or one the hub does not
know, is 401; a token without ``access:services!service=aiinfn-batch`` or of a service is 403. The
caller's IAM groups are read from the hub with the service's own token (``read:users:groups``, the hub
keeps them from IAM and re-checks them at every auth refresh), so membership is the hub's current view;
the same call (``read:servers``, ``admin:server_state``) gives the caller's POSIX identity as the
platform spawner records it in its server's state (``aiinfn_posix``: UID, GID, home directory).

A user submits only to the queue of a project whose group they are in, or (``event``) to an event's
LocalQueue in its namespace while the event is open and they are among its groups (participants,
tutors): the events and their windows are the hub's registrations, read and parsed as the hub does
(``cluster``, the hub's module shipped beside this one); an event job mounts the participant's event
home claim when it exists and then runs as the owner recorded on it. A project job's home is the
user's notebook home: at their first job in a project the service makes their home volume (a
PersistentVolume whose nfs source is their notebook home, pre-bound to the claim ``aiinfn-home-<uid>``
of the project) and that claim, and the job runs as their UID/GID (``jobs.home_objects``); a user
whose identity the hub has not recorded yet (never started a notebook) gets no home, or a 409 when
they asked for one. They see, follow and cancel only their own jobs (owner label and annotation).
Every field is validated before anything is created; the per-user limit of unfinished jobs is counted
under a per-user lock (one replica); a home claim is never deleted. The Kubernetes calls go through
the official client with the pod's service account, which may only manage Jobs, read their pods' logs
and Kueue workloads, and get and create claims, in project namespaces; read the platform areas'
volume and create PersistentVolumes (admission holds both to users' home volumes); list ConfigMaps in
the hub's; in event namespaces only what it calls there. Scripts and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubOAuth
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tornado import httpclient, ioloop, web

from . import jobs

if TYPE_CHECKING:
    from aiinfn.hub import cluster
else:
    try:  # the hub's own reader of event registrations, shipped beside this module
        from . import cluster
    except ImportError:  # the project's own package
        from aiinfn.hub import cluster

log = logging.getLogger("aiinfn-batch")
#: Lines of a job's log ``logs`` returns at most.
MAX_LOG_LINES = 5000


def claim_name(user: str) -> str:
    """The home claim KubeSpawner gives ``user``'s default server (z2jh 4.4.0: ``claim-{user_server}``
    with KubeSpawner 7's ``safe`` slug scheme), so a job's home has the notebook's name."""
    from kubespawner.slugs import safe_slug  # the hub image's KubeSpawner: its own naming, not a copy

    return f"claim-{safe_slug(user, max_length=48)}"


class Kube:
    """The service's Kubernetes calls (official client, run in threads: it is synchronous)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)


def _plain(obj: Any) -> Any:
    return client.ApiClient().sanitize_for_serialization(obj)


class Batch:
    def __init__(self, settings: jobs.Settings, kube: Kube, hub_auth: HubOAuth) -> None:
        self.settings = settings
        self.kube = kube
        self.hub_auth = hub_auth
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def user_record(self, name: str) -> tuple[set[str], jobs.Posix | None]:
        """``name``'s IAM groups and POSIX identity (the default server's recorded state), from the hub."""
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}?include_stopped_servers=1"
        try:
            resp = await httpclient.AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.hub_auth.api_token}"}, request_timeout=20)
        except httpclient.HTTPClientError as e:
            raise web.HTTPError(502, f"the hub did not give {name}'s groups ({e.code})") from None
        model = json.loads(resp.body)
        state = (((model.get("servers") or {}).get("") or {}).get("state") or {})
        return {str(g) for g in model.get("groups") or []}, jobs.posix(state.get("aiinfn_posix"))

    async def groups_of(self, name: str) -> set[str]:
        return (await self.user_record(name))[0]


    async def events(self, strict: bool = True) -> dict[str, dict[str, Any]]:
        """The site's events, from the hub's registrations (the ConfigMaps the hub reads, parsed by the
        hub's own ``parse_registration``; open when the hub would offer the event's profiles today).
        ``strict``: an unreadable list is a 502 (a submission), else no event (listing a user's jobs)."""
        s = self.settings
        kube = self.kube
        selector = f"{s.labels['hub_registration']}=event"
        try:
            listed = _plain(await kube.call(kube.core.list_namespaced_config_map, s.doc["hub_namespace"],
                                            label_selector=selector))
        except ApiException as e:
            if strict:
                raise jobs.Refused(502, f"event: the site's event registrations could not be read "
                                   f"({e.status} {e.reason})") from None
            log.warning("event registrations not read (%s %s)", e.status, e.reason)
            return {}
        day = cluster.today()
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for reg in cluster.registrations_from(listed.get("items") or [], log):
            if reg.namespace != f"event-{reg.event}":  # what an event's stack writes; nothing else is trusted
                log.warning("ignoring event registration %s: namespace %r", reg.event, reg.namespace)
                continue
            slugs = {str(p.get("slug")) for p in reg.profiles}
            end = dt.datetime.combine(reg.ends + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
            out[reg.event] = {
                "namespace": reg.namespace, "queue": s.doc["event_queue"], "groups": list(reg.groups),
                "starts": reg.starts.isoformat(), "ends": reg.ends.isoformat(), "open": reg.open_on(day),
                "kinds": [k for k, kind in s.kinds.items() if f"{reg.event}-{kind.get('slug')}" in slugs],
                "seconds_left": max(0, int(end - now)),
            }
        return out


class Handler(web.RequestHandler):
    def initialize(self, batch: Batch) -> None:
        self.batch = batch
        self.posix: jobs.Posix | None = None

    def check_xsrf_cookie(self) -> None:
        # token-authenticated API: a request with the OAuth cookie alone must come with the token
        # header too to change anything (see _identify)
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        reason = self._reason
        exc = kwargs.get("exc_info")
        if exc and isinstance(exc[1], web.HTTPError) and exc[1].log_message:
            reason = exc[1].log_message
        self.finish(json.dumps({"error": reason, "status": status_code}))

    def refuse(self, e: jobs.Refused) -> None:
        self.set_status(e.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": e.message, "status": e.status}))

    def answer(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(doc))

    async def _identify(self) -> tuple[str, set[str]]:
        auth = self.batch.hub_auth
        header = auth.get_token(self, in_cookie=False)
        token = header or (auth.get_token(self) if self.request.method == "GET" else None)
        if not token:
            raise web.HTTPError(401, "no JupyterHub token (Authorization: token ...): run aiinfn-batch in a "
                                "notebook of the platform, or make a token on the hub's token page")
        model = await auth.user_for_token(token, use_cache=False, sync=False)
        if not model:
            raise web.HTTPError(401, "token not valid, or the login behind it has expired: log in again")
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "only a user's token can submit jobs")
        if not auth.check_scopes(auth.access_scopes, model):
            raise web.HTTPError(403, f"the token lacks {sorted(auth.access_scopes)}")
        name = str(model["name"])
        groups, self.posix = await self.batch.user_record(name)
        return name, groups


class JobsHandler(Handler):
    async def get(self) -> None:
        user, groups = await self._identify()
        found = await find_jobs(self.batch, user, groups)
        out = [jobs.summary(j, w, self.batch.settings) for j, w in found]
        self.answer({"jobs": sorted(out, key=lambda s: str(s.get("created") or ""), reverse=True)})

    async def post(self) -> None:
        user, groups = await self._identify()
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            return self.refuse(jobs.Refused(400, "the request body is not JSON"))
        try:
            created = await submit(self.batch, user, groups, body, self.posix)
        except jobs.Refused as e:
            return self.refuse(e)
        self.answer(created, 201)


class JobHandler(Handler):
    async def _own(self, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        user, groups = await self._identify()
        for j, w in await find_jobs(self.batch, user, groups):
            if j["metadata"]["name"] == name:
                return j, w
        raise web.HTTPError(404, f"you have no job {name[:80]!r} (aiinfn-batch list shows yours)")

    async def get(self, name: str) -> None:
        j, w = await self._own(name)
        self.answer(jobs.summary(j, w, self.batch.settings))

    async def delete(self, name: str) -> None:
        j, _ = await self._own(name)
        meta = j["metadata"]
        try:
            await self.batch.kube.call(self.batch.kube.batch.delete_namespaced_job, meta["name"], meta["namespace"],
                                       propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise web.HTTPError(502, f"the cluster did not delete the job ({e.status} {e.reason})") from None
        log.info("cancelled %s/%s", meta["namespace"], meta["name"])
        self.answer({"name": meta["name"], "state": "cancelled"})


class LogsHandler(JobHandler):
    async def get(self, name: str) -> None:
        j, _ = await self._own(name)
        meta = j["metadata"]
        kube = self.batch.kube
        selector = f"{self.batch.settings.labels['job_name']}={meta['name']}"
        pods = _plain(await kube.call(kube.core.list_namespaced_pod, meta["namespace"], label_selector=selector))
        items = sorted(pods.get("items") or [], key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        if not items:
            raise web.HTTPError(409, f"{meta['name']} has no pod yet ({jobs.state(j, None)}): no log to show")
        try:
            lines = int(self.get_argument("tail", str(MAX_LOG_LINES)))
        except ValueError:
            raise web.HTTPError(400, "tail: a number of lines") from None
        try:
            text = await kube.call(kube.core.read_namespaced_pod_log, items[-1]["metadata"]["name"], meta["namespace"],
                                   container="job", tail_lines=max(1, min(lines, MAX_LOG_LINES)))
        except ApiException as e:
            raise web.HTTPError(502 if e.status >= 500 else 409,
                                f"no log from {meta['name']}'s pod yet ({e.status} {e.reason})") from None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class WhoamiHandler(Handler):
    async def get(self) -> None:
        user, groups = await self._identify()
        s = self.batch.settings
        mine = s.member_projects(groups)
        events = {n: e for n, e in (await self.batch.events(strict=False)).items() if groups & set(e["groups"])}
        self.answer({
            "user": user,
            "projects": {n: {"kinds": p["kinds"], "namespace": p["namespace"]} for n, p in sorted(mine.items())},
            "events": {n: {k: e[k] for k in ("kinds", "namespace", "starts", "ends", "open")}
                       for n, e in sorted(events.items())},
            "images": s.images,
            "offload": {n: {"accelerators": list(t["accelerators"]), "max_time_hours": t["max_time_hours"]}
                        for n, t in s.offload.items()},
            "limits": s.limits,
        })


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.finish("ok")


# --------------------------------------------------------------------------- operations


async def find_jobs(batch: Batch, user: str, groups: set[str]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The caller's Jobs in their projects' namespaces (owner label and annotation both theirs), each
    with the Kueue Workload that owns its admission."""
    s = batch.settings
    kube = batch.kube
    selector = f"{s.labels['owner']}={jobs.owner_label(user)}"
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    namespaces = [p["namespace"] for p in s.member_projects(groups).values()]
    theirs = [e["namespace"] for e in (await batch.events(strict=False)).values() if groups & set(e["groups"])]
    for ns in [*namespaces, *theirs]:
        try:
            listed = _plain(await kube.call(kube.batch.list_namespaced_job, ns, label_selector=selector))
        except ApiException as e:
            if ns in namespaces:
                raise
            log.warning("jobs of event namespace %s not listed (%s %s)", ns, e.status, e.reason)
            continue
        mine = [j for j in listed.get("items") or []
                if (j["metadata"].get("annotations") or {}).get(s.labels["owner_annotation"]) == user]
        if not mine:
            continue
        workloads = await kube.call(kube.custom.list_namespaced_custom_object, "kueue.x-k8s.io",
                                    s.doc["kueue_version"], ns, "workloads")
        by_uid = {ref.get("uid"): w for w in workloads.get("items") or []
                  for ref in (w.get("metadata") or {}).get("ownerReferences") or [] if ref.get("kind") == "Job"}
        out.extend((j, by_uid.get(j["metadata"].get("uid"))) for j in mine)
    return out


def _finished(job_obj: dict[str, Any]) -> bool:
    return jobs.state(job_obj, None) in ("succeeded", "failed", "timed-out")


async def ensure_home(batch: Batch, user: str, namespace: str, ident: jobs.Posix) -> str:
    """The user's home claim in ``namespace``: their notebook home (``jobs.home_objects``), its volume
    and claim made at their first job there, never changed; a claim of that name not made for them is a
    409."""
    s = batch.settings
    kube = batch.kube
    name = jobs.home_claim(s, ident.uid)
    try:
        found = _plain(await kube.call(kube.core.read_namespaced_persistent_volume_claim, name, namespace))
    except ApiException as e:
        if e.status != 404:
            raise jobs.Refused(502, f"home: no answer for claim {name} ({e.status} {e.reason})") from None
        found = None
    if found is not None:
        notes = found["metadata"].get("annotations") or {}
        if notes.get(s.labels["owner_annotation"]) != user or notes.get(s.labels["owner_uid"]) != str(ident.uid):
            raise jobs.Refused(409, f"home: claim {name} in {namespace} was not made for you by the batch service: "
                               "ask the platform's administrators, or submit with --no-home")
        return name
    areas_name = s.doc["home"]["areas_volume"]
    try:
        areas = _plain(await kube.call(kube.core.read_persistent_volume, areas_name))
    except ApiException as e:
        raise jobs.Refused(503, f"home: the platform areas' volume {areas_name} could not be read "
                           f"({e.status} {e.reason}): submit with --no-home") from None
    pv, pvc = jobs.home_objects(s, user, namespace, ident, areas)
    for create, args, what in ((kube.core.create_persistent_volume, (pv,), "volume"),
                               (kube.core.create_namespaced_persistent_volume_claim, (namespace, pvc), "claim")):
        try:
            await kube.call(create, *args)
        except ApiException as e:
            if e.status != 409:  # made meanwhile (the admission rules let only this service make them): fine
                raise jobs.Refused(502, f"home: the cluster refused your home {what} {name} "
                                   f"({e.status} {e.reason})") from None
    log.info("created home volume %s and claim %s/%s", pv["metadata"]["name"], namespace, name)
    return name


async def event_home(batch: Batch, user: str, sub: jobs.Submission) -> jobs.Submission:
    """An event job's home: the participant's event claim (the spawner's, made at their first event
    notebook; the service never creates one there) when it exists, the job then running as the owner
    recorded on it (the UID/GID the archive runs as too); without it, no home."""
    s = batch.settings
    kube = batch.kube
    name = claim_name(user)
    if not sub.home:
        return sub
    try:
        found = _plain(await kube.call(kube.core.read_namespaced_persistent_volume_claim, name, sub.namespace))
    except ApiException as e:
        if e.status != 404:
            raise jobs.Refused(502, f"home: no answer for claim {name} ({e.status} {e.reason})") from None
        if sub.home_asked:
            raise jobs.Refused(409, f"home: you have no home in {sub.event} yet (it is made when you first start "
                               "the event's notebook): start it once, or submit with --no-home") from None
        return dataclasses.replace(sub, home=False)
    notes = found["metadata"].get("annotations") or {}
    uid, gid = str(notes.get(s.labels["owner_uid"], "")), str(notes.get(s.labels["owner_gid"], ""))
    if not (uid.isdigit() and gid.isdigit()) or int(uid) < 1000 or int(gid) < 1000:
        raise jobs.Refused(409, f"home: claim {name} in {sub.namespace} has no participant recorded as its owner, "
                           "so no job can run as you on it: submit with --no-home")
    return dataclasses.replace(sub, uid=int(uid), gid=int(gid))


async def submit(batch: Batch, user: str, groups: set[str], body: Any,
                 ident: jobs.Posix | None = None) -> dict[str, Any]:
    """Submit ``body`` for ``user`` (``ident``: their POSIX identity, as the hub recorded it)."""
    s = batch.settings
    wants_event = isinstance(body, dict) and body.get("event") is not None
    sub = jobs.parse(body, s, groups, await batch.events() if wants_event else None)
    claim = claim_name(user)
    if sub.event:
        sub = await event_home(batch, user, sub)
    elif sub.home and ident is None:
        if sub.home_asked:
            raise jobs.Refused(409, "home: the platform does not know your home yet (it is recorded when you "
                               "first start a notebook): start your notebook once, or submit with --no-home")
        sub = dataclasses.replace(sub, home=False)
    elif ident is not None:
        sub = dataclasses.replace(sub, uid=ident.uid, gid=ident.gid)
        if sub.home:
            claim = jobs.home_claim(s, ident.uid)
    name = jobs.job_name(claim_name(user)[len("claim-"):])
    manifest = jobs.job(sub, user, claim, name, s)
    if sub.offload:
        why = jobs.offload_refusal(manifest["spec"]["template"]["spec"], sub.offload)
        if why:
            raise jobs.Refused(400, why)
    kube = batch.kube
    async with batch.locks[user]:
        active = [j for j, _ in await find_jobs(batch, user, groups) if not _finished(j)]
        limit = int(s.limits["max_jobs_per_user"])
        if len(active) >= limit:
            raise jobs.Refused(429, f"you have {len(active)} unfinished jobs, the most a user may have at once "
                               f"({limit}): wait for one to end or cancel one")
        if sub.home and not sub.event and ident is not None:
            await ensure_home(batch, user, sub.namespace, ident)
        started = time.monotonic()
        try:
            created = _plain(await kube.call(kube.batch.create_namespaced_job, sub.namespace, manifest))
        except ApiException as e:
            raise jobs.Refused(502, f"the cluster refused the job ({e.status} {e.reason})") from None
    log.info("submitted %s/%s for %s (%.0f ms)", sub.namespace, name, user, (time.monotonic() - started) * 1000)
    return {"name": created["metadata"]["name"], "project": sub.project, "event": sub.event,
            "namespace": sub.namespace,
            "queue": sub.queue, "offload": sub.offload, "state": "queued"}


# --------------------------------------------------------------------------- the application


def make_app(batch: Batch, prefix: str) -> web.Application:
    p = "/" + prefix.strip("/") + "/"
    routes: list[Any] = [
        (p + "health", HealthHandler),
        (p + "api/whoami", WhoamiHandler, {"batch": batch}),
        (p + "api/jobs", JobsHandler, {"batch": batch}),
        (p + r"api/jobs/([a-z0-9][a-z0-9-]{0,62})", JobHandler, {"batch": batch}),
        (p + r"api/jobs/([a-z0-9][a-z0-9-]{0,62})/logs", LogsHandler, {"batch": batch}),
    ]
    return web.Application(routes, cookie_secret=os.urandom(32))


def kubernetes_api() -> client.ApiClient:
    """In the cluster the pod's service account; elsewhere (tests) the kubeconfig ``KUBECONFIG`` names."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        cfg = client.Configuration.get_default_copy()
    else:
        cfg = client.Configuration()
        config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token_file = os.environ.get("AIINFN_BATCH_API_TOKEN_FILE")
    if token_file:
        with open(token_file) as f:
            os.environ["JUPYTERHUB_API_TOKEN"] = f.read().strip()
    with open(os.environ["AIINFN_BATCH_SETTINGS"]) as f:
        settings = jobs.Settings.load(f.read())
    hub_auth = HubOAuth(cache_max_age=0)
    batch = Batch(settings, Kube(kubernetes_api()), hub_auth)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:8080"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/aiinfn-batch/")
    make_app(batch, prefix).listen(url.port or 8080, address=os.environ.get("AIINFN_BATCH_BIND", ""))
    log.info("listening on port %s under %s", url.port or 8080, prefix)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
