"""What makes Pulumi adopt: the bulk import file, the stack's ``aiinfn:imports``, and the program's side.

* ``import_file(adoption, report)``: the document `pulumi import --file` reads: ``resources``, each
  with ``type``, ``name`` (unique in the file), ``logicalName`` (the program's resource name), ``id``
  and ``parent`` (the ``name`` of another entry); the program's components that are parents of an
  adopted resource are entries too, with ``component: true`` and no ID, so the engine builds each
  URN from the same chain of parent types as the program does (Pulumi 3.94 and later: parents and
  components in the same file, no ``nameTable`` needed). The default OpenStack provider is used,
  as the program uses it, so no ``provider`` is named.
* ``write_stack_imports(path, imports)``: ``aiinfn:imports`` (resource name -> cloud ID) in the
  stack file, keeping its other settings and comments.
* ``register(config)``: the program's side (stacks/scopes.py): a stack transformation that gives
  each resource named in ``aiinfn:imports`` the ``import_`` option, so the next `pulumi up` adopts
  it (Pulumi refuses, without changing anything, if the live resource's inputs differ from the
  program's: the differences ``aiinfn adopt`` reports). Adopted instances also ignore
  ``schedulerHints``: Nova cannot report them and fixes them at boot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..preview import Preview
from .match import ADOPTABLE, INSTANCE, Adoption

IMPORTS_KEY = "aiinfn:imports"


def import_file(adoption: Adoption, report: Preview) -> dict[str, Any]:
    by_urn = {r.urn: r for r in report.run.registrations}
    names: dict[str, str] = {}  # URN -> its unique name in the file
    taken: set[str] = set()

    def name_of(urn: str) -> str:
        if urn not in names:
            reg = by_urn[urn]
            name = reg.name if reg.name not in taken else f"{reg.name}#{reg.type.rsplit(':', 1)[-1]}"
            taken.add(name)
            names[urn] = name
        return names[urn]

    components: list[str] = []

    def ancestors(urn: str) -> None:
        parent = by_urn[urn].parent if urn in by_urn else ""
        if parent and parent in by_urn and parent not in components:
            ancestors(parent)
            components.append(parent)

    for a in adoption.adopted:
        ancestors(a.urn)
    entries: list[dict[str, Any]] = []
    for urn in components:
        reg = by_urn[urn]
        entry: dict[str, Any] = {"type": reg.type, "name": name_of(urn), "logicalName": reg.name, "component": True}
        if reg.parent in by_urn:
            entry["parent"] = name_of(reg.parent)
        entries.append(entry)
    for a in adoption.adopted:
        entry = {"type": a.type, "name": name_of(a.urn), "logicalName": a.name, "id": a.id}
        if a.parent in by_urn:
            entry["parent"] = name_of(a.parent)
        entries.append(entry)
    return {"resources": entries}


def write_stack_imports(path: Path, imports: dict[str, str], environment: str) -> None:
    """Set ``aiinfn:imports`` in stack file ``path`` (created with ``aiinfn:environment`` if absent)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    data: Any = yaml.load(path.read_text()) if path.is_file() else None
    if data is None:
        data = {}
    config = data.setdefault("config", {})
    if config is None:
        config = data["config"] = {}
    config.setdefault("aiinfn:scope", "site")
    config.setdefault("aiinfn:environment", environment)
    if imports:
        config[IMPORTS_KEY] = dict(sorted(imports.items()))
    else:
        config.pop(IMPORTS_KEY, None)
    with path.open("w") as f:
        yaml.dump(data, f)


def import_options(imports: dict[str, str], type_: str, name: str) -> dict[str, Any] | None:
    """The options a resource gets from ``aiinfn:imports`` (None: not adopted)."""
    rid = imports.get(name)
    if rid is None or type_ not in ADOPTABLE:
        return None
    return {"import_": str(rid), "ignore_changes": ["schedulerHints"] if type_ == INSTANCE else []}


def register(config: Any) -> None:
    """In the Pulumi program: adopt every resource ``aiinfn:imports`` names (see the module's docstring)."""
    import pulumi

    imports = config.get_object("imports") or {}
    if not isinstance(imports, dict) or not imports:
        return
    table = {str(k): str(v) for k, v in imports.items()}

    def adopt(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        extra = import_options(table, args.type_, args.name)
        if extra is None:
            return None
        opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(**extra))
        return pulumi.ResourceTransformationResult(props=args.props, opts=opts)

    pulumi.runtime.register_stack_transformation(adopt)
