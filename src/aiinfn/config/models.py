"""The environment model: everything an operator declares about a site or an event.

These models check shape and local rules (types, ranges, DNS-safe names, one-of fields, MIG profile
names against the catalogue). Rules that relate several parts of the file (a pool's flavor exists,
CIDRs do not overlap, shares fit capacity ...) live in ``validate.py``.

Secrets are never values here: fields named ``*_secret`` hold the *name* of a Pulumi config secret
(``pulumi config set --secret aiinfn:<name> ...``), checked by ``SecretRef``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
import unicodedata
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
    field_validator,
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
ON_CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:,./ ~-]{1,64}$")

# --------------------------------------------------------------------------- environment strings are data
#
# Every string of an environment file ends up somewhere that could read it as code: cloud-init YAML, the
# Ansible inventory (Jinja2 on the operator's machine), shell commands and unit files on the nodes,
# Kubernetes objects. The renderers quote everything they emit; these rules make sure no value needs it.
# Every text field refuses control characters (NUL, line breaks, tabs ...), invisible format characters
# and Jinja2/Ansible template delimiters, and has a longest value; typed fields (names, hostnames, paths,
# URLs, image references ...) accept only the characters their kind is made of, so shell metacharacters
# never get into fields that cannot need them. One home: every field uses one of the types below.

#: Longest value of any text field but descriptions; descriptions are one line of at most MAX_DESCRIPTION.
MAX_TEXT = 255
MAX_DESCRIPTION = 1000
#: What starts a Jinja2 expression, statement or comment (Ansible templates every string it is given).
TEMPLATE_DELIMITERS = ("{{", "{%", "{#")
#: Unicode categories no value may hold: controls, invisible format characters (bidirectional overrides,
#: zero-width ...), surrogates, private-use and unassigned code points, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_CHARACTER_NAMES = {"\x00": "a NUL byte", "\n": "a line break", "\r": "a carriage return", "\t": "a tab",
                    "\x1b": "an escape character", "\x7f": "a DEL character", "\u2028": "a line separator",
                    "\u2029": "a paragraph separator", "\u0085": "a next-line character"}


def clip(v: Any, limit: int = 60) -> str:
    """``v`` as a message quotes it: escaped (repr), and cut short when long."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_character(ch: str) -> str:
    """``a line break ('\\n')``, ``U+202E ('\\u202e')``, ``';'``: a character as a message names it."""
    escaped = repr(ch)
    name = _CHARACTER_NAMES.get(ch)
    if name is None and unicodedata.category(ch) in _REFUSED_CATEGORIES:
        name = f"the invisible character U+{ord(ch):04X}" if unicodedata.category(ch) == "Cf" else (
            f"the control character U+{ord(ch):04X}")
    return f"{name} ({escaped})" if name else escaped


def refused_character(v: str) -> str | None:
    """The first character of ``v`` that no environment value may hold, or None."""
    return next((ch for ch in v if unicodedata.category(ch) in _REFUSED_CATEGORIES), None)


def plain_text(v: str, limit: int = MAX_TEXT) -> str:
    """The rule every text field shares: one line of visible characters, no template, at most ``limit``."""
    if len(v) > limit:
        raise ValueError(f"{clip(v, 40)} is {len(v)} characters long: at most {limit} are allowed here")
    ch = refused_character(v)
    if ch is not None:
        raise ValueError(f"{clip(v)} holds {describe_character(ch)}: write the value on one line, without "
                         "control or invisible characters")
    for delimiter in TEMPLATE_DELIMITERS:
        if delimiter in v:
            raise ValueError(f"{clip(v)} holds the template delimiter {delimiter!r}: environment values are data, "
                             "never templates; remove it")
    return v


def _plain_before(v: Any) -> Any:
    """``plain_text`` on the raw value, before whitespace is stripped (a trailing line break is refused too)."""
    return plain_text(v) if isinstance(v, str) else v


class TextKind:
    """A kind of text field: the characters it is made of, its shape, its longest value.

    Called as a pydantic validator: the shared ``plain_text`` rule first, then the kind's characters
    (the message names the first one that does not belong), then its shape.
    """

    def __init__(self, kind: str, chars: str, shape: str, *, limit: int = MAX_TEXT, hint: str = "") -> None:
        self.kind = kind
        self.chars = re.compile(f"[{chars}]")
        self.shape = re.compile(shape)
        self.limit = limit
        self.hint = hint

    def __call__(self, v: str) -> str:
        plain_text(v, self.limit)
        bad = next((ch for ch in v if not self.chars.fullmatch(ch)), None)
        if bad is not None:
            raise ValueError(f"{clip(v)} is not {self.kind}: {describe_character(bad)} is not allowed"
                             + (f" ({self.hint})" if self.hint else ""))
        if not self.shape.fullmatch(v):
            raise ValueError(f"{clip(v)} is not {self.kind}" + (f" ({self.hint})" if self.hint else ""))
        return v


_ALNUM = "A-Za-z0-9"
#: An entry of clouds.yaml, an OpenStack region (the site's or S3's).
CLOUD_NAME = TextKind("a clouds.yaml entry name", f"{_ALNUM}._-", rf"[{_ALNUM}][{_ALNUM}._-]*", limit=64,
                      hint="letters, digits, '.', '_' and '-'")
REGION = TextKind("a region name", f"{_ALNUM}._-", rf"[{_ALNUM}][{_ALNUM}._-]*", limit=64,
                  hint="letters, digits, '.', '_' and '-'")
AVAILABILITY_ZONE = TextKind("an availability zone", f"{_ALNUM}._:-", rf"[{_ALNUM}][{_ALNUM}._:-]*",
                             hint="letters, digits, '.', '_', ':' and '-'")
#: Names of OpenStack objects found by name (Glance images, Neutron networks, Cinder volume types): they
#: reach only the OpenStack API, and real clouds name them with spaces and parentheses.
OPENSTACK_NAME = TextKind("an OpenStack name", f"{_ALNUM} _.:+()/@,=-", rf"[{_ALNUM}_](?:[{_ALNUM} _.:+()/@,=-]*"
                          rf"[{_ALNUM}_.:+()/@,=-])?",
                          hint="letters, digits, spaces and _.:+()/@,=-; starting with a letter, digit or '_' "
                          "(Cinder's default type is __DEFAULT__)")
FLAVOR_NAME = TextKind("a flavor name", f"{_ALNUM}._:+-", rf"[{_ALNUM}][{_ALNUM}._:+-]*",
                       hint="letters, digits and ._:+-")
EXTRA_SPEC_KEY = TextKind("a flavor extra spec key", f"{_ALNUM}_:.-", rf"[{_ALNUM}_][{_ALNUM}_:.-]*",
                          hint="such as hw:cpu_policy")
MIG_PROFILE = TextKind("a MIG profile name", "a-z0-9.+", r"[0-9]+g\.[0-9]+gb(\+[a-z]+)?", limit=32,
                       hint="such as 1g.10gb or 1g.10gb+me")
#: An accelerator kind: MODEL or MODEL/PROFILE (``A100-80GB/1g.10gb``).
ACCELERATOR_KIND = TextKind("an accelerator kind", f"{_ALNUM}._+/-", rf"[{_ALNUM}][{_ALNUM}._+-]*(/[{_ALNUM}._+-]+)?",
                            limit=64, hint="MODEL or MODEL/PROFILE, such as A100-80GB/1g.10gb")
#: An absolute path on a node (mount points, exports): no spaces, no '..', nothing a shell or fstab reads.
ABSOLUTE_PATH = TextKind("an absolute path", f"{_ALNUM}._/+@=,-", r"(/(?!\.{1,2}(/|$))[A-Za-z0-9._+@=,-]+)+",
                         hint="starting with '/', made of letters, digits and ._+@=,- with no '.' or '..' part")
#: An environment named by an event or a federation: a name under environments/, or a relative path.
SITE_REF = TextKind("a site environment", f"{_ALNUM}._/-", rf"[{_ALNUM}._-][{_ALNUM}._/-]*",
                    hint="a name under environments/ such as cnaf, or a path to its YAML file")
#: An OCI image reference: [registry[:port]/]path[:tag][@digest], as the distribution spec writes it.
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = TextKind(
    "an image reference", f"{_ALNUM}._:/@+-",
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    limit=512, hint="[registry[:port]/]name[:tag][@sha256:digest]")
EMAIL = TextKind("an e-mail address", f"{_ALNUM}._%+@-", rf"[{_ALNUM}._%+-]+@[{_ALNUM}-]+(\.[{_ALNUM}-]+)+",
                 limit=254)
BUCKET = TextKind("an S3 bucket name", "a-z0-9.-", r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", limit=63,
                  hint="3 to 63 lowercase letters, digits, '.' and '-'")
#: An OpenID Connect claim name (``preferred_username``, ``groups``, ``wlcg.groups``, or a URI).
OIDC_CLAIM = TextKind("an OIDC claim name", f"{_ALNUM}_.:/-", rf"[{_ALNUM}_][{_ALNUM}_.:/-]*", limit=128)
#: An OAuth client id or scope.
CLIENT_ID = TextKind("an OAuth client id", f"{_ALNUM}_.:@-", rf"[{_ALNUM}][{_ALNUM}_.:@-]*")
SCOPE = TextKind("an OAuth scope", f"{_ALNUM}_.:/-", rf"[{_ALNUM}_][{_ALNUM}_.:/-]*", limit=128)
#: An STS role to assume (RadosGW ``IAMaccess``, or an ARN such as ``arn:aws:iam::123:role/x``).
STS_ROLE = TextKind("an STS role", f"{_ALNUM}_.:/@+=,-", rf"[{_ALNUM}][{_ALNUM}_.:/@+=,-]*", limit=128)
#: systemd OnCalendar expressions (``*-*-* 02:30:00``, ``Sun *-*-* 05:00:00``).
ON_CALENDAR = TextKind("a systemd calendar expression", f"{_ALNUM}*:,./ ~-", ON_CALENDAR_RE.pattern[1:-1],
                       limit=64, hint="such as '*-*-* 02:30:00'")


def _dns_label(v: str) -> str:
    plain_text(v)
    if not DNS_LABEL_RE.match(v):
        raise ValueError(
            f"{clip(v)} is not DNS-safe: use lowercase letters, digits and '-', at most 63 characters, "
            "starting and ending with a letter or digit"
        )
    return v


def _hostname(v: str) -> str:
    plain_text(v)
    if not HOSTNAME_RE.match(v):
        raise ValueError(f"{clip(v)} is not a valid lowercase DNS name")
    return v


def _secret_ref(v: str) -> str:
    # never echoes the value: it may be the secret itself
    if not SECRET_REF_RE.match(v) or len(v) > 63:
        raise ValueError(
            "looks like a secret value, not a reference: secrets are never written in environment "
            "files; store it with `pulumi config set --secret aiinfn:<name> ...` and write <name> here "
            "(lowercase letters, digits, '-' or '_')"
        )
    return v


def _iam_group(v: str) -> str:
    plain_text(v)
    if not IAM_GROUP_RE.match(v):
        raise ValueError(f"{clip(v)} is not a valid IAM group name (letters, digits and ._/-, at most 128)")
    return v


def _label_key(v: str) -> str:
    plain_text(v, 317)
    if not LABEL_KEY_RE.match(v):
        raise ValueError(f"{clip(v)} is not a valid Kubernetes label key")
    return v


def _label_value(v: str) -> str:
    plain_text(v, 63)
    if not LABEL_VALUE_RE.match(v):
        raise ValueError(f"{clip(v)} is not a valid Kubernetes label value")
    return v


def _ipv4_network(v: Any) -> ipaddress.IPv4Network:
    if isinstance(v, ipaddress.IPv4Network):
        return v
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv4 CIDR such as 10.0.0.0/16, got {clip(v)}")
    try:
        return ipaddress.IPv4Network(plain_text(v, 64), strict=True)
    except ValueError as e:
        raise ValueError(f"{clip(v)} is not an IPv4 CIDR ({e})") from None


def _ipv4_address(v: Any) -> ipaddress.IPv4Address:
    if isinstance(v, ipaddress.IPv4Address):
        return v
    try:
        return ipaddress.IPv4Address(plain_text(str(v), 64))
    except ValueError:
        raise ValueError(f"{clip(v)} is not an IPv4 address") from None


#: https://host[:port][/path]: no credentials, query or fragment, nothing a shell or a template reads.
HTTPS_URL_RE = re.compile(
    r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/:@+=,-]*)?"
)
MAX_URL = 2048


def _https_url(v: str) -> str:
    plain_text(v, MAX_URL)
    if not v.startswith("https://"):
        raise ValueError(f"{clip(v)} is not an https:// URL (plain http would let anyone on the way read or "
                         "change what is fetched)")
    if not HTTPS_URL_RE.fullmatch(v):
        bad = next((ch for ch in v[8:] if not re.fullmatch(r"[A-Za-z0-9._~%/:@+=,-]", ch)), None)
        detail = f": {describe_character(bad)} is not allowed" if bad is not None else ""
        raise ValueError(f"{clip(v)} is not an https:// URL of the form https://host[:port][/path]{detail}")
    return v


def _description(v: str) -> str:
    return plain_text(v, MAX_DESCRIPTION)


def _ntp_server(v: str) -> str:
    plain_text(v)
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        pass
    if not HOSTNAME_RE.match(v):
        bad = next((ch for ch in v if not re.fullmatch(r"[a-z0-9.-]", ch)), None)
        detail = f": {describe_character(bad)} is not allowed" if bad is not None else ""
        raise ValueError(f"{clip(v)} is not an NTP server: write a lowercase hostname or an IP address{detail}")
    return v


# --------------------------------------------------------------------------- SSH public keys

#: Key types accepted in authorized_keys, and the curve each ECDSA type names inside its key data.
SSH_KEY_TYPES: dict[str, str | None] = {
    "ssh-ed25519": None,
    "sk-ssh-ed25519@openssh.com": None,
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com": "nistp256",
    "ssh-rsa": None,
}
#: Length of an uncompressed ECDSA point per curve (0x04 || X || Y).
_ECDSA_POINT = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384
#: Longest key line accepted (a 16384-bit RSA key with a long comment is well under it).
MAX_SSH_KEY = 4096
_SSH_KEY_FORMAT = "is not an OpenSSH public key (type, base64 key, optional comment)"


class _Blob:
    """Reads the SSH wire format of a public key (RFC 4251: uint32 length, then that many bytes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.data):
            raise ValueError("the key data ends early")
        n = int.from_bytes(self.data[self.at: self.at + 4], "big")
        if n > len(self.data) - self.at - 4:
            raise ValueError("the key data ends early")
        out = self.data[self.at + 4: self.at + 4 + n]
        self.at += 4 + n
        return out

    def done(self) -> None:
        if self.at != len(self.data):
            raise ValueError("the key data has bytes after the key")


def _ssh_key_data(typ: str, blob: bytes) -> None:
    """Check the key data of a ``typ`` key: its embedded type, then the fields that type carries."""
    r = _Blob(blob)
    inner = r.string()
    if inner != typ.encode():
        raise ValueError(f"the key data is of type {clip(inner.decode('ascii', 'replace'))}, not {typ!r}")
    curve = SSH_KEY_TYPES[typ]
    if typ in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        if len(r.string()) != 32:
            raise ValueError("an Ed25519 key is 32 bytes")
    elif curve is not None:
        if r.string() != curve.encode():
            raise ValueError(f"the key data does not name curve {curve}")
        point = r.string()
        if len(point) != _ECDSA_POINT[curve] or point[0] != 4:
            raise ValueError(f"the key data does not hold a {curve} point")
    else:  # ssh-rsa: exponent, then modulus
        e = int.from_bytes(r.string(), "big")
        n = r.string().lstrip(b"\0")
        bits = int.from_bytes(n, "big").bit_length()
        if e < 3 or e % 2 == 0:
            raise ValueError("the RSA exponent is not valid")
        if bits < MIN_RSA_BITS:
            raise ValueError(f"a {bits}-bit RSA key is too weak: use ssh-ed25519, or RSA of at least "
                             f"{MIN_RSA_BITS} bits")
        if bits > MAX_RSA_BITS:
            raise ValueError(f"a {bits}-bit RSA key is larger than OpenSSH accepts ({MAX_RSA_BITS})")
    if typ.startswith("sk-") and not r.string().startswith(b"ssh:"):
        raise ValueError("a security-key key names an application starting with 'ssh:'")
    r.done()


def ssh_public_key(v: str) -> str:
    """One OpenSSH public key as ``ssh-keygen`` writes it (``TYPE BASE64 [COMMENT]``), parsed, not pattern-matched:
    a known type, base64 that decodes to key data of that same type, a sane size, a one-line comment."""
    if len(v) > MAX_SSH_KEY:
        raise ValueError(f"{_SSH_KEY_FORMAT}: {len(v)} characters, at most {MAX_SSH_KEY}")
    ch = refused_character(v)
    if ch is not None:
        raise ValueError(f"{_SSH_KEY_FORMAT}: it holds {describe_character(ch)}; write one key per entry, on one line")
    parts = v.split(None, 2)
    if len(parts) < 2:
        raise ValueError(f"{_SSH_KEY_FORMAT}: write the whole line of the .pub file, such as "
                         "'ssh-ed25519 AAAAC3... you@host'")
    typ, data = parts[0], parts[1]
    comment = parts[2] if len(parts) > 2 else ""
    if typ not in SSH_KEY_TYPES:
        if any(c in typ for c in '=",'):
            raise ValueError(f"{_SSH_KEY_FORMAT}: authorized_keys options ({clip(typ, 30)}) are not accepted; "
                             "give the key alone")
        raise ValueError(f"{_SSH_KEY_FORMAT}: key type {clip(typ, 40)} is not accepted (accepted: "
                         f"{', '.join(SSH_KEY_TYPES)})")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{_SSH_KEY_FORMAT}: its base64 part does not decode") from None
    try:
        _ssh_key_data(typ, blob)
    except ValueError as e:
        raise ValueError(f"{_SSH_KEY_FORMAT}: {e}") from None
    for delimiter in TEMPLATE_DELIMITERS:
        if delimiter in comment:
            raise ValueError(f"{_SSH_KEY_FORMAT}: its comment holds the template delimiter {delimiter!r}")
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
#: Free text of one line (the shared rule only): what a field holds when no narrower kind fits.
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True), BeforeValidator(_plain_before)]
PlainText = Annotated[str, AfterValidator(plain_text)]
Description = Annotated[str, AfterValidator(_description)]
CloudName = Annotated[str, AfterValidator(CLOUD_NAME)]
Region = Annotated[str, AfterValidator(REGION)]
AvailabilityZone = Annotated[str, AfterValidator(AVAILABILITY_ZONE)]
OpenStackName = Annotated[str, AfterValidator(OPENSTACK_NAME)]
FlavorName = Annotated[str, AfterValidator(FLAVOR_NAME)]
ExtraSpecKey = Annotated[str, AfterValidator(EXTRA_SPEC_KEY)]
MigProfile = Annotated[str, AfterValidator(MIG_PROFILE)]
AcceleratorKind = Annotated[str, AfterValidator(ACCELERATOR_KIND)]
AbsolutePath = Annotated[str, AfterValidator(ABSOLUTE_PATH)]
SiteRef = Annotated[str, AfterValidator(SITE_REF)]
ImageRef = Annotated[str, AfterValidator(IMAGE_REF)]
Email = Annotated[str, AfterValidator(EMAIL)]
Bucket = Annotated[str, AfterValidator(BUCKET)]
OidcClaim = Annotated[str, AfterValidator(OIDC_CLAIM)]
ClientId = Annotated[str, AfterValidator(CLIENT_ID)]
Scope = Annotated[str, AfterValidator(SCOPE)]
StsRole = Annotated[str, AfterValidator(STS_ROLE)]
OnCalendar = Annotated[str, AfterValidator(ON_CALENDAR)]
NtpServer = Annotated[str, AfterValidator(_ntp_server)]
SshPublicKey = Annotated[str, AfterValidator(ssh_public_key)]
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
    cloud: CloudName = Field(description="entry in clouds.yaml used by preflight, inventory and pulumi")
    region: Region = "RegionOne"
    availability_zone: AvailabilityZone = "nova"
    image: OpenStackName = Field(description="Glance image name for every node")
    external_network: OpenStackName = Field(description="Neutron external network for router and FIPs")
    domain: Hostname = Field(description="DNS domain under which the platform's services are published")
    dns_nameservers: list[IPv4Addr] = Field(default_factory=list)
    ntp_servers: list[NtpServer] = Field(default_factory=list, description="hostnames or IP addresses")
    manage_flavors: bool = Field(False, description="true: create flavors; false: use existing ones by name")
    volume_type: OpenStackName | None = Field(None, description="default Cinder volume type")
    ssh_public_key: SshPublicKey | None = Field(
        None, description="OpenSSH public key of the operators: the admin keypair and the `aiinfn` account Ansible "
        "logs in with (required: without it no one can reach the nodes)")
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
    existing_network: OpenStackName | None = Field(None, description="reuse this Neutron network by name")
    ssh_allow: list[IPv4Net] = Field(
        default_factory=list, description="CIDRs allowed to SSH to the bastion: each at most a /8 wide, together at "
        "most a /8's addresses, none of the cluster's own networks")
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
    extra_specs: dict[ExtraSpecKey, PlainText] = Field(default_factory=dict)

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
    #: Grafana and the accounting reports, on a VM outside the cluster (survives it).
    MONITORING = "monitoring"


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
    volume_type: OpenStackName | None = None
    mount_path: AbsolutePath


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


MigLayout = Annotated[list[MigProfile], BeforeValidator(_mig_layout)]


class NodePool(Model):
    role: Role
    flavor: FlavorName
    count: int | None = Field(None, ge=0, le=999, description="nodes named <name_prefix>-NN")
    nodes: list[DnsLabel] | None = Field(None, description="explicit node names (instead of count)")
    name_prefix: DnsLabel | None = None
    accelerators: PoolAccelerators | None = None
    mig: MigLayout | None = Field(None, description="MIG layout applied to every GPU of every node")
    boot_volume_gb: PositiveInt | None = None
    volume_type: OpenStackName | None = None
    data_volumes: list[DataVolume] = Field(default_factory=list)
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="node labels (never the platform's own keys, nor kubernetes.io/k8s.io keys "
        "the kubelet may not set on itself)")
    taints: list[Taint] = Field(default_factory=list, description="node taints (never the platform's own keys)")
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
    export_path: AbsolutePath = "/export/platform"
    size_gb: PositiveInt
    volume_type: OpenStackName | None = None
    storage_class: DnsLabel = "platform-nfs"


class S3NodeMount(Model):
    name: DnsLabel = Field(description="unit name suffix: sts-wire@<name>.service")
    bucket: DnsLabel = Field(description="bucket mounted on the nodes (a shared dataset, not a user's bucket)")
    mount_path: AbsolutePath = Field(description="mount point on the node")
    pools: list[DnsLabel] = Field(min_length=1, description="node pools whose nodes mount it")


class S3Storage(Model):
    endpoint: HttpsUrl
    region: Region = "us-east-1"
    user_bucket_prefix: DnsLabel | None = Field(
        None, description="a user's bucket is <prefix>-<username>, or just <username> without a prefix"
    )
    mount_path: AbsolutePath = "/s3"
    sts_role: StsRole | None = Field(
        None, description="STS role to assume (RadosGW, e.g. IAMaccess); unset for MinIO"
    )
    client_id: ClientId | None = Field(None, description="IAM client sts-wire uses to refresh tokens")
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
    volume_type: OpenStackName | None = None
    schedule: OnCalendar = "*-*-* 02:30:00"
    check_schedule: OnCalendar = "Sun *-*-* 05:00:00"
    retention: Retention = Retention()
    passphrase_secret: SecretRef
    max_age_hours: PositiveInt = Field(26, description="alert when the last good backup is older")


class BlockStorage(Model):
    """Cinder block volumes for the small stateful claims (the hub's database, Harbor's, Prometheus'), through
    the OpenStack Cinder CSI driver, with an application credential the infrastructure stack creates."""

    auth_url: HttpsUrl | None = Field(
        None, description="Keystone v3 URL the cluster's nodes reach (the CSI driver's auth-url); unset: the public "
        "identity endpoint of site.region in the project's own Keystone catalog, read at deploy time (set it when "
        "the nodes reach Keystone at another address)")
    volume_type: OpenStackName | None = Field(None, description="Cinder volume type (default: site.volume_type)")
    availability_zone: AvailabilityZone | None = Field(
        None, description="Cinder availability zone of the volumes (default: site.availability_zone)")
    storage_class: DnsLabel = "platform-block"
    credential_roles: list[OpenStackName] = Field(
        default_factory=lambda: ["member"], min_length=1, max_length=4,
        description="Keystone roles of the CSI driver's application credential: only what creating, attaching "
        "and deleting volumes needs (`member` on clouds with Keystone's default roles)")
    credential_expires_at: dt.date | None = Field(
        None, description="expiry date of that credential (UTC midnight); changing it replaces the credential "
        "(docs/operations.md); unset: no expiry")

    @field_validator("credential_roles")
    @classmethod
    def _no_admin(cls, roles: list[str]) -> list[str]:
        if any(r.lower() == "admin" for r in roles):
            raise ValueError("`admin` would let the CSI driver's credential administer the whole cloud: give it "
                             "the project role that manages volumes (`member`)")
        if len(set(roles)) != len(roles):
            raise ValueError("a role is listed twice")
        return roles


class Storage(Model):
    nfs: NfsStorage | None = None
    block: BlockStorage | None = Field(
        None, description="Cinder block storage for databases; unset: they stay on the NFS class (docs/security.md)")
    s3: S3Storage | None = None
    juicefs: JuiceFsStorage | None = None
    backup: BackupStorage | None = None


# --------------------------------------------------------------------------- identity and projects


class Iam(Model):
    issuer: HttpsUrl
    client_id: ClientId
    client_secret: SecretRef
    username_claim: OidcClaim = "preferred_username"
    groups_claim: OidcClaim = "groups"
    scopes: list[Scope] = Field(
        default_factory=lambda: ["openid", "profile", "email", "groups", "offline_access"],
        description="scopes the hub asks IAM for; offline_access (a refresh token) is always added",
    )
    user_groups: list[IamGroup] = Field(min_length=1, description="groups whose members may log in")
    admin_groups: list[IamGroup] = Field(min_length=1, description="groups whose members are admins")


class Project(Model):
    iam_group: IamGroup
    namespace: DnsLabel | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    shares: dict[AcceleratorKind, Share] = Field(
        default_factory=dict,
        description="fraction of each accelerator kind (MODEL or MODEL/PROFILE) the project is guaranteed",
    )
    borrowing: bool = Field(True, description="may borrow idle quota from the cohort")


# --------------------------------------------------------------------------- services


#: A pip requirement without a direct reference (no URL, path or option): ``torch==2.5.1``, ``numpy>=2``,
#: ``dask[distributed]~=2024.1``.
REQUIREMENT = TextKind(
    "a pip requirement", rf"{_ALNUM}._\[\],<>=!~*+ -",
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
    r"( *(==|>=|<=|~=|!=|<|>) *[A-Za-z0-9.*+!_-]+( *, *(==|>=|<=|~=|!=|<|>) *[A-Za-z0-9.*+!_-]+)*)?",
    limit=200, hint="a package name with an optional version, such as torch==2.5.1 (no URL or path)")
Requirement = Annotated[str, AfterValidator(REQUIREMENT)]
#: A lock file under environments/locks/ (a pip requirements file, one pinned requirement a line).
LOCK_FILE = TextKind("a lock file name", f"{_ALNUM}._-", r"[A-Za-z0-9][A-Za-z0-9._-]*\.txt", limit=128,
                     hint="the name of a requirements file under environments/locks/, such as torch-2026.txt")
LockFile = Annotated[str, AfterValidator(LOCK_FILE)]


class ManagedEnvironment(Model):
    """A Python environment built once onto the platform filesystem (``/envs/<name>``), read-only for
    users, a kernel in every notebook, cloneable into a home (``aiinfn-env clone <name>``)."""

    description: Description = ""
    packages: list[Requirement] = Field(default_factory=list, description="pip requirements (pin them)")
    lock_file: LockFile | None = Field(None, description="or a requirements lock file under environments/locks/")
    maintainers: IamGroup = Field(description="the IAM group that may build and update it")

    @model_validator(mode="after")
    def _one_source(self) -> ManagedEnvironment:
        if bool(self.packages) == (self.lock_file is not None):
            raise ValueError("give either packages or lock_file (exactly one)")
        return self


class SizeLimits(Model):
    """The largest notebook a user may ask for (they choose CPU, memory and /dev/shm up to these)."""

    max_cpu: int = Field(8, ge=1, le=256, description="CPU cores")
    max_memory_gb: int = Field(32, ge=2, le=4096, description="memory (GiB)")
    max_shm_gb: int = Field(8, ge=1, le=1024, description="/dev/shm, a memory-backed emptyDir (counts as memory)")


class Sizing(Model):
    default: SizeLimits = SizeLimits()
    groups: dict[IamGroup, SizeLimits] = Field(
        default_factory=dict, description="larger limits for IAM groups (a user gets the largest of theirs)"
    )


class CustomImages(Model):
    """Groups that may start an image of their own from the platform's registry (Harbor)."""

    groups: list[IamGroup] = Field(default_factory=list, description="IAM groups allowed a custom image")
    projects: list[DnsLabel] = Field(
        default_factory=lambda: ["environments"], description="Harbor projects those images must come from"
    )


#: A Debian package of a team image, optionally pinned: ``graphviz``, ``libhdf5-dev=1.10.8+repack1-1``.
DEB_PACKAGE = TextKind("a Debian package", f"{_ALNUM}.+:=~-", r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?",
                       limit=128, hint="a Debian package name with an optional =version, such as graphviz")
DebPackage = Annotated[str, AfterValidator(DEB_PACKAGE)]
#: One word of a web app's command (an argv element, never a shell line): no quotes, braces, '$', ';',
#: '|', '&', '<', '>', backslash or space.
COMMAND_WORD = TextKind("a command word", f"{_ALNUM}_./:=,@%+-", r"[A-Za-z0-9_./:=,@%+-]+", limit=200,
                        hint="letters, digits and _./:=,@%+- only: the command is an argument list, run without "
                        "a shell, and the port is the app's own `port`")
CommandWord = Annotated[str, AfterValidator(COMMAND_WORD)]
LAUNCHER_TITLE = TextKind("a launcher title", f"{_ALNUM} ._()-", r"[A-Za-z0-9][A-Za-z0-9 ._()-]*", limit=40,
                          hint="letters, digits, spaces and ._()-")
LauncherTitle = Annotated[str, AfterValidator(LAUNCHER_TITLE)]


class WebApp(Model):
    """A web app a team image starts on demand behind Jupyter Server Proxy (``/user/<name>/<app>/``)."""

    command: list[CommandWord] = Field(min_length=1, description="the app's command, as an argument list "
                                       "(run without a shell); it must listen on 127.0.0.1:`port`")
    port: int = Field(ge=1024, le=65535, description="the port the app listens on")
    title: LauncherTitle = Field(description="the title of its launcher tile in JupyterLab")

    @model_validator(mode="after")
    def _program(self) -> WebApp:
        if self.command[0].startswith("-"):
            raise ValueError(f"command: {self.command[0]!r} is an option, not a program: name the program first")
        return self


#: Paths the Jupyter server (and JupyterLab, Jupyter Server Proxy) serve themselves: an app there is unreachable.
RESERVED_APP_NAMES = frozenset({"api", "files", "view", "edit", "lab", "tree", "notebooks", "static", "custom",
                                "kernelspecs", "nbconvert", "terminals", "login", "logout", "proxy", "server-proxy",
                                "doc", "voila", "metrics", "hub", "user", "services"})


class TeamImage(Model):
    """The platform's managed notebook image extended for a team: built by the overlay's build Job into
    Harbor's ``environments`` project, offered in the spawn form only to the team's groups."""

    description: Description = ""
    groups: list[IamGroup] = Field(min_length=1, description="IAM groups that see the image in the spawn form")
    pip: list[Requirement] = Field(default_factory=list, description="pip packages added (pin them)")
    apt: list[DebPackage] = Field(default_factory=list, description="Debian packages added")
    apps: dict[DnsLabel, WebApp] = Field(default_factory=dict, description="web apps behind Jupyter Server Proxy")

    @model_validator(mode="after")
    def _ports(self) -> TeamImage:
        seen: dict[int, str] = {}
        for name, app in self.apps.items():
            if name in RESERVED_APP_NAMES:
                raise ValueError(f"apps.{name}: /{name}/ is the notebook server's own path: name the app otherwise")
            if app.port in seen:
                raise ValueError(f"apps.{name}.port: {app.port} is also apps.{seen[app.port]}'s port")
            seen[app.port] = name
        return self


class JupyterHub(Model):
    hostname: Hostname | None = None
    cull_idle_seconds: int = Field(3600, ge=300)
    default_image: ImageRef
    images: dict[DnsLabel, ImageRef] = Field(default_factory=dict, description="notebook images to choose from")
    home_size_gb: PositiveInt = 50
    user_placeholders: int = Field(0, ge=0, le=1000)
    prepull: bool = True
    tmp_size_gb: int = Field(20, ge=1, le=2000, description="size limit of each notebook's /tmp (an emptyDir)")
    environments: dict[DnsLabel, ManagedEnvironment] = Field(
        default_factory=dict, description="managed Python environments on the platform filesystem (kernels)"
    )
    sizing: Sizing = Sizing()
    custom_images: CustomImages = CustomImages()
    queue_timeout_minutes: int = Field(
        240, ge=5, le=10080, description="how long a spawn that chose to wait in the queue may wait"
    )
    team_images: dict[DnsLabel, TeamImage] = Field(
        default_factory=dict, description="the managed notebook image extended per team (packages, web apps), "
        "built into Harbor's environments project (needs services.harbor)"
    )
    max_session_hours: int = Field(
        0, ge=0, le=8760, description="notebook sessions are stopped this long after they start, in use or not "
        "(the culler's maxAge; 0: never): it bounds the expected wait the spawn form shows for a full kind"
    )


class Harbor(Model):
    hostname: Hostname | None = None
    s3_bucket: Bucket | None = None
    s3_access_key_secret: SecretRef | None = None
    s3_secret_key_secret: SecretRef | None = None
    admin_password_secret: SecretRef
    database_size_gb: PositiveInt = 10


class Grafana(Model):
    """Grafana on the site's `monitoring` node (a VM outside the cluster), logging in through IAM."""

    hostname: Hostname | None = Field(None, description="Grafana's public name (default grafana.<site.domain>)")
    client_id: ClientId = Field(description="IAM client of Grafana's login (generic OAuth, groups claim)")
    client_secret: SecretRef = Field(description="its secret (name of a Pulumi config secret)")
    allow: list[IPv4Net] = Field(
        default_factory=list, description="CIDRs that reach Grafana's HTTPS: the networks operators and project "
        "coordinators work from (each at most a /8 wide, together at most a /8's addresses)")


class Monitoring(Model):
    accounting_retention_days: int = Field(
        400, ge=400, le=3650, description="days Prometheus keeps its data, accounting series included"
    )
    storage_gb: PositiveInt = Field(200, description="Prometheus volume; the TSDB is capped at 90 % of it")
    prometheus_hostname: Hostname | None = Field(
        None, description="public name of Prometheus' HTTPS API (TLS, basic auth) for Grafana and `aiinfn "
        "accounting` (default prometheus.<site.domain>)")
    grafana: Grafana | None = Field(None, description="Grafana on the site's `monitoring` node")


class Tls(Model):
    acme_email: Email | None = Field(
        None, description="contact for the ACME account; without it certificates are self-signed"
    )
    acme_server: HttpsUrl = Field(
        "https://acme-v02.api.letsencrypt.org/directory", description="ACME directory (Let's Encrypt by default)"
    )


class BatchService(Model):
    """The batch service (aiinfn.batch): users turn a notebook session into a queued Kueue Job."""

    max_jobs_per_user: int = Field(4, ge=1, le=1000, description="jobs a user may have queued or running at once")
    max_cpu: int = Field(32, ge=1, le=4096, description="CPU cores one job may request")
    max_memory_gb: int = Field(256, ge=1, le=65536, description="memory one job may request")
    max_accelerators: int = Field(4, ge=1, le=64, description="accelerator units one job may request")
    max_time_hours: int = Field(72, ge=1, le=2160, description="longest time limit (--time) a job may ask for")
    finished_ttl_hours: int = Field(
        168, ge=1, le=8760, description="finished jobs (and their logs) are deleted this long after they end"
    )


class Services(Model):
    jupyterhub: JupyterHub | None = None
    batch: BatchService | None = None
    harbor: Harbor | None = None
    monitoring: Monitoring = Monitoring()
    tls: Tls = Tls()


def _artifact_source(v: str) -> str:
    plain_text(v, MAX_URL)
    if v.startswith("https://"):
        return _https_url(v).rstrip("/")
    if v.startswith("/"):
        return ABSOLUTE_PATH(v.rstrip("/") or "/")
    raise ValueError(f"{clip(v)} is neither an https:// URL nor an absolute directory path (plain http is refused: "
                     "anyone on the way could change the artifacts)")


class AdminUser(Model):
    name: DnsLabel = Field(description="login name created on every node")
    ssh_keys: list[SshPublicKey] = Field(
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
    keep_bootstrap_account: bool = Field(
        False,
        description="keep the shared bootstrap account (`aiinfn`: site.ssh_public_key and passwordless sudo) on "
        "every node on purpose, as the only way in, when no admin user has sudo (a test or short-lived site); "
        "without it a site must list at least one admin user with sudo, and the account is retired",
    )
    reboot: bool = Field(
        False, description="let the NVIDIA driver role reboot a node when the driver needs it (else it is reported)"
    )


class Kubernetes(Model):
    mig_strategy: Literal["single", "mixed"] = "single"
    tls_sans: list[Hostname] = Field(default_factory=list)
    cluster_domain: Hostname = "cluster.local"


# --------------------------------------------------------------------------- events

#: Longest event name: its namespaces (``event-<name>``, ``event-<name>-hold`` ...) are DNS labels.
MAX_EVENT_NAME = 63 - len("event-") - len("-archive")
#: Most people (participants and tutors) one event may have; beyond this it is a conference, not a hands-on.
MAX_EVENT_PEOPLE = 500
#: A git branch or tag name (git check-ref-format's rules, narrowed to what a URL query carries plainly).
GIT_REF = TextKind("a git branch name", f"{_ALNUM}._/-", rf"[{_ALNUM}_](?:[{_ALNUM}._/-]*[{_ALNUM}_])?", limit=128,
                   hint="letters, digits and ._/-, no '..'")
#: A path inside a repository or under an export: relative, no '..', no spaces.
RELATIVE_PATH = TextKind("a relative path", f"{_ALNUM}._/+@=,-", r"(?!/)((?!\.{1,2}(/|$))[A-Za-z0-9._+@=,-]+/?)+",
                         hint="relative, made of letters, digits and ._+@=,- with no '.' or '..' part")
#: A roster file named by an event: a CSV file beside the event file (or below it).
ROSTER_PATH = TextKind("a roster file name", f"{_ALNUM}._/-", rf"[{_ALNUM}_][{_ALNUM}._/-]*\.csv",
                       hint="a .csv file beside the event file, such as hackathon-roster.csv")


def _git_ref(v: str) -> str:
    GIT_REF(v)
    if ".." in v or "//" in v or v.endswith((".lock", "/")) or "/." in v:
        raise ValueError(f"{clip(v)} is not a git branch name ('..', '//', '/.' and a trailing '.lock' are refused)")
    return v


def _roster_path(v: str) -> str:
    ROSTER_PATH(v)
    if any(part in ("", ".", "..") for part in v.split("/")):
        raise ValueError(f"{clip(v)} is not a roster file name: no '.' or '..' parts, relative to the event file")
    return v


GitRef = Annotated[str, AfterValidator(_git_ref)]
RelativePath = Annotated[str, AfterValidator(RELATIVE_PATH)]
RosterPath = Annotated[str, AfterValidator(_roster_path)]


class ParticipantShare(Model):
    cpu: float = Field(2.0, gt=0, le=4096, allow_inf_nan=False)
    memory_gb: float = Field(8.0, gt=0, le=65536, allow_inf_nan=False)
    accelerators: list[AcceleratorKind] = Field(
        default_factory=list, max_length=16,
        description="kinds a participant may get one of (MODEL or MODEL/PROFILE), in order of preference",
    )
    shm_gb: int | None = Field(
        None, ge=1, le=1024, description="/dev/shm of each notebook (GiB, memory-backed: it counts as memory, so at "
        "most memory_gb); unset: the site's sizing default (max_shm_gb), at most half of memory_gb, at least 1",
    )

    @model_validator(mode="after")
    def _shm_within_memory(self) -> ParticipantShare:
        if self.shm_gb is not None and self.shm_gb > self.memory_gb:
            raise ValueError(f"shm_gb: {self.shm_gb} GiB of /dev/shm cannot exceed memory_gb ({self.memory_gb:g}): "
                             "it is memory")
        return self


class EventReserve(Model):
    """A site's policy for events (site environment, ``event_reserve``): what it sets aside for them.

    The site's stack registers it as the Kueue Cohort ``aiinfn-events`` (a child of the site's cohort)
    holding these quotas, taken out of the interactive queue's shared pool; while no event uses them
    they are lent to the rest of the cohort. An event's stack never changes it: its ClusterQueue joins
    that cohort with no quota of its own and borrows at most its allocation (docs/architecture.md, Events).
    """

    accelerators: dict[AcceleratorKind, Share] = Field(
        default_factory=dict, description="share of each kind's shared pool (the units no project is guaranteed) set "
        "aside for events: floor(share x shared units), so it follows the site's capacity"
    )
    cpu: int = Field(0, ge=0, le=1000000, description="CPU cores set aside for events' notebooks")
    memory_gb: int = Field(0, ge=0, le=100000000, description="memory (GiB) set aside for events' notebooks")


class EventMaterials(Model):
    """A git repository of the event's materials: opened with an nbgitpuller link in the handout, and
    copied by the hub into each participant's home (exercises at start, solutions once released)."""

    repository: HttpsUrl = Field(description="https URL of the git repository")
    branch: GitRef = Field("main", description="branch the participants' copies follow")
    open: RelativePath | None = Field(
        None, description="file or folder the handout's link opens, relative to the repository's root"
    )
    exercises: RelativePath = Field("exercises", description="folder of the repository copied to every participant")
    solutions: RelativePath = Field("solutions", description="folder copied once the solutions are released")
    solutions_at: dt.datetime | None = Field(
        None, description="when the solutions are released (UTC); `aiinfn event materials release` does it at once"
    )


class Teardown(Model):
    """What ``aiinfn event down`` does with participants' work before the event's namespace goes."""

    to: Literal["nfs", "s3", "delete"] = Field(
        "nfs", description="`nfs`: copy every participant's home to a kept claim of the site's platform NFS; `s3`: "
        "to a bucket at the site's S3 endpoint (storage.s3.endpoint); `delete`: copy nothing"
    )
    directory: RelativePath = Field("archive", description="nfs: folder of the archive claim the copies land in")
    bucket: Bucket | None = Field(None, description="s3: the bucket, at each site's S3 endpoint")
    prefix: RelativePath = Field("events", description="s3: key prefix; objects land under <prefix>/<event>/<site>/")
    access_key_secret: SecretRef | None = Field(None, description="s3: Pulumi config secret holding the access key "
                                                "(default event-archive-access-key)")
    secret_key_secret: SecretRef | None = Field(None, description="s3: Pulumi config secret holding the secret key "
                                                "(default event-archive-secret-key)")

    @model_validator(mode="before")
    @classmethod
    def _s3_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("to") == "s3":
            return {"access_key_secret": "event-archive-access-key", "secret_key_secret": "event-archive-secret-key",
                    **data}
        return data

    @model_validator(mode="after")
    def _fields_of_its_mode(self) -> Teardown:
        if self.to == "s3" and self.bucket is None:
            raise ValueError("teardown to s3 needs a bucket")
        if self.to != "s3" and (self.bucket or self.access_key_secret or self.secret_key_secret):
            raise ValueError(f"bucket and the S3 keys are for `to: s3`, not `to: {self.to}`")
        return self


class RosterEntry(Model):
    """One row of an event's roster (``username,site,role``): filled from the CSV by the loader."""

    username: str
    site: str | None = None
    role: Literal["participant", "tutor"] = "participant"
    #: line of the CSV file (the header is line 1)
    line: int = 0


# --------------------------------------------------------------------------- offloading


class OidcOffloadAuth(Model):
    """The virtual kubelet sends IAM access tokens of its own client (refresh grant at the platform's IAM).

    The target's edge checks them (interLink's oauth2-proxy in front of its API).
    """

    type: Literal["oidc"]
    client_id: ClientId = Field(description="IAM client of the site's virtual kubelets")
    client_secret: SecretRef = Field(description="its secret (name of a Pulumi config secret)")
    refresh_token_secret: SecretRef = Field(description="its refresh token (name of a Pulumi config secret)")
    audience: ClientId | None = Field(None, description="audience the edge expects in the token")


class MtlsOffloadAuth(Model):
    """The virtual kubelet presents a client certificate to the target's interLink API."""

    type: Literal["mtls"]
    cert_secret: SecretRef = Field(description="PEM client certificate (name of a Pulumi config secret)")
    key_secret: SecretRef = Field(description="PEM private key (name of a Pulumi config secret)")
    ca_secret: SecretRef = Field(description="PEM CA of the edge's certificate (name of a Pulumi config secret)")


class OffloadLimits(Model):
    max_wall_time_hours: int = Field(24, ge=1, le=2160, description="longest job the target runs")
    max_cpu: int | None = Field(None, ge=1, le=100000, description="CPU cores one job may request")
    max_memory_gb: int | None = Field(None, ge=1, le=1000000, description="memory one job may request")


class OffloadTarget(Model):
    """A remote batch system reached through interLink: a virtual node on the cluster."""

    kind: Literal["slurm", "htcondor", "kueue"] = Field(description="what runs the jobs behind the interLink API")
    endpoint: HttpsUrl = Field(description="the interLink API of the target's edge node (https://host[:port])")
    auth: Annotated[OidcOffloadAuth | MtlsOffloadAuth, Field(discriminator="type")]
    description: Description = ""
    cpu: int = Field(ge=1, le=10000000, description="CPU cores the platform may use there at once")
    memory_gb: int = Field(ge=1, le=100000000, description="memory the platform may use there at once")
    pods: int = Field(100, ge=1, le=100000, description="jobs the platform may have there at once")
    accelerators: dict[AcceleratorName, Annotated[int, Field(ge=1, le=100000)]] = Field(
        default_factory=dict, description="accelerators the platform may use there at once, by model"
    )
    limits: OffloadLimits = OffloadLimits()


class Offload(Model):
    targets: dict[DnsLabel, OffloadTarget] = Field(
        default_factory=dict, description="remote batch systems jobs may be offloaded to (one virtual node each)"
    )


# --------------------------------------------------------------------------- the environment


class Environment(Model):
    """A site: its OpenStack project, the cluster on it and the services the cluster runs."""

    kind: Literal["site"] = Field("site", description="what the file describes: a site (the default)")
    name: DnsLabel
    description: Description = ""
    site: Site
    network: Network
    kubernetes: Kubernetes = Kubernetes()
    bootstrap: Bootstrap = Bootstrap()
    flavors: dict[FlavorName, Flavor] = Field(default_factory=dict)
    node_pools: dict[DnsLabel, NodePool] = Field(min_length=1)
    storage: Storage = Storage()
    iam: Iam
    projects: dict[DnsLabel, Project] = Field(default_factory=dict)
    services: Services = Services()
    offload: Offload = Offload()
    event_reserve: EventReserve = EventReserve()

    def pci_aliases(self, flavor: str) -> dict[str, int]:
        """Nova PCI alias -> device count that flavor ``flavor`` passes through (the site's aliases)."""
        return {self.site.alias_for(m): c for m, c in self.flavors[flavor].accelerators.items()}


# --------------------------------------------------------------------------- events and federations


class Event(Model):
    """A hackathon or school: participants of an IAM group on the sites it draws on, for a window.

    An event holds only the event: it names its sites and can change nothing of them (their stacks,
    security settings and queues stay theirs). Its stack per site registers only the event's objects.
    Who comes is a count (``participants``, plus ``tutors``) or a roster CSV (``roster``: IAM usernames,
    an optional site each must be served at, an optional role). Each person gets one seat: the CPU and
    memory of ``per_participant`` and one unit of one of its accelerator kinds, allocated across the sites
    by ``aiinfn.planning.events`` (tutors first: they need one to help).
    """

    kind: Literal["event"] = Field(description="`event`: this file describes an event, not a site")
    name: DnsLabel = Field(description="the event's name; its namespace at each site is event-<name>")
    description: Description = ""
    sites: list[SiteRef] = Field(
        min_length=1, description="site environments the event runs on (names under environments/, or paths)"
    )
    participants: int | None = Field(
        None, ge=1, le=MAX_EVENT_PEOPLE, description="how many participants come (or give a roster instead)"
    )
    roster: RosterPath | None = Field(
        None, description="CSV beside the event file with a header: username (IAM), and optionally site (where "
        "that person must be served) and role (participant or tutor)"
    )
    tutors: int = Field(0, ge=0, le=MAX_EVENT_PEOPLE, description="how many tutors need a seat (without a roster)")
    iam_group: IamGroup = Field(description="the participants' IAM group")
    tutors_group: IamGroup | None = Field(None, description="the tutors' IAM group (admins of the event)")
    starts: dt.date
    ends: dt.date
    image: ImageRef = Field(description="the one image participants run, the same at every site")
    per_participant: ParticipantShare = ParticipantShare()
    materials: EventMaterials | None = Field(None, description="git repository opened for each participant")
    placeholders: int | None = Field(
        None, ge=0, le=1000, description="warm seats held before participants arrive (default: every seat)"
    )
    prepull: bool = Field(True, description="pull the image on every node of the kinds the event uses at `up`")
    may_take_guarantees: bool = Field(
        False, description="may also take what projects are guaranteed (when idle at the start, held for the "
        "window); default: only the sites' event reserves"
    )
    teardown: Teardown = Field(Teardown(), description="what `aiinfn event down` does with participants' work first")

    @model_validator(mode="after")
    def _dates(self) -> Event:
        if self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self

    @model_validator(mode="after")
    def _who(self) -> Event:
        if len(self.name) > MAX_EVENT_NAME:
            raise ValueError(f"name {self.name!r} is longer than {MAX_EVENT_NAME} characters: its namespaces "
                             f"(event-{self.name}-archive ...) must stay DNS labels")
        if (self.participants is None) == (self.roster is None):
            raise ValueError("give participants (a count) or roster (a CSV of IAM usernames), not both"
                             if self.roster else "participants is missing: give a count, or a roster CSV")
        if self.roster is not None and self.tutors:
            raise ValueError("tutors is for counts: with a roster, tutors are its rows with role tutor")
        if self.tutors and self.tutors_group is None:
            raise ValueError("tutors need tutors_group (the IAM group that gives them the event's tutor role)")
        return self

    #: the member sites, loaded and validated (set by the loader)
    _sites: dict[str, Environment] = PrivateAttr(default_factory=dict)
    #: the roster's rows, read and checked with the event (validate_event)
    _roster: tuple[RosterEntry, ...] = PrivateAttr(default=())
    #: the file the event was read from (set by the loader; rosters are found beside it)
    _file: str | None = PrivateAttr(default=None)

    @property
    def namespace(self) -> str:
        return f"event-{self.name}"

    def site_environments(self) -> dict[str, Environment]:
        """Site name -> its validated environment, in the order the file lists them."""
        return dict(self._sites)

    def people(self) -> tuple[RosterEntry, ...]:
        """Everyone who needs a seat, tutors first: the roster's rows, or numbered seats for a count
        (``tutor-01``, ``participant-001``: names for the handout, not IAM usernames)."""
        if self.roster is not None:
            rows = self._roster
            return (*(r for r in rows if r.role == "tutor"), *(r for r in rows if r.role == "participant"))
        width, twidth = len(str(self.participants or 0)), len(str(self.tutors))
        return (
            *(RosterEntry(username=f"tutor-{i:0{twidth}d}", role="tutor") for i in range(1, self.tutors + 1)),
            *(RosterEntry(username=f"participant-{i:0{width}d}") for i in range(1, (self.participants or 0) + 1)),
        )

    @property
    def named(self) -> bool:
        """People are IAM usernames (a roster), not numbered seats."""
        return self.roster is not None


class FederatedQueue(Model):
    """A batch queue of the federation: submitted at the manager, run at whichever worker admits it."""

    projects: list[DnsLabel] = Field(
        min_length=1, description="projects whose namespaces get the queue (each must exist at every site)")


class FederationRegistry(Model):
    """Synchronized software environments: Harbor replication from the primary site's Harbor."""

    primary: SiteRef = Field(description="the member site whose Harbor holds the images and Apptainer files")
    replicas: list[SiteRef] = Field(
        default_factory=list, description="member sites whose Harbor receives every push (each must run Harbor)")
    projects: list[DnsLabel] = Field(
        default_factory=lambda: ["environments", "apptainer"],
        description="Harbor projects replicated (the private projects the bootstrap job creates)")
    robot_secret: SecretRef = Field(
        "harbor-replication-robot", description="Pulumi config secret of the federation stack: the password of "
        "the replicas' robot account the primary pushes with (`<name>:<password>`)")


class SharedVolume(Model):
    """One JuiceFS file system mounted at every site (metadata engine reachable from all of them)."""

    name: DnsLabel = Field(description="the JuiceFS file system's name (as formatted)")
    bucket: HttpsUrl = Field(description="its S3 bucket")
    metadata_url_secret: SecretRef = Field(description="Pulumi config secret of the federation stack: the "
                                           "metadata engine's URL with its credentials")
    access_key_secret: SecretRef
    secret_key_secret: SecretRef
    size_gb: PositiveInt = Field(1000, description="capacity each project's claim declares")


class Federation(Model):
    """Sites run as one platform: one IAM, the same environments, batch work where capacity is free."""

    kind: Literal["federation"] = Field(description="`federation`: this file ties sites together")
    name: DnsLabel
    description: Description = ""
    sites: list[SiteRef] = Field(min_length=2, description="member site environments")
    manager: SiteRef = Field(description="the member site that dispatches federated batch work")
    workers: list[SiteRef] | None = Field(
        None, description="member sites that run federated batch work (default: every site but the manager)")
    api_servers: dict[SiteRef, HttpsUrl] = Field(
        default_factory=dict, description="each worker's Kubernetes API as the manager reaches it "
        "(https://<name or address>:6443; never loopback; the name among the site's kubernetes.tls_sans)")
    manager_egress: list[IPv4Net] = Field(
        default_factory=list, description="the networks the manager's nodes reach the other sites from (its "
        "router's external address, or its site's public range): each worker's API port admits MultiKueue from "
        "them, and from nowhere else outside the worker's cluster and bastion")
    queues: dict[DnsLabel, FederatedQueue] = Field(
        default_factory=dict, description="federated batch queues (LocalQueue name in each project namespace)")
    registry: FederationRegistry | None = None
    volume: SharedVolume | None = None

    _sites: dict[str, Environment] = PrivateAttr(default_factory=dict)

    def site_environments(self) -> dict[str, Environment]:
        """Site name -> its validated environment, in the order the file lists them."""
        return dict(self._sites)

    def worker_sites(self) -> list[str]:
        """The sites that run federated batch work, in the file's order."""
        names = list(self._sites) or [str(s) for s in self.sites]
        return list(self.workers) if self.workers is not None else [n for n in names if n != self.manager]


#: What an environment file can describe, told apart by its `kind`.
AnyEnvironment = Environment | Event | Federation
