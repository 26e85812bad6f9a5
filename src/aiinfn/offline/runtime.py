"""Run the Pulumi program offline with Pulumi's mock runtime and record what it registers.

This is both the engine of ``aiinfn plan`` and the harness every stack test uses: no Pulumi CLI,
no cloud, no credentials. What the mock runtime cannot show (provider defaults, diffs, replacements,
auto-naming) is not claimed: the recorded facts are the program's own requests to the engine.

* Outputs of mocked resources are derived from the resource *name* (never a counter), so they are
  identical whatever order resources register in.
* URNs follow the engine's format: ``urn:pulumi:<stack>::<project>::<ancestor types$type>::<name>``
  with the root stack left out of the chain. A duplicate URN is an error, as in the engine.
* Every registration keeps its parent, options (protect, retainOnDelete, ignoreChanges,
  replaceOnChanges, deleteBeforeReplace, aliases) and dependencies.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import runpy
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from ..errors import AiinfnError, PlanError

SECRET = "[secret]"
ROOT_TYPE = "pulumi:pulumi:Stack"


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


@dataclass
class Registration:
    """One RegisterResource request, as the engine would receive it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    replace_on_changes: list[str]
    depends_on: list[str]
    aliases: list[str]
    provider: str
    #: outputs the engine keeps secret whatever the provider returns
    additional_secret_outputs: list[str] = field(default_factory=list)
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    registered_outputs: dict[str, Any] | None = None


class PlanMocks(pmocks.Mocks):
    """Mocked engine answers: IDs and outputs derived from names; invokes answered per token."""

    def __init__(
        self, node_cidr: str = "10.0.0.0/16", stack_references: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        self.node_cidr = ipaddress.IPv4Network(node_cidr)
        #: outputs of the stacks a program reads (fully qualified stack name -> outputs)
        self.stack_references = dict(stack_references or {})
        #: the stacks the program read, in order
        self.read_stacks: list[str] = []
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def fixed_ip(self, name: str) -> str:
        net = self.node_cidr
        span = max(net.num_addresses - 20, 1)
        return str(net.network_address + 10 + _digest("ip", name) % span)

    def floating_ip(self, name: str) -> str:
        return str(ipaddress.IPv4Address("192.0.2.0") + 1 + _digest("fip", name) % 250)  # TEST-NET-1

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        name, typ = args.name, args.typ
        if typ == "pulumi:pulumi:StackReference":
            target = str(args.inputs.get("name") or args.resource_id or name)
            if target not in self.stack_references:
                raise PlanError(f"the program reads stack {target!r}, which the offline plan does not know")
            with self._lock:
                self.read_stacks.append(target)
            outputs = dict(self.stack_references[target])
            secret = sorted(k for k, v in outputs.items() if is_secret(v))
            plain = {k: (v["value"] if is_secret(v) else v) for k, v in outputs.items()}
            return target, {"name": target, "outputs": plain, "secretOutputNames": secret}
        rid = f"{name}-{_digest('id', typ, name) % 16**8:08x}"
        if typ == "openstack:networking/port:Port":
            outputs["allFixedIps"] = [self.fixed_ip(name)]
        elif typ == "openstack:compute/instance:Instance":
            outputs["accessIpV4"] = self.fixed_ip(name)
        elif typ == "openstack:networking/floatingIp:FloatingIp":
            outputs["address"] = self.floating_ip(name)
        elif typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "mock-" + hashlib.sha256(name.encode()).hexdigest()[:32]
            outputs["bcryptHash"] = "$2a$10$mock" + hashlib.sha256(("bcrypt" + name).encode()).hexdigest()[:49]
        elif typ == "random:index/randomBytes:RandomBytes":
            outputs["hex"] = hashlib.sha256(("bytes" + name).encode()).hexdigest()[: 2 * int(args.inputs["length"])]
        elif typ == "tls:index/privateKey:PrivateKey":
            outputs["publicKeyOpenssh"] = f"ssh-ed25519 MOCK{_digest('key', name):016x} {name}"
            outputs["privateKeyOpenssh"] = "mock-private-key"
        return rid, outputs

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        with self._lock:
            self.invokes.append((args.token, dict(args.args)))
        tok = args.token
        a = args.args
        if tok == "openstack:identity/getAuthScope:getAuthScope":
            return auth_scope(str(a.get("name") or "scope"), str(a.get("region") or "RegionOne")), []
        if tok.startswith("openstack:") and ":get" in tok:
            key = str(a.get("name") or a.get("flavorId") or a.get("networkId") or tok)
            return {**a, "id": f"{key}-{_digest('invoke', tok, key) % 16**8:08x}"}, []
        if tok in ("kubernetes:helm:template", "kubernetes:yaml:decode"):
            return {"result": []}, []
        return {}, []


#: The Keystone address of the offline catalog: a reserved name (RFC 2606 ``.invalid``), never a real cloud's.
OFFLINE_KEYSTONE = "https://keystone.offline.invalid:5000/v3"


def auth_scope(name: str, region: str) -> dict[str, Any]:
    """What Keystone answers ``getAuthScope`` with, offline: the token's project, user and roles and a service
    catalog shaped like a real one (identity, compute, block storage and network, each with public, internal
    and admin endpoints in the asked region; the public identity endpoint is ``OFFLINE_KEYSTONE``)."""
    def hid(*parts: str) -> str:
        return f"{_digest('scope', *parts):016x}"

    services = {"identity": ("keystone", OFFLINE_KEYSTONE), "compute": ("nova", "https://nova.offline.invalid/v2.1"),
                "volumev3": ("cinderv3", "https://cinder.offline.invalid/v3"),
                "network": ("neutron", "https://neutron.offline.invalid")}
    catalogs = [{
        "id": hid(typ), "name": svc, "type": typ,
        "endpoints": [{"id": hid(typ, iface), "interface": iface, "region": region, "regionId": region,
                       "url": url if iface == "public" else url.replace(".offline.", f".{iface}.offline.")}
                      for iface in ("public", "internal", "admin")],
    } for typ, (svc, url) in services.items()]
    return {"id": name, "name": name, "region": region, "userId": hid("user"), "userName": "aiinfn-offline",
            "userDomainId": "default", "userDomainName": "Default", "projectId": hid("project"),
            "projectName": "aiinfn-offline", "projectDomainId": "default", "projectDomainName": "Default",
            "domainId": "", "domainName": "", "roles": [{"roleId": hid("member"), "roleName": "member"}],
            "serviceCatalogs": catalogs, "tokenId": ""}


class RecordingMonitor(pmocks.MockMonitor):
    """A MockMonitor that keeps every request's options and uses the engine's URN format."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        self.stack_outputs: dict[str, Any] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        if parent:
            qualified = parent.split("::")[2]
            if qualified != ROOT_TYPE:
                type_ = qualified + "$" + type_
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == ROOT_TYPE:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        with self._lock:
            if urn in self.registrations:
                self.errors.append(f"duplicate URN {urn}")
                raise PlanError(f"two resources have the same URN: {urn}")
        # As MockMonitor.RegisterResource, but deserializing the inputs once.
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        args = pmocks.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
            transforms=[],
        )
        new_id, state = self.mocks.new_resource(args)
        rid = new_id or ""
        obj = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, rid, state)
        response = resource_pb2.RegisterResourceResponse(urn=urn, id=rid, object=obj)
        reg = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            inputs=inputs,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=list(request.ignoreChanges),
            replace_on_changes=list(request.replaceOnChanges),
            depends_on=list(request.dependencies),
            aliases=[a.urn or a.spec.name for a in request.aliases] if request.aliases else list(request.aliasURNs),
            provider=request.provider,
            additional_secret_outputs=list(request.additionalSecretOutputs),
            id=rid,
            outputs=state,
        )
        with self._lock:
            self.registrations[urn] = reg
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        with self._lock:
            if request.urn.split("::")[2] == ROOT_TYPE:
                self.stack_outputs = outputs
            elif request.urn in self.registrations:
                self.registrations[request.urn].registered_outputs = outputs
        return super().RegisterResourceOutputs(request)


@dataclass
class ProgramRun:
    registrations: list[Registration]
    stack_outputs: dict[str, Any]
    invokes: list[tuple[str, dict[str, Any]]]
    mocks: PlanMocks

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def get(self, urn_suffix: str) -> Registration:
        hits = [r for r in self.registrations if r.urn.endswith(urn_suffix)]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} registrations end with {urn_suffix!r}")
        return hits[0]

    def children(self, parent_urn: str) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent_urn]


_RUN_LOCK = threading.Lock()


def run_program(
    program: Path | Callable[[], Any],
    *,
    project: str,
    stack: str,
    config: Mapping[str, Any],
    secret_keys: list[str] | None = None,
    node_cidr: str = "10.0.0.0/16",
    preview: bool = False,
    stack_references: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProgramRun:
    """Run ``program`` (a ``__main__.py`` path, or a callable) under the mock runtime.

    Every call starts from fresh runtime settings, so runs are independent and can be repeated in
    one process. Errors raised by the program come back as they are (an AiinfnError keeps its
    message); anything else becomes a PlanError naming its type.
    """
    with _RUN_LOCK:
        mocks = PlanMocks(node_cidr, stack_references)
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.reset_options(project=project, stack=stack, preview=preview)
        pulumi.runtime.set_all_config(
            {k: (v if isinstance(v, str) else str(v)) for k, v in config.items()}, secret_keys or []
        )
        pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)

        program_dir = None if callable(program) else Path(program).resolve().parent

        exported: dict[str, Any] = {}

        def body() -> pulumi.Output[Any]:
            if callable(program):
                program()
            else:
                runpy.run_path(str(program), run_name="__main__")
            # The mock root stack registers no outputs: collect `pulumi.export`s here, keeping
            # which are secret (an export that is secret is recorded wrapped, like an input).
            root = pulumi.runtime.get_root_resource()
            pending = []
            for key, value in dict(getattr(root, "outputs", {})).items():
                out = pulumi.Output.from_input(value)
                pending.append(pulumi.Output.all(out, out.is_secret()).apply(_keep(exported, key)))
            return pulumi.Output.all(*pending)

        if program_dir is not None:
            sys.path.insert(0, str(program_dir))
        try:
            pulumi.runtime.test(body)()
        except AiinfnError:
            raise
        except Exception as e:  # the program itself failed: report, do not dump a traceback
            if monitor.errors:
                raise PlanError(monitor.errors[0]) from e
            raise PlanError(f"the Pulumi program failed: {_root_cause(e)}") from e
        finally:
            # The program's own modules (stacks/infra ...) are reloaded on every run, after the
            # engine has resolved every output (it reads their type hints until the end).
            if program_dir is not None:
                sys.path.remove(str(program_dir))
                prefix = str(program_dir) + os.sep
                for mod in [m for m, v in list(sys.modules.items()) if _from_dir(v, prefix)]:
                    del sys.modules[mod]
        return ProgramRun(list(monitor.registrations.values()), exported or monitor.stack_outputs, mocks.invokes, mocks)


def _keep(store: dict[str, Any], key: str) -> Callable[[list[Any]], None]:
    """An apply callback storing an exported value, wrapped as a secret when it is one."""

    def keep(pair: list[Any]) -> None:
        value, secret = pair
        store[key] = {rpc._special_sig_key: rpc._special_secret_sig, "value": value} if secret else value

    return keep


def _root_cause(e: BaseException) -> str:
    """The most specific message in an exception chain (the engine wraps the real one twice)."""
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for exc in chain:
        text = str(exc)
        if text.startswith("While processing resource"):
            return " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return f"{type(chain[-1]).__name__}: {chain[-1]}"


def _from_dir(module: Any, directory: str) -> bool:
    f = getattr(module, "__file__", None)
    return isinstance(f, str) and f.startswith(directory)


# --------------------------------------------------------------------------- secrets


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


def redact(value: Any) -> Any:
    """``value`` with every secret replaced by ``"[secret]"`` and unknowns by ``"[unknown]"``."""
    if is_secret(value):
        return SECRET
    if isinstance(value, str) and value == rpc.UNKNOWN:
        return "[unknown]"
    if isinstance(value, Mapping):
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def unwrap(value: Any) -> Any:
    """``value`` with secrets unwrapped to their plain values (for tests that inspect them)."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    return value
