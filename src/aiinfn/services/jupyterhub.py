"""JupyterHub (zero-to-jupyterhub) values derived from the plan.

* Login: ``IamAuthenticator`` (``aiinfn.hub.authenticator``, shipped to the hub as a file; settings in
  the ``GenericOAuthenticator`` section) against the INDIGO IAM issuer. Who may log in and who is admin
  are IAM groups, re-checked at every auth refresh (a user removed from the groups is logged out at the
  next refresh and refused at the next login). The username is the lowercased ``preferred_username``,
  bound to the IAM ``sub`` at the first login (never given to another account). The hub asks for
  ``offline_access`` and keeps the refresh token in its encrypted auth state (the chart's CryptKeeper
  key); the client secret reaches the hub only as ``OAUTH_CLIENT_SECRET`` from a Kubernetes Secret.
* Tokens for notebooks: the ``aiinfn-tokens`` service (``aiinfn.hub.tokens``, managed by the hub, port
  ``TOKENS_PORT`` of the hub's Service) gives a server's own token its user's current access token;
  notebooks get ``aiinfn-token`` (``aiinfn.hub.notebook``). No IAM token, refresh token or client
  secret is in any notebook's environment, spec or files.
* S3: the S3 API with short-lived credentials (STS AssumeRoleWithWebIdentity at ``storage.s3.endpoint``
  from the access token) through the AWS SDK's ``credential_process``; no FUSE mount in notebooks.
* Pod Security ``restricted`` for every pod of the namespace: notebooks run as non-root with no
  privilege escalation, every capability dropped and the runtime's seccomp profile (images the platform
  builds with Apptainer: its Localhost profile, RuntimeDefault plus user namespaces); /tmp is an
  emptyDir with a size limit; the cloud metadata server is blocked by the NetworkPolicy (not by the
  chart's privileged iptables init container).
* Profiles: one per accelerator kind the cluster really has (node selector, tolerations, the extended
  resource limit), plus a CPU-only one; each managed environment image is a choice inside every
  profile. A profile whose nodes are reserved for an IAM group is shown only to that group (and a
  spawn asking for it by name is refused by KubeSpawner's own profile check).
* Homes on the platform NFS StorageClass, idle culling, user placeholders and image pre-pulling sized
  by configuration; the hub database is sqlite on a PersistentVolumeClaim the stack creates and
  protects (not the chart's).

* The batch service (services.batch, when the site has one): registered as the external hub service
  ``aiinfn-batch`` (``register_batch``): users' and servers' tokens may call it, its own token reads
  users' names and groups and comes from a Secret (the ``aiinfn-batch`` extraConfig snippet, fixed
  text), notebooks get ``AIINFN_BATCH_URL`` and the ``aiinfn-batch`` client.

Every environment string reaches hub.extraConfig as one JSON literal (``repr(json.dumps(...))``) and
notebooks as environment values: never as code.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from ..hub import identity
from ..planning import Plan
from ..planning.labels import (
    EVENT_LABEL,
    HUB_REGISTRATION_LABEL,
    NAMESPACE_NAME_LABEL,
    OWNER_GID_ANNOTATION,
    OWNER_UID_ANNOTATION,
    PRIORITY_CLASS_LABEL,
    PROJECT_LABEL,
    QUEUE_NAME_LABEL,
    RESERVED_FOR_LABEL,
    ROLE_LABEL,
    VIRTUAL_NODE_TAINT,
    VIRTUAL_NODE_TYPE_LABEL,
    kind_tolerations,
)
from . import tls
from .bundle import Bundle, ConfigSecret, Manifest, Release, Secret, claim, namespace
from .kueue import INTERACTIVE_QUEUE, flavor_name

NAMESPACE = "jupyterhub"
#: Where notebooks run (services.notebooks): Kueue manages it, the hub's namespace it must not.
USERS_NAMESPACE = "jupyterhub-users"
#: The platform areas (homes, group areas, public, managed environments) under the NFS export.
AREAS_DIR = "areas"
AREAS_CLAIM = "aiinfn-areas"
FILES_CONFIGMAP = "aiinfn-notebook-files"
ENVS_KEY = "environments.json"
ENVS_FILE = "/etc/aiinfn/environments.json"
ENVS_MOUNT = "/envs"
ENV_COMMAND = "/usr/local/bin/aiinfn-env"
#: The areas provisioner (services.provisioner).
PROVISIONER_NAMESPACE = "aiinfn-provisioner"
PROVISIONER_PORT = 8080
PROVISIONER_TOKEN_SECRET = "aiinfn-provisioner-token"
PROVISIONER_TOKEN_KEY = "token"
#: The project label value of a notebook whose user is in no project (never a project's name: those
#: are DNS labels, without dots).
NO_PROJECT = "no.project"
RELEASE = "jupyterhub"
OAUTH_SECRET = "aiinfn-iam-oauth"
OAUTH_SECRET_KEY = "client-secret"
HUB_DB_CLAIM = "aiinfn-hub-db"
HUB_DB_MOUNT = "/srv/jupyterhub/aiinfn-db"
CPU_PROFILE = "cpu"
#: Seconds between the culler's passes (z2jh ``cull.every``).
CULL_EVERY = 300


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
                "description": what,
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


#: Where the hub-side programs are mounted (the chart puts this directory on the hub's sys.path).
HUB_CONFIG_DIR = "/usr/local/etc/jupyterhub"
HUB_MODULE = "aiinfn_hub"
TOKENS_SERVICE = "aiinfn-tokens"
TOKENS_MODULE = "aiinfn_tokens"
TOKENS_PORT = 8181
#: The hub's Service name under z2jh's default naming (fullnameOverride "").
HUB_SERVICE = "hub"
TOKEN_COMMAND = "/usr/local/bin/aiinfn-token"
AWS_CONFIG = "/etc/aiinfn/aws-config"
IDENTITY_DB = f"{HUB_DB_MOUNT}/identities.sqlite"
#: Seconds between the hub's re-checks of a user's IAM session and groups (JupyterHub's default).
AUTH_REFRESH_AGE = 300
#: Refresh the access token when it expires within this margin: a token aiinfn-tokens hands out is
#: then valid for at least REFRESH_MARGIN - AUTH_REFRESH_AGE seconds.
REFRESH_MARGIN = 900
NOTEBOOK_UID = 1000
NOTEBOOK_GID = 100
#: The batch service (services.batch, aiinfn.batch): registered here as a hub service, in its own namespace.
BATCH_SERVICE = "aiinfn-batch"
BATCH_NAMESPACE = "aiinfn-batch"
BATCH_PORT = 8080
BATCH_PODS = {"app.kubernetes.io/name": BATCH_SERVICE}
BATCH_TOKEN_SECRET = "aiinfn-batch-api-token"
BATCH_TOKEN_KEY = "token"
BATCH_TOKEN_ENV = "AIINFN_BATCH_API_TOKEN"
BATCH_COMMAND = "/usr/local/bin/aiinfn-batch"
#: hub.extraConfig snippet (fixed text): the batch service's hub API token from its Secret (hub.extraEnv),
#: never a Helm value. The chart's own config (run before) registered the service from hub.services.
BATCH_EXTRA_CONFIG = (
    "# aiinfn: the batch service's API token comes from the Secret aiinfn-batch-api-token (hub.extraEnv)\n"
    "import os\n"
    "for _service in c.JupyterHub.services:\n"
    f"    if _service['name'] == {BATCH_SERVICE!r}:\n"
    f"        _service['api_token'] = os.environ[{BATCH_TOKEN_ENV!r}]\n"
)

RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def hub_program(name: str) -> str:
    """The text of a hub-side program (``aiinfn/hub/<name>.py``), as shipped."""
    return resources.files("aiinfn.hub").joinpath(f"{name}.py").read_text()


def hub_fqdn() -> str:
    """The hub's Service as notebooks in other namespaces reach it."""
    return f"{HUB_SERVICE}.{NAMESPACE}.svc"


def custom_image_pattern(plan: Plan, projects: list[str]) -> str:
    """Images a group allowed a custom image may name: the platform registry's ``projects`` only."""
    from . import harbor

    host = harbor.host(plan)
    if host is None or not projects:
        return "^$"
    component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    return (f"^{re.escape(host)}/(?:{'|'.join(re.escape(p) for p in projects)})/{component}(?:/{component})*"
            r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


def hub_settings(plan: Plan) -> dict[str, Any]:
    """What hub.extraConfig hands to ``aiinfn_hub.configure`` (data only)."""
    env = plan.env
    hub = env.services.jupyterhub
    assert hub is not None
    s3 = env.storage.s3
    prefix = None if s3 is None else (f"{s3.user_bucket_prefix}-" if s3.user_bucket_prefix else "")
    kinds = {key: {"slug": profile_slug(key), "resource": cap.kind.resource, "node_labels": dict(cap.kind.node_labels),
                   "flavor": flavor_name(key)} for key, cap in plan.capacity.items()}
    nfs = env.storage.nfs
    from . import harbor, images

    return {
        "profiles": allowed_groups(plan),
        "site_groups": login_groups(plan),
        "bucket_prefix": prefix,
        "kinds": kinds,
        "projects": {q.project: q.iam_group for q in plan.quotas},
        "project_label": PROJECT_LABEL,
        "labels": {"hub_registration": HUB_REGISTRATION_LABEL, "reserved_for": RESERVED_FOR_LABEL,
                   "virtual_taint": VIRTUAL_NODE_TAINT, "virtual_type": VIRTUAL_NODE_TYPE_LABEL,
                   "owner_uid": OWNER_UID_ANNOTATION, "owner_gid": OWNER_GID_ANNOTATION},
        "event_label": EVENT_LABEL,
        "no_project": NO_PROJECT,
        "notebooks_namespace": USERS_NAMESPACE,
        "sizing": hub.sizing.model_dump(),
        "custom_images": {"groups": list(hub.custom_images.groups), "projects": list(hub.custom_images.projects),
                          "pattern": custom_image_pattern(plan, list(hub.custom_images.projects)),
                          "example": f"{harbor.host(plan) or 'harbor'}/{hub.custom_images.projects[0]}/my-lab:1"
                          if hub.custom_images.projects else ""},
        # images the platform builds with Apptainer run under its Localhost seccomp profile (aiinfn.images.seccomp)
        "apptainer": images.apptainer(plan),
        # each team image, offered in the form only to its team's groups (services.images builds it)
        "default_image": hub.default_image,
        "team_images": {n: {"groups": list(t.groups), "image": ref, "description": t.description}
                        for n, ref in images.team_image_refs(plan).items() if (t := hub.team_images[n])},
        "queue_timeout_seconds": hub.queue_timeout_minutes * 60,
        # a session ends at the latest maxAge after it starts, plus one culler pass (values' cull)
        "session_bound_seconds": hub.max_session_hours * 3600 + CULL_EVERY if hub.max_session_hours else 0,
        "areas": {
            "claim": AREAS_CLAIM,
            "groups": sorted({q.iam_group for q in plan.quotas}),
            "admin_groups": list(env.iam.admin_groups),
            "envs": {n: {"maintainers": e.maintainers} for n, e in hub.environments.items()},
        } if nfs is not None else {},
        "event_storage": {"storage_class": nfs.storage_class if nfs else "", "capacity": f"{hub.home_size_gb}Gi",
                          "access_modes": ["ReadWriteMany"]},
        "uid_base": identity.UID_BASE,
    }


def extra_config(plan: Plan) -> str:
    """hub.extraConfig: import the shipped module and call it with one JSON literal."""
    literal = repr(json.dumps(hub_settings(plan), sort_keys=True))
    return (
        "# aiinfn: profiles, options and checks per user, events, areas (settings are data: one JSON literal)\n"
        "import json\n"
        f"import {HUB_MODULE}\n"
        f"{HUB_MODULE}.configure(c, json.loads({literal}))\n"
    )


def scopes(plan: Plan) -> list[str]:
    """The scopes the hub asks IAM for: the environment's, with ``offline_access`` (a refresh token)."""
    return list(dict.fromkeys([*plan.env.iam.scopes, "offline_access"]))


def tokens_url() -> str:
    return f"http://{hub_fqdn()}:{TOKENS_PORT}/services/{TOKENS_SERVICE}/access-token"


def batch_url() -> str:
    """Where notebooks call the batch service (its Service, directly)."""
    return f"http://{BATCH_SERVICE}.{BATCH_NAMESPACE}.svc:{BATCH_PORT}/services/{BATCH_SERVICE}/"


def batch_client() -> str:
    """The ``aiinfn-batch`` command as shipped to notebooks (``aiinfn/batch/client.py``)."""
    return resources.files("aiinfn.batch").joinpath("client.py").read_text()


def notebook_env(plan: Plan) -> dict[str, Any]:
    """The notebook's environment: addresses and names only, each a plain value."""
    env: dict[str, Any] = {"AIINFN_TOKEN_URL": tokens_url(), "AIINFN_ENVS_FILE": ENVS_FILE,
                           "AIINFN_ENVS_DIR": ENVS_MOUNT}
    hub = plan.env.services.jupyterhub
    if hub is not None and hub.environments:
        # every managed environment's kernel spec, read-only under /envs (aiinfn-env build)
        env["JUPYTER_PATH"] = ":".join(f"{ENVS_MOUNT}/{n}/current/share/jupyter" for n in hub.environments)
    if plan.env.services.batch is not None:
        env["AIINFN_BATCH_URL"] = batch_url()
    s3 = plan.env.storage.s3
    if s3 is not None:
        env.update({
            "AWS_CONFIG_FILE": AWS_CONFIG,
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_REGION": s3.region,
            "AWS_DEFAULT_REGION": s3.region,
        })
        if s3.sts_role:
            env["AIINFN_S3_ROLE"] = s3.sts_role
    return env


def aws_config() -> str:
    """The notebook's AWS SDK config: only the credential command (no environment string in it)."""
    return f"[default]\ncredential_process = {TOKEN_COMMAND} s3-credentials\n"


def login_groups(plan: Plan) -> list[str]:
    env = plan.env
    groups = [*env.iam.user_groups, *env.iam.admin_groups, *(p.iam_group for p in env.projects.values())]
    return list(dict.fromkeys(groups))


#: The hub-side modules shipped beside aiinfn_hub (file of aiinfn/hub -> module name in the hub).
HUB_MODULES = {"identity": "aiinfn_identity", "cluster": "aiinfn_cluster", "spawner": "aiinfn_spawner",
               "materials": "aiinfn_materials"}


def notebook_files(plan: Plan) -> dict[str, Any]:
    """The files every notebook gets (the ConfigMap ``aiinfn-notebook-files`` of its namespace)."""
    env = plan.env
    s3 = env.storage.s3
    user_files: dict[str, Any] = {
        "aiinfn-token": {"mountPath": TOKEN_COMMAND, "stringData": hub_program("notebook"), "mode": 0o755},
        "aiinfn-env": {"mountPath": ENV_COMMAND, "stringData": hub_program("envs"), "mode": 0o755},
    }
    if s3 is not None:
        user_files["aws-config"] = {"mountPath": AWS_CONFIG, "stringData": aws_config(), "mode": 0o644}
    batch = env.services.batch is not None
    if batch:
        user_files["aiinfn-batch"] = {"mountPath": BATCH_COMMAND, "stringData": batch_client(), "mode": 0o755}
    return user_files


def files_volume(plan: Plan) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The notebook files as one ConfigMap volume and a subPath mount per file."""
    user_files = notebook_files(plan)
    items = [{"key": k, "path": k, **({"mode": f["mode"]} if "mode" in f else {})} for k, f in user_files.items()]
    items.append({"key": ENVS_KEY, "path": ENVS_KEY, "mode": 0o644})
    volume = {"name": "files", "configMap": {"name": FILES_CONFIGMAP, "items": items}}
    mounts = [{"name": "files", "mountPath": f["mountPath"], "subPath": k} for k, f in user_files.items()]
    mounts.append({"name": "files", "mountPath": ENVS_FILE, "subPath": ENVS_KEY})
    return volume, mounts


def values(plan: Plan, storage_class: str) -> dict[str, Any]:
    env = plan.env
    hub = env.services.jupyterhub
    assert hub is not None
    host = hub.hostname or env.network.ingress.hostname or f"hub.{env.site.domain}"
    issuer = env.iam.issuer.rstrip("/")
    image, tag = _image(hub.default_image)
    placeholders = hub.user_placeholders
    prepull = hub.prepull
    hub_files: dict[str, Any] = {
        HUB_MODULE: {"mountPath": f"{HUB_CONFIG_DIR}/{HUB_MODULE}.py", "stringData": hub_program("authenticator")},
        TOKENS_MODULE: {"mountPath": f"{HUB_CONFIG_DIR}/{TOKENS_MODULE}.py", "stringData": hub_program("tokens")},
        **{module: {"mountPath": f"{HUB_CONFIG_DIR}/{module}.py", "stringData": hub_program(name)}
           for name, module in HUB_MODULES.items()},
    }
    files, file_mounts = files_volume(plan)
    batch = env.services.batch is not None
    users = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: USERS_NAMESPACE}},
             "podSelector": {"matchLabels": {"component": "singleuser-server"}}}
    events = {"namespaceSelector": {"matchExpressions": [{"key": EVENT_LABEL, "operator": "Exists"}]},
              "podSelector": {"matchLabels": {"component": "singleuser-server"}}}
    hub_selector = {"matchLabels": {"component": "hub"}}
    tokens_port = {"port": TOKENS_PORT, "protocol": "TCP"}
    api_port = {"port": 8081, "protocol": "TCP"}
    out: dict[str, Any] = {
        "hub": {
            "config": {
                "JupyterHub": {
                    "authenticator_class": f"{HUB_MODULE}.IamAuthenticator",
                    "spawner_class": "aiinfn_spawner.PlatformSpawner",
                    "admin_access": True,
                    # notebooks run in another namespace: they reach the hub by its full name
                    "hub_connect_url": f"http://{hub_fqdn()}:8081",
                },
                "Authenticator": {
                    "enable_auth_state": True,
                    "allow_existing_users": False,
                    "auth_refresh_age": AUTH_REFRESH_AGE,
                    "refresh_pre_spawn": True,
                    # event tutors' roles are given and taken at login and refresh (aiinfn_hub)
                    "manage_roles": True,
                },
                "IamAuthenticator": {"identity_db": IDENTITY_DB, "refresh_margin_seconds": REFRESH_MARGIN},
                "KubeSpawner": {
                    "namespace": USERS_NAMESPACE,
                    "container_security_context": dict(RESTRICTED_CONTAINER),
                    "pod_security_context": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                },
                "GenericOAuthenticator": {
                    "client_id": env.iam.client_id,
                    "oauth_callback_url": f"https://{host}/hub/oauth_callback",
                    "authorize_url": f"{issuer}/authorize",
                    "token_url": f"{issuer}/token",
                    "userdata_url": f"{issuer}/userinfo",
                    "login_service": "INDIGO IAM",
                    "username_claim": env.iam.username_claim,
                    "scope": scopes(plan),
                    "claim_groups_key": env.iam.groups_claim,
                    "allowed_groups": login_groups(plan),
                    "admin_groups": list(env.iam.admin_groups),
                    "manage_groups": True,
                },
            },
            "extraEnv": {
                "OAUTH_CLIENT_SECRET": {
                    "valueFrom": {"secretKeyRef": {"name": OAUTH_SECRET, "key": OAUTH_SECRET_KEY}}
                },
                "AIINFN_PROVISIONER_URL": f"http://aiinfn-provisioner.{PROVISIONER_NAMESPACE}.svc:{PROVISIONER_PORT}",
                "AIINFN_PROVISIONER_TOKEN": {
                    "valueFrom": {"secretKeyRef": {"name": PROVISIONER_TOKEN_SECRET, "key": PROVISIONER_TOKEN_KEY}}
                },
            },
            "extraFiles": hub_files,
            "services": {
                TOKENS_SERVICE: {
                    "command": ["python3", f"{HUB_CONFIG_DIR}/{TOKENS_MODULE}.py"],
                    "url": f"http://{HUB_SERVICE}:{TOKENS_PORT}",
                    "display": False,
                },
            },
            "loadRoles": {
                # every user, and every server's token, may call aiinfn-tokens (for itself only)
                "user": {"scopes": ["self", f"access:services!service={TOKENS_SERVICE}"]},
                "server": {
                    "scopes": [
                        "users:activity!user",
                        "access:servers!server",
                        f"access:services!service={TOKENS_SERVICE}",
                    ]
                },
                TOKENS_SERVICE: {
                    "description": "read users' IAM tokens from the hub's auth state",
                    "scopes": ["read:users:name", "admin:auth_state"],
                    "services": [TOKENS_SERVICE],
                },
            },
            "service": {"extraPorts": [{"name": TOKENS_SERVICE, "port": TOKENS_PORT, "targetPort": TOKENS_PORT}]},
            # notebooks (their namespace, an event's) reach the hub's API and aiinfn-tokens
            "networkPolicy": {"ingress": [{"from": [users, events], "ports": [api_port, tokens_port]}]},
            "containerSecurityContext": {
                "runAsUser": 1000,
                "runAsGroup": 1000,
                **RESTRICTED_CONTAINER,
            },
            "db": {"type": "other", "url": f"sqlite:///{HUB_DB_MOUNT}/jupyterhub.sqlite"},
            "extraVolumes": [{"name": "aiinfn-hub-db", "persistentVolumeClaim": {"claimName": HUB_DB_CLAIM}}],
            "extraVolumeMounts": [{"name": "aiinfn-hub-db", "mountPath": HUB_DB_MOUNT}],
            "extraConfig": {"aiinfn": extra_config(plan)},
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
            # the user's own UID and GID are set per spawn (aiinfn_spawner, aiinfn_identity)
            "uid": NOTEBOOK_UID,
            "fsGid": NOTEBOOK_GID,
            "allowPrivilegeEscalation": False,
            "profileList": profiles(plan),
            "extraEnv": notebook_env(plan),
            "storage": {
                # the home is the user's subPath of the platform areas (aiinfn_spawner), not a claim per user
                "type": "none",
                "capacity": f"{hub.home_size_gb}Gi",
                "extraVolumes": [{"name": "tmp", "emptyDir": {"sizeLimit": f"{hub.tmp_size_gb}Gi"}}, files],
                "extraVolumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *file_mounts],
            },
            # the chart's notebook policy would live in the hub's namespace, where no notebook runs:
            # services.notebooks isolates the notebooks' namespace (the metadata server stays blocked)
            "networkPolicy": {
                "enabled": False,
                "egress": [{"to": [{"podSelector": hub_selector}], "ports": [tokens_port]}],
            },
            # Notebooks are Kueue workloads of the interactive queue, at interactive priority.
            "extraLabels": {
                "hub.jupyter.org/network-access-hub": "true",
                QUEUE_NAME_LABEL: INTERACTIVE_QUEUE,
                PRIORITY_CLASS_LABEL: "interactive",
            },
            # the chart's iptables init container is privileged and runs as root: Pod Security refuses it
            "cloudMetadata": {"blockWithIptables": False},
        },
        "scheduling": {
            "userScheduler": {"enabled": True},
            "podPriority": {"enabled": True},
            "userPlaceholder": {"enabled": placeholders > 0, "replicas": placeholders},
        },
        "prePuller": {"hook": {"enabled": prepull}, "continuous": {"enabled": prepull}},
        "cull": {"enabled": True, "timeout": hub.cull_idle_seconds, "every": CULL_EVERY,
                 "maxAge": hub.max_session_hours * 3600},
    }
    if batch:
        register_batch(out)
    return out


def register_batch(values: dict[str, Any]) -> None:
    """The batch service in the hub's values: its hub.services entry (an external service at its own
    Service), its API token from a Secret (hub.extraEnv + the ``aiinfn-batch`` extraConfig snippet), the
    service role (users' names and groups), users' and servers' tokens allowed to call it, the hub API
    reachable from its namespace (the notebooks' egress to it: services.notebooks)."""
    hub_values = values["hub"]
    hub_values["services"][BATCH_SERVICE] = {
        "url": f"http://{BATCH_SERVICE}.{BATCH_NAMESPACE}.svc:{BATCH_PORT}",
        "display": True,
        "info": {"description": "batch jobs of your projects (aiinfn-batch in a notebook)"},
    }
    hub_values["extraEnv"][BATCH_TOKEN_ENV] = {
        "valueFrom": {"secretKeyRef": {"name": BATCH_TOKEN_SECRET, "key": BATCH_TOKEN_KEY}}}
    hub_values["extraConfig"][BATCH_SERVICE] = BATCH_EXTRA_CONFIG
    roles = hub_values["loadRoles"]
    access = f"access:services!service={BATCH_SERVICE}"
    roles["user"]["scopes"].append(access)
    roles["server"]["scopes"].append(access)
    roles[BATCH_SERVICE] = {
        "description": "read users' names and IAM groups (which projects' queues they may use) and their "
                       "servers' state (the POSIX identity the platform spawner records: a job's home and UID)",
        "scopes": ["read:users:name", "read:users:groups", "read:servers", "admin:server_state"],
        "services": [BATCH_SERVICE],
    }
    batch_pods = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: BATCH_NAMESPACE}},
                  "podSelector": {"matchLabels": dict(BATCH_PODS)}}
    hub_values["networkPolicy"]["ingress"].append({"from": [batch_pods], "ports": [{"port": 8081, "protocol": "TCP"}]})


def hub_db_claim(storage_class: str) -> dict[str, Any]:
    """The hub database's claim (the stack protects it: `protect`, `retain_on_delete`)."""
    return claim(HUB_DB_CLAIM, NAMESPACE, storage_class, 5)


def bundle(plan: Plan, storage_class: str | None, after: tuple[str, ...],
           db_class: str | None = None) -> Bundle | None:
    """The hub (zero-to-jupyterhub) with its OAuth secret and its protected database claim, in a
    namespace at Pod Security ``restricted``. ``after``: the platform filesystem (and the block
    StorageClass); ``db_class``: the block StorageClass of the database's claim (services.cinder_csi),
    when the site has one, else the platform filesystem's."""
    env = plan.env
    if env.services.jupyterhub is None or storage_class is None:
        return None
    storage_class = db_class or storage_class  # from here on: the database's class
    ns = f"ns-{NAMESPACE}"
    deps = (ns, *after)
    items: list[Any] = [
        # notebooks run in USERS_NAMESPACE (services.notebooks), the interactive queue's namespace
        namespace(NAMESPACE, "restricted"),
        Secret("iam-oauth", deps, name=OAUTH_SECRET, namespace=NAMESPACE,
               data={OAUTH_SECRET_KEY: ConfigSecret(env.iam.client_secret)}),
        Manifest("hub-db", deps, hub_db_claim(storage_class), protect=True),
    ]
    items.append(Release(RELEASE, (*deps, *(i.key for i in items[1:])),
                         chart="jupyterhub", namespace=NAMESPACE, values=values(plan, storage_class)))
    return Bundle("jupyterhub", tuple(items))
