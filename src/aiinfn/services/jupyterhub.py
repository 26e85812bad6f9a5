"""JupyterHub (zero-to-jupyterhub) values derived from the plan.

* Login: GenericOAuthenticator against the INDIGO IAM issuer; who may log in and who is admin are
  IAM groups; the username is the `preferred_username` claim. The client secret never appears in the
  values: the hub reads it from the `OAUTH_CLIENT_SECRET` environment variable, filled from a
  Kubernetes Secret that the stack creates from the Pulumi secret.
* Profiles: one per accelerator kind the cluster really has (node selector, tolerations, the
  extended resource limit), plus a CPU-only one; each managed environment image is a choice inside
  every profile. A profile whose nodes are reserved for an IAM group, or that only some projects'
  groups may use, is shown only to those groups (hub.extraConfig filters the list per user).
* Home on the platform NFS StorageClass, /tmp on the node's local NVMe scratch, idle culling,
  user placeholders and image pre-pulling sized by configuration.
* Hub database: sqlite on a PersistentVolumeClaim the stack creates and protects (not the chart's).
* S3: when `storage.s3` names an sts-wire client, the hub keeps each user's IAM tokens in its
  encrypted auth state and hands them to the notebook, whose postStart hook mounts the user's bucket
  under `storage.s3.mount_path` with sts-wire (FUSE: /dev/fuse and CAP_SYS_ADMIN only).
"""

from __future__ import annotations

import json
from typing import Any

from .. import versions
from ..planning import Plan
from ..planning.labels import (
    INTERACTIVE_LABEL,
    PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
    ROLE_LABEL,
    kind_tolerations,
)
from . import tls
from .bundle import Bundle, ConfigSecret, Generated, Manifest, RandomBytes, Release, Secret, claim, namespace
from .kueue import INTERACTIVE_QUEUE

NAMESPACE = "jupyterhub"
RELEASE = "jupyterhub"
OAUTH_SECRET = "aiinfn-iam-oauth"
OAUTH_SECRET_KEY = "client-secret"
HUB_DB_CLAIM = "aiinfn-hub-db"
HUB_DB_MOUNT = "/srv/jupyterhub/aiinfn-db"
SCRATCH_HOST_PATH = "/scratch/jupyter"
CPU_PROFILE = "cpu"
CRYPT_SECRET = "aiinfn-hub-crypt-key"
STSWIRE_SECRET = "aiinfn-stswire-client"
STSWIRE_SECRET_KEY = "client-secret"


def profile_slug(kind: str) -> str:
    return kind.lower().replace("/", "-").replace(".", "-")


def _image(ref: str) -> tuple[str, str]:
    """``harbor/x/lab:2026.11`` -> (``harbor/x/lab``, ``2026.11``); no tag means ``latest``."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return ref, "latest"
    return name, tag


def allowed_groups(plan: Plan) -> dict[str, list[str] | None]:
    """Profile slug -> IAM groups that may see it (None: everyone who may log in).

    A kind reserved for a group is for that group only. A kind that projects hold shares of is also
    open to everyone (its shared pool is borrowable), except when it is reserved.
    """
    reserved = plan.reserved_kinds()
    out: dict[str, list[str] | None] = {CPU_PROFILE: None}
    for key in plan.capacity:
        out[profile_slug(key)] = [reserved[key]] if key in reserved else None
    return out


def profiles(plan: Plan) -> list[dict[str, Any]]:
    hub = plan.env.services.jupyterhub
    images = dict(hub.images) if hub and hub.images else {}
    choices = {
        name: {"display_name": f"{name} ({ref})", "kubespawner_override": {"image": ref}}
        for name, ref in images.items()
    }
    options = {"image": {"display_name": "Environment", "choices": choices}} if choices else {}
    out: list[dict[str, Any]] = [
        {
            "display_name": "CPU only",
            "slug": CPU_PROFILE,
            "description": "No accelerator: notebooks, data preparation, small models",
            "default": True,
            "kubespawner_override": {
                "cpu_guarantee": 1,
                "cpu_limit": 4,
                "mem_guarantee": "4G",
                "mem_limit": "16G",
                "node_selector": {ROLE_LABEL: "agent"},
            },
            **({"profile_options": options} if options else {}),
        }
    ]
    reserved = plan.reserved_kinds()
    for key, cap in plan.capacity.items():
        kind = cap.kind
        tolerations = kind_tolerations(kind.model, reserved.get(key))
        what = f"one {kind.profile} MIG slice of an {kind.model}" if kind.profile else f"one {kind.model}"
        out.append(
            {
                "display_name": f"{key} ({kind.memory_gb} GB)",
                "slug": profile_slug(key),
                "description": f"{what}; {cap.units} on the platform",
                "kubespawner_override": {
                    "node_selector": dict(kind.node_labels),
                    "tolerations": tolerations,
                    "extra_resource_limits": {kind.resource: "1"},
                    "extra_resource_guarantees": {kind.resource: "1"},
                    "cpu_guarantee": 2,
                    "cpu_limit": 8,
                    "mem_guarantee": "8G",
                    "mem_limit": "32G",
                },
                **({"profile_options": options} if options else {}),
            }
        )
    return out


PROFILE_FILTER = '''
# aiinfn: show each user only the profiles their IAM groups may use.
import json

_aiinfn_allowed = json.loads({allowed!r})
_aiinfn_profiles = c.KubeSpawner.profile_list


def _aiinfn_profile_list(spawner):
    groups = {{g.name for g in spawner.user.groups}}
    return [
        p for p in _aiinfn_profiles
        if _aiinfn_allowed.get(p["slug"]) is None or groups & set(_aiinfn_allowed[p["slug"]])
    ]


c.KubeSpawner.profile_list = _aiinfn_profile_list
'''


def profile_filter_code(plan: Plan) -> str:
    return PROFILE_FILTER.format(allowed=json.dumps(allowed_groups(plan), sort_keys=True))


TOKENS_HOOK = '''
# aiinfn: hand the user's IAM tokens to the notebook, for sts-wire to mount the user's bucket.
def _aiinfn_tokens(spawner, auth_state):
    if not auth_state:
        return
    for key, env in (("access_token", "ACCESS_TOKEN"), ("refresh_token", "REFRESH_TOKEN")):
        if auth_state.get(key):
            spawner.environment[env] = auth_state[key]
    name = spawner.user.name
    spawner.environment["AIINFN_S3_BUCKET"] = {bucket_prefix!r} + name


c.Spawner.auth_state_hook = _aiinfn_tokens
'''

#: postStart hook of the notebook container: mount the user's bucket with sts-wire, in the background,
#: when the image carries sts-wire (every managed environment does); a notebook never fails to start
#: because its bucket could not be mounted: the log says why.
MOUNT_SCRIPT = """\
command -v sts-wire >/dev/null 2>&1 || exit 0
mkdir -p "{mount}/$AIINFN_S3_BUCKET" /tmp/.sts-wire
nohup sts-wire "$IAM_SERVER" "$AIINFN_S3_BUCKET" "$S3_ENDPOINT" {role_args}\\
  "/$AIINFN_S3_BUCKET" "{mount}/$AIINFN_S3_BUCKET" \\
  --localCache full --tryRemount --noDummyFileCheck --localCacheDir /tmp/.sts-wire \\
  >/tmp/.sts-wire/mount.log 2>&1 &
exit 0
"""


def mount_script(plan: Plan) -> str | None:
    s3 = plan.env.storage.s3
    if s3 is None or s3.client_id is None:
        return None
    role_args = f'"{s3.sts_role}" "{s3.region}" ' if s3.sts_role else ""
    return MOUNT_SCRIPT.format(mount=s3.mount_path, role_args=role_args)


def tokens_hook(plan: Plan) -> str:
    s3 = plan.env.storage.s3
    prefix = f"{s3.user_bucket_prefix}-" if s3 and s3.user_bucket_prefix else ""
    return TOKENS_HOOK.format(bucket_prefix=prefix)


def login_groups(plan: Plan) -> list[str]:
    env = plan.env
    groups = [*env.iam.user_groups, *env.iam.admin_groups, *(p.iam_group for p in env.projects.values())]
    return list(dict.fromkeys(groups))


def values(plan: Plan, storage_class: str) -> dict[str, Any]:
    env = plan.env
    hub = env.services.jupyterhub
    assert hub is not None
    host = hub.hostname or env.network.ingress.hostname or f"hub.{env.site.domain}"
    issuer = env.iam.issuer.rstrip("/")
    image, tag = _image(hub.default_image)
    placeholders = hub.user_placeholders
    prepull = hub.prepull
    mount = mount_script(plan)
    s3 = env.storage.s3
    hub_env: dict[str, Any] = {
        "OAUTH_CLIENT_SECRET": {"valueFrom": {"secretKeyRef": {"name": OAUTH_SECRET, "key": OAUTH_SECRET_KEY}}}
    }
    extra_config = {"aiinfn-profiles": profile_filter_code(plan)}
    user_env: dict[str, Any] = {}
    lifecycle: dict[str, Any] = {}
    fuse_volumes: list[dict[str, Any]] = []
    fuse_mounts: list[dict[str, Any]] = []
    spawner_config: dict[str, Any] = {}
    if mount is not None and s3 is not None:
        # auth_state keeps the IAM tokens, encrypted with a key the stack generates
        hub_env["JUPYTERHUB_CRYPT_KEY"] = {"valueFrom": {"secretKeyRef": {"name": CRYPT_SECRET, "key": "key"}}}
        extra_config["aiinfn-tokens"] = tokens_hook(plan)
        user_env = {
            "IAM_SERVER": env.iam.issuer,
            "IAM_CLIENT_ID": s3.client_id,
            "IAM_CLIENT_SECRET": {
                "valueFrom": {"secretKeyRef": {"name": STSWIRE_SECRET, "key": STSWIRE_SECRET_KEY}}
            },
            "S3_ENDPOINT": s3.endpoint,
            "AIINFN_STS_WIRE": versions.STS_WIRE,
        }
        lifecycle = {"postStart": {"exec": {"command": ["/bin/sh", "-c", mount]}}}
        fuse_volumes = [{"name": "fuse", "hostPath": {"path": "/dev/fuse", "type": "CharDevice"}}]
        fuse_mounts = [{"name": "fuse", "mountPath": "/dev/fuse"}]
        # FUSE needs CAP_SYS_ADMIN in the notebook container; no other privilege is granted
        spawner_config["container_security_context"] = {
            "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
        }
    return {
        "hub": {
            "config": {
                "JupyterHub": {"authenticator_class": "generic-oauth", "admin_access": True},
                "Authenticator": {"enable_auth_state": mount is not None, "allow_existing_users": False},
                **({"KubeSpawner": spawner_config} if spawner_config else {}),
                "GenericOAuthenticator": {
                    "client_id": env.iam.client_id,
                    "oauth_callback_url": f"https://{host}/hub/oauth_callback",
                    "authorize_url": f"{issuer}/authorize",
                    "token_url": f"{issuer}/token",
                    "userdata_url": f"{issuer}/userinfo",
                    "login_service": "INDIGO IAM",
                    "username_claim": env.iam.username_claim,
                    "scope": list(env.iam.scopes),
                    "claim_groups_key": env.iam.groups_claim,
                    "allowed_groups": login_groups(plan),
                    "admin_groups": list(env.iam.admin_groups),
                    "manage_groups": True,
                },
            },
            "extraEnv": hub_env,
            "db": {"type": "other", "url": f"sqlite:///{HUB_DB_MOUNT}/jupyterhub.sqlite"},
            "extraVolumes": [{"name": "aiinfn-hub-db", "persistentVolumeClaim": {"claimName": HUB_DB_CLAIM}}],
            "extraVolumeMounts": [{"name": "aiinfn-hub-db", "mountPath": HUB_DB_MOUNT}],
            "extraConfig": extra_config,
        },
        "proxy": {"service": {"type": "ClusterIP"}},
        "ingress": {
            "enabled": True,
            "hosts": [host],
            "annotations": tls.ingress_annotations(),
            "tls": [{"hosts": [host], "secretName": "jupyterhub-tls"}],
        },
        "singleuser": {
            "image": {"name": image, "tag": tag},
            "profileList": profiles(plan),
            "extraEnv": user_env,
            "lifecycleHooks": lifecycle,
            "storage": {
                "type": "dynamic",
                "capacity": f"{hub.home_size_gb}Gi",
                "dynamic": {"storageClass": storage_class, "storageAccessModes": ["ReadWriteMany"]},
                "extraVolumes": [
                    {"name": "scratch", "hostPath": {"path": f"{SCRATCH_HOST_PATH}/{{username}}",
                                                     "type": "DirectoryOrCreate"}},
                    *fuse_volumes,
                ],
                "extraVolumeMounts": [{"name": "scratch", "mountPath": "/tmp"}, *fuse_mounts],
            },
            "networkPolicy": {"enabled": True},
            # Notebooks are Kueue workloads of the interactive queue, at interactive priority.
            "extraLabels": {
                "hub.jupyter.org/network-access-hub": "true",
                QUEUE_NAME_LABEL: INTERACTIVE_QUEUE,
                PRIORITY_CLASS_LABEL: "interactive",
            },
            "cloudMetadata": {"blockWithIptables": True},
        },
        "scheduling": {
            "userScheduler": {"enabled": True},
            "podPriority": {"enabled": True},
            "userPlaceholder": {"enabled": placeholders > 0, "replicas": placeholders},
        },
        "prePuller": {"hook": {"enabled": prepull}, "continuous": {"enabled": prepull}},
        "cull": {"enabled": True, "timeout": hub.cull_idle_seconds, "every": 300},
    }


def hub_db_claim(storage_class: str) -> dict[str, Any]:
    """The hub database's claim (the stack protects it: `protect`, `retain_on_delete`)."""
    return claim(HUB_DB_CLAIM, NAMESPACE, storage_class, 5)


def uses_auth_state(plan: Plan) -> bool:
    """The hub keeps users' IAM tokens (encrypted) when notebooks mount their buckets with sts-wire."""
    s3 = plan.env.storage.s3
    return mount_script(plan) is not None and s3 is not None and bool(s3.client_secret)


def bundle(plan: Plan, storage_class: str | None, after: tuple[str, ...]) -> Bundle | None:
    """The hub (zero-to-jupyterhub) with its OAuth secret, its protected database claim and, with
    sts-wire, the auth-state key and the sts-wire client secret. ``after``: the platform filesystem."""
    env = plan.env
    if env.services.jupyterhub is None or storage_class is None:
        return None
    ns = f"ns-{NAMESPACE}"
    deps = (ns, *after)
    items: list[Any] = [
        # notebooks still mount their bucket with FUSE (SYS_ADMIN) and /tmp from the host
        namespace(NAMESPACE, "privileged", {INTERACTIVE_LABEL: "true"}),
        Secret("iam-oauth", deps, name=OAUTH_SECRET, namespace=NAMESPACE,
               data={OAUTH_SECRET_KEY: ConfigSecret(env.iam.client_secret)}),
    ]
    s3 = env.storage.s3
    if uses_auth_state(plan) and s3 is not None and s3.client_secret:
        items.append(RandomBytes("hub-crypt-key", length=32))
        items.append(Secret(CRYPT_SECRET, deps, name=CRYPT_SECRET, namespace=NAMESPACE,
                            data={"key": Generated("hub-crypt-key", "hex")}))
        items.append(Secret(STSWIRE_SECRET, deps, name=STSWIRE_SECRET, namespace=NAMESPACE,
                            data={STSWIRE_SECRET_KEY: ConfigSecret(s3.client_secret)}))
    items.append(Manifest("hub-db", deps, hub_db_claim(storage_class), protect=True))
    items.append(Release(RELEASE, (*deps, *(i.key for i in items[1:] if isinstance(i, Secret | Manifest))),
                         chart="jupyterhub", namespace=NAMESPACE, values=values(plan, storage_class)))
    return Bundle("jupyterhub", tuple(items))
