"""``adopt(site, cloud)``: plan offline, read the cloud, match, then write the import file and the stack's
``aiinfn:imports``. Nothing in the cloud is changed: the connection only lists."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..serialize import json_dump
from .match import AdoptError, Adoption, check_mapping, match


@dataclass
class AdoptResult:
    adoption: Adoption
    import_file: dict[str, Any]
    import_path: Path | None
    stack_file: Path | None
    timings: dict[str, float] = field(default_factory=dict)


def read_mapping(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text()
    except OSError as e:
        raise AdoptError(f"{path}: cannot read the mapping file ({e.strerror})") from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise AdoptError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    return check_mapping(data, str(path))


def adopt(
    env: str,
    cloud: str | None = None,
    *,
    mapping: Path | None = None,
    build_dir: Path = Path("build"),
    stack: str | None = None,
    write_stack: bool = True,
    timeout: float | None = None,
    root: Path | None = None,
    stack_dir: Path | None = None,
) -> AdoptResult:
    """Adopt ``env``'s site from ``cloud``: the stack file is ``Pulumi.<stack>.yaml`` in ``stack_dir`` (the
    project's root by default)."""
    from ..config.loader import display, load_site, project_root, resolve
    from ..openstack.connect import DEFAULT_TIMEOUT, calling, connect
    from ..preview import build
    from .imports import import_file, write_stack_imports
    from .live import read

    root = root or project_root()
    load_site(env, root=root, purpose="`aiinfn adopt`")
    wanted = read_mapping(mapping)
    t0 = time.monotonic()
    report = build(env, stack=stack, root=root)
    t1 = time.monotonic()
    name = cloud or report.plan.env.site.cloud
    limit = timeout or DEFAULT_TIMEOUT
    conn = connect(name, timeout=limit)
    try:
        with calling(name, "list the project's resources", timeout=limit):
            live = read(conn)
    finally:
        conn.close()
    t2 = time.monotonic()
    adoption = match(report, live, wanted)
    doc = import_file(adoption, report)
    t3 = time.monotonic()
    out = build_dir / report.build_key / "adopt"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "import.json"
    path.write_text(json_dump(doc) + "\n")
    (out / "report.json").write_text(json_dump(adoption.document()) + "\n")
    stack_file = None
    if write_stack:
        stack_file = (stack_dir or root) / f"Pulumi.{report.stack}.yaml"
        env_file = resolve(env, root)
        try:
            rel = env_file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = display(env_file)
        write_stack_imports(stack_file, adoption.imports(), rel)
    return AdoptResult(adoption, doc, path, stack_file,
                       {"plan": t1 - t0, "list": t2 - t1, "match": t3 - t2})
