"""The environment model: everything an operator declares about a site or an event.

These models check shape and local rules (types, ranges, DNS-safe names, one-of fields, MIG profile
names against the catalogue). Rules that relate several parts of the file (a pool's flavor exists,
CIDRs do not overlap, shares fit capacity ...) live in ``validate.py``.

Secrets are never values here: fields named ``*_secret`` hold the *name* of a Pulumi config secret
(``pulumi config set --secret aiinfn:<name> ...``), checked by ``SecretRef``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from ..catalogue import accelerators as cat

#: Most devices one VM can be given (PCI passthrough); more is a typo, not a server.
MAX_DEVICES_PER_NODE = 16
#: Most GPU instances a MIG-capable GPU can hold.
MAX_MIG_INSTANCES = 7
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SECRET_REF_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
IAM_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$"
)
ON_CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:,./ ~-]{1,64}$")


def _dns_label(v: str) -> str:
    if not DNS_LABEL_RE.match(v):
        raise ValueError(
            f"{v!r} is not DNS-safe: use lowercase letters, digits and '-', at most 63 characters, "
            "starting and ending with a letter or digit"
        )
    return v


def _hostname(v: str) -> str:
    if not HOSTNAME_RE.match(v):
        raise ValueError(f"{v!r} is not a valid lowercase DNS name")
    return v


def _secret_ref(v: str) -> str:
    if not SECRET_REF_RE.match(v) or len(v) > 63:
        raise ValueError(
            "looks like a secret value, not a reference: secrets are never written in environment "
            "files; store it with `pulumi config set --secret aiinfn:<name> ...` and write <name> here "
            "(lowercase letters, digits, '-' or '_')"
        )
    return v


def _iam_group(v: str) -> str:
    if not IAM_GROUP_RE.match(v):
        raise ValueError(f"{v!r} is not a valid IAM group name")
    return v


def _label_key(v: str) -> str:
    if not LABEL_KEY_RE.match(v) or len(v) > 317:
        raise ValueError(f"{v!r} is not a valid Kubernetes label key")
    return v


def _label_value(v: str) -> str:
    if not LABEL_VALUE_RE.match(v):
        raise ValueError(f"{v!r} is not a valid Kubernetes label value")
    return v


def _ipv4_network(v: Any) -> ipaddress.IPv4Network:
    if isinstance(v, ipaddress.IPv4Network):
        return v
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv4 CIDR such as 10.0.0.0/16, got {v!r}")
    try:
        return ipaddress.IPv4Network(v, strict=True)
    except ValueError as e:
        raise ValueError(f"{v!r} is not an IPv4 CIDR ({e})") from None


def _ipv4_address(v: Any) -> ipaddress.IPv4Address:
    if isinstance(v, ipaddress.IPv4Address):
        return v
    try:
        return ipaddress.IPv4Address(str(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IPv4 address") from None


def _https_url(v: str) -> str:
    if not re.match(r"^https://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$", v):
        raise ValueError(f"{v!r} is not an https:// URL")
    return v


def _accel_model(v: str) -> str:
    try:
        return cat.model(v).name
    except KeyError:
        raise ValueError(
            f"{v!r} is not an accelerator in the catalogue (known: {', '.join(cat.model_names())})"
        ) from None


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Hostname = Annotated[str, AfterValidator(_hostname)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]
IamGroup = Annotated[str, AfterValidator(_iam_group)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_ipv4_network)]
IPv4Addr = Annotated[ipaddress.IPv4Address, BeforeValidator(_ipv4_address)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
AcceleratorName = Annotated[str, AfterValidator(_accel_model)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
PositiveInt = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class Model(BaseModel):
    """Base: unknown fields are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


# --------------------------------------------------------------------------- site


class Hypervisor(Model):
    """A class of physical hosts at the site: what the capacity planner packs node VMs onto."""

    name: DnsLabel
    count: int = Field(1, ge=1, le=1000, description="identical hosts of this class")
    cores: int = Field(ge=1, le=4096, description="physical cores usable for VMs per host")
    ram_gb: int = Field(ge=1, le=65536)
    local_nvme_gb: int = Field(0, ge=0)
    accelerators: dict[AcceleratorName, Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=dict)
    cpu_allocation_ratio: float = Field(1.0, gt=0, le=16)


class Site(Model):
    name: DnsLabel = Field(description="short site name, used in resource names and tags")
    cloud: NonEmptyStr = Field(description="entry in clouds.yaml used by preflight, inventory and pulumi")
    region: NonEmptyStr = "RegionOne"
    availability_zone: NonEmptyStr = "nova"
    image: NonEmptyStr = Field(description="Glance image name for every node")
    external_network: NonEmptyStr = Field(description="Neutron external network for router and FIPs")
    domain: Hostname = Field(description="DNS domain under which the platform's services are published")
    dns_nameservers: list[IPv4Addr] = Field(default_factory=list)
    ntp_servers: list[NonEmptyStr] = Field(default_factory=list)
    manage_flavors: bool = Field(False, description="true: create flavors; false: use existing ones by name")
    volume_type: NonEmptyStr | None = Field(None, description="default Cinder volume type")
    ssh_public_key: NonEmptyStr | None = Field(None, description="public key for the admin keypair")
    pci_aliases: dict[AcceleratorName, DnsLabel] = Field(
        default_factory=dict, description="Nova PCI alias per accelerator model, if not the catalogue's"
    )
    hosts: list[Hypervisor] = Field(default_factory=list, description="physical host classes (capacity)")

    def alias_for(self, model_name: str) -> str:
        return self.pci_aliases.get(model_name, cat.model(model_name).default_alias)


# --------------------------------------------------------------------------- network


class Ingress(Model):
    hostname: Hostname | None = None
    floating_ip: bool = True


class Network(Model):
    cidr: IPv4Net = Field(description="node subnet")
    pod_cidr: IPv4Net = ipaddress.IPv4Network("10.42.0.0/16")
    service_cidr: IPv4Net = ipaddress.IPv4Network("10.43.0.0/16")
    existing_network: NonEmptyStr | None = Field(None, description="reuse this Neutron network by name")
    ssh_allow: list[IPv4Net] = Field(default_factory=list, description="CIDRs allowed to SSH to the bastion")
    ingress: Ingress = Ingress()
    mtu: int | None = Field(None, ge=1280, le=9000)


# --------------------------------------------------------------------------- compute


class Flavor(Model):
    vcpus: PositiveInt
    ram_gb: PositiveInt
    disk_gb: int = Field(ge=0)
    ephemeral_gb: int = Field(0, ge=0)
    accelerators: dict[AcceleratorName, Annotated[int, Field(ge=1, le=MAX_DEVICES_PER_NODE)]] = Field(
        default_factory=dict
    )
    extra_specs: dict[NonEmptyStr, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_hand_written_alias(self) -> Flavor:
        if "pci_passthrough:alias" in self.extra_specs:
            raise ValueError(
                "extra_specs: write accelerators as `accelerators: {MODEL: COUNT}`; the "
                "pci_passthrough:alias spec is generated from them"
            )
        return self


class Role(StrEnum):
    SERVER = "server"
    AGENT = "agent"
    GPU = "gpu"
    FPGA = "fpga"
    NFS = "nfs"
    BACKUP = "backup"
    BASTION = "bastion"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Taint(Model):
    key: LabelKey
    value: LabelValue = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE


class DataVolume(Model):
    name: DnsLabel
    size_gb: PositiveInt
    volume_type: NonEmptyStr | None = None
    mount_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")]


class PoolAccelerators(Model):
    model: AcceleratorName
    per_node: int = Field(ge=1, le=MAX_DEVICES_PER_NODE, description="devices passed through to each node")


def _mig_layout(v: Any) -> Any:
    """Accept a list of profiles, or mig-parted's ``{profile: count}`` mapping."""
    if isinstance(v, dict | list) and not v:
        raise ValueError(
            "an empty layout enables MIG with no instances, leaving every GPU of the pool unusable: "
            "list the profiles to create on each GPU, or remove `mig` to use whole GPUs"
        )
    if isinstance(v, dict):
        out: list[Any] = []
        for name, n in v.items():
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_MIG_INSTANCES:
                raise ValueError(
                    f"count of {name!r} must be a whole number from 1 to {MAX_MIG_INSTANCES} "
                    f"(instances on one GPU), got {n!r}"
                )
            out.extend([name] * n)
        return out
    return v


MigLayout = Annotated[list[NonEmptyStr], BeforeValidator(_mig_layout)]


class NodePool(Model):
    role: Role
    flavor: NonEmptyStr
    count: int | None = Field(None, ge=0, le=999, description="nodes named <name_prefix>-NN")
    nodes: list[DnsLabel] | None = Field(None, description="explicit node names (instead of count)")
    name_prefix: DnsLabel | None = None
    accelerators: PoolAccelerators | None = None
    mig: MigLayout | None = Field(None, description="MIG layout applied to every GPU of every node")
    boot_volume_gb: PositiveInt | None = None
    volume_type: NonEmptyStr | None = None
    data_volumes: list[DataVolume] = Field(default_factory=list)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    reserved_for: IamGroup | None = Field(None, description="IAM group whose users alone may use these nodes")
    ingress: bool = Field(False, description="nodes receive the ingress floating IP and ports 80/443")

    @model_validator(mode="after")
    def _count_or_nodes(self) -> NodePool:
        if (self.count is None) == (self.nodes is None):
            raise ValueError("set exactly one of `count` (stable generated names) or `nodes` (explicit names)")
        if self.nodes is not None and self.name_prefix is not None:
            raise ValueError("`name_prefix` only applies with `count`; explicit `nodes` are used as given")
        if self.mig is not None and self.accelerators is None:
            raise ValueError("`mig` needs `accelerators` (a MIG-capable GPU model)")
        return self


# --------------------------------------------------------------------------- storage


class NfsStorage(Model):
    export_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = "/export/platform"
    size_gb: PositiveInt
    volume_type: NonEmptyStr | None = None
    storage_class: DnsLabel = "platform-nfs"


class S3NodeMount(Model):
    name: DnsLabel = Field(description="unit name suffix: sts-wire@<name>.service")
    bucket: DnsLabel = Field(description="bucket mounted on the nodes (a shared dataset, not a user's bucket)")
    mount_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = Field(description="mount point on the node")
    pools: list[DnsLabel] = Field(min_length=1, description="node pools whose nodes mount it")


class S3Storage(Model):
    endpoint: HttpsUrl
    region: NonEmptyStr = "us-east-1"
    user_bucket_prefix: DnsLabel | None = Field(
        None, description="a user's bucket is <prefix>-<username>, or just <username> without a prefix"
    )
    mount_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = "/s3"
    sts_role: NonEmptyStr | None = Field(
        None, description="STS role to assume (RadosGW, e.g. IAMaccess); unset for MinIO"
    )
    client_id: NonEmptyStr | None = Field(None, description="IAM client sts-wire uses to refresh tokens")
    client_secret: SecretRef | None = Field(None, description="its secret (name of a Pulumi config secret)")
    node_mounts: list[S3NodeMount] = Field(
        default_factory=list, description="buckets sts-wire mounts on nodes (systemd units, Ansible role sts_wire)"
    )

    @model_validator(mode="after")
    def _client_pair(self) -> S3Storage:
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("set both client_id and client_secret for sts-wire, or neither")
        if self.node_mounts and self.client_id is None:
            raise ValueError("node_mounts need client_id and client_secret: sts-wire refreshes its tokens with them")
        return self


class JuiceFsStorage(Model):
    enabled: bool = True
    bucket: HttpsUrl
    metadata_url_secret: SecretRef
    access_key_secret: SecretRef
    secret_key_secret: SecretRef
    storage_class: DnsLabel = "juicefs"


class Retention(Model):
    daily: int = Field(7, ge=0, le=366)
    weekly: int = Field(4, ge=0, le=520)
    monthly: int = Field(6, ge=0, le=240)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if self.daily + self.weekly + self.monthly == 0:
            raise ValueError("retention keeps no archive at all: set daily, weekly or monthly above 0")
        return self


class BackupStorage(Model):
    size_gb: PositiveInt
    volume_type: NonEmptyStr | None = None
    schedule: Annotated[str, StringConstraints(pattern=ON_CALENDAR_RE.pattern)] = "*-*-* 02:30:00"
    check_schedule: Annotated[str, StringConstraints(pattern=ON_CALENDAR_RE.pattern)] = "Sun *-*-* 05:00:00"
    retention: Retention = Retention()
    passphrase_secret: SecretRef
    max_age_hours: PositiveInt = Field(26, description="alert when the last good backup is older")


class Storage(Model):
    nfs: NfsStorage | None = None
    s3: S3Storage | None = None
    juicefs: JuiceFsStorage | None = None
    backup: BackupStorage | None = None


# --------------------------------------------------------------------------- identity and projects


class Iam(Model):
    issuer: HttpsUrl
    client_id: NonEmptyStr
    client_secret: SecretRef
    username_claim: NonEmptyStr = "preferred_username"
    groups_claim: NonEmptyStr = "groups"
    scopes: list[NonEmptyStr] = Field(
        default_factory=lambda: ["openid", "profile", "email", "groups", "offline_access"],
        description="scopes the hub asks IAM for; offline_access (a refresh token) is always added",
    )
    user_groups: list[IamGroup] = Field(min_length=1, description="groups whose members may log in")
    admin_groups: list[IamGroup] = Field(min_length=1, description="groups whose members are admins")


class Project(Model):
    iam_group: IamGroup
    namespace: DnsLabel | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    shares: dict[NonEmptyStr, Share] = Field(
        default_factory=dict,
        description="fraction of each accelerator kind (MODEL or MODEL/PROFILE) the project is guaranteed",
    )
    borrowing: bool = Field(True, description="may borrow idle quota from the cohort")


# --------------------------------------------------------------------------- services


class JupyterHub(Model):
    hostname: Hostname | None = None
    cull_idle_seconds: int = Field(3600, ge=300)
    default_image: NonEmptyStr
    images: dict[DnsLabel, NonEmptyStr] = Field(default_factory=dict, description="managed environments")
    home_size_gb: PositiveInt = 50
    user_placeholders: int = Field(0, ge=0, le=1000)
    prepull: bool = True
    tmp_size_gb: int = Field(20, ge=1, le=2000, description="size limit of each notebook's /tmp (an emptyDir)")


class Harbor(Model):
    hostname: Hostname | None = None
    s3_bucket: NonEmptyStr | None = None
    s3_access_key_secret: SecretRef | None = None
    s3_secret_key_secret: SecretRef | None = None
    admin_password_secret: SecretRef
    database_size_gb: PositiveInt = 10


class Monitoring(Model):
    accounting_retention_days: int = Field(
        400, ge=400, le=3650, description="days Prometheus keeps its data, accounting series included"
    )
    storage_gb: PositiveInt = Field(200, description="Prometheus volume; the TSDB is capped at 90 % of it")


class Tls(Model):
    acme_email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = Field(
        None, description="contact for the ACME account; without it certificates are self-signed"
    )
    acme_server: HttpsUrl = Field(
        "https://acme-v02.api.letsencrypt.org/directory", description="ACME directory (Let's Encrypt by default)"
    )


class Services(Model):
    jupyterhub: JupyterHub | None = None
    harbor: Harbor | None = None
    monitoring: Monitoring = Monitoring()
    tls: Tls = Tls()


def _artifact_source(v: str) -> str:
    if re.match(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$", v) or re.match(r"^/[^\s]*$", v):
        return v.rstrip("/") or "/"
    raise ValueError(f"{v!r} is neither an http(s) URL nor an absolute directory path")


def _ssh_public_key(v: str) -> str:
    if not SSH_KEY_RE.match(v):
        raise ValueError("is not an OpenSSH public key (type, base64 key, optional comment)")
    return v


class AdminUser(Model):
    name: DnsLabel = Field(description="login name created on every node")
    ssh_keys: list[Annotated[str, AfterValidator(_ssh_public_key)]] = Field(
        min_length=1, description="OpenSSH public keys allowed to log in"
    )
    sudo: bool = Field(True, description="passwordless sudo")


class Bootstrap(Model):
    artifact_source: Annotated[str, AfterValidator(_artifact_source)] | None = Field(
        None,
        description="base URL or local directory (on the machine running Ansible) holding the RKE2, sts-wire "
        "and XRT artifacts, for air-gapped sites; default: each project's public release downloads",
    )
    admin_users: list[AdminUser] = Field(default_factory=list, description="operators' accounts on every node")
    reboot: bool = Field(
        False, description="let the NVIDIA driver role reboot a node when the driver needs it (else it is reported)"
    )


class Kubernetes(Model):
    mig_strategy: Literal["single", "mixed"] = "single"
    tls_sans: list[Hostname] = Field(default_factory=list)
    cluster_domain: Hostname = "cluster.local"


# --------------------------------------------------------------------------- events


class ParticipantShare(Model):
    cpu: float = Field(2.0, gt=0, le=4096, allow_inf_nan=False)
    memory_gb: float = Field(8.0, gt=0, le=65536, allow_inf_nan=False)
    accelerators: list[NonEmptyStr] = Field(
        default_factory=list,
        description="kinds a participant may get one of (MODEL or MODEL/PROFILE), in order of preference",
    )


# --------------------------------------------------------------------------- the environment


class Environment(Model):
    """A site: its OpenStack project, the cluster on it and the services the cluster runs."""

    kind: Literal["site"] = Field("site", description="what the file describes: a site (the default)")
    name: DnsLabel
    description: str = ""
    site: Site
    network: Network
    kubernetes: Kubernetes = Kubernetes()
    bootstrap: Bootstrap = Bootstrap()
    flavors: dict[NonEmptyStr, Flavor] = Field(default_factory=dict)
    node_pools: dict[DnsLabel, NodePool] = Field(min_length=1)
    storage: Storage = Storage()
    iam: Iam
    projects: dict[DnsLabel, Project] = Field(default_factory=dict)
    services: Services = Services()

    def pci_aliases(self, flavor: str) -> dict[str, int]:
        """Nova PCI alias -> device count that flavor ``flavor`` passes through (the site's aliases)."""
        return {self.site.alias_for(m): c for m, c in self.flavors[flavor].accelerators.items()}


# --------------------------------------------------------------------------- events and federations


class Event(Model):
    """A hackathon or school: participants of an IAM group on the sites it draws on, for a window.

    An event holds only the event: it names its sites and can change nothing of them (their stacks,
    security settings and queues stay theirs). Its stack per site registers only the event's objects.
    """

    kind: Literal["event"] = Field(description="`event`: this file describes an event, not a site")
    name: DnsLabel = Field(description="the event's name; its namespace at each site is event-<name>")
    description: str = ""
    sites: list[NonEmptyStr] = Field(
        min_length=1, description="site environments the event runs on (names under environments/, or paths)"
    )
    participants: int = Field(ge=1, le=500)
    iam_group: IamGroup = Field(description="the participants' IAM group")
    tutors_group: IamGroup | None = Field(None, description="the tutors' IAM group (admins of the event)")
    starts: dt.date
    ends: dt.date
    image: NonEmptyStr = Field(description="the one image participants run, the same at every site")
    per_participant: ParticipantShare = ParticipantShare()
    placeholders: int | None = Field(None, ge=0, le=1000, description="warm placeholder pods (default: participants)")
    prepull: bool = True

    @model_validator(mode="after")
    def _dates(self) -> Event:
        if self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self

    #: the member sites, loaded and validated (set by the loader)
    _sites: dict[str, Environment] = PrivateAttr(default_factory=dict)

    @property
    def namespace(self) -> str:
        return f"event-{self.name}"

    def site_environments(self) -> dict[str, Environment]:
        """Site name -> its validated environment, in the order the file lists them."""
        return dict(self._sites)


class Federation(Model):
    """Sites run as one platform: what ties them (filled by the federation's services)."""

    kind: Literal["federation"] = Field(description="`federation`: this file ties sites together")
    name: DnsLabel
    description: str = ""
    sites: list[NonEmptyStr] = Field(min_length=2, description="member site environments")
    manager: NonEmptyStr = Field(description="the member site that dispatches federated batch work")

    _sites: dict[str, Environment] = PrivateAttr(default_factory=dict)

    def site_environments(self) -> dict[str, Environment]:
        """Site name -> its validated environment, in the order the file lists them."""
        return dict(self._sites)


#: What an environment file can describe, told apart by its `kind`.
AnyEnvironment = Environment | Event | Federation
