"""Load an environment: read YAML, layer ``extends:`` files, validate, attribute every error to a file.

``load(ref)`` returns a validated environment (a site ``Environment``, an ``Event`` or a ``Federation``,
told apart by the file's ``kind``) or raises ``ConfigError`` with one line naming the file, the field
path and the fix. Nothing else escapes for any input. ``load_site(ref)`` also refuses anything but a
site, for the commands that only make sense on one.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from ..errors import ConfigError, an
from . import validate
from .models import AnyEnvironment, Environment, Event, Federation
from .paths import PathT, format_path, parse_path

#: Keys that hold secret values when they appear anywhere in an environment file.
SECRET_KEY_RE = re.compile(
    r"(^|_)(password|passwd|passphrase|token|private_key|secret_key|access_key|api_key|credentials?)$"
)
PEM_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
MAX_BYTES = 1_000_000
#: Most values a file may hold once its aliases are expanded; a site has a few hundred.
MAX_VALUES = 100_000


@lru_cache(maxsize=1)
def project_root() -> Path:
    """The checkout that holds environments/, stacks/ and templates/."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "Pulumi.yaml").is_file() and (parent / "environments").is_dir():
            return parent
    # Not inside a checkout (installed wheel): fall back to the working directory.
    return Path.cwd()


def default_build_dir() -> Path:
    """Where every command writes and reads build/<env>/ unless told otherwise: the project's build/, wherever
    the command runs (the environments are resolved from the project too)."""
    return project_root() / "build"


def resolve(ref: str | Path, root: Path | None = None) -> Path:
    """``cnaf`` -> environments/cnaf.yaml; ``hackathon-example`` -> environments/events/...; or a path."""
    root = root or project_root()
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        if p.is_file():
            return p
        # Pulumi runs the program from stacks/: a stack's relative path is relative to the project.
        if not p.is_absolute() and (root / p).is_file():
            return root / p
        raise ConfigError(f"environment file not found: {ref}")
    for cand in (
        root / "environments" / f"{ref}.yaml",
        root / "environments" / "events" / f"{ref}.yaml",
        root / "environments" / str(ref) / f"{ref}.yaml",
    ):
        if cand.is_file():
            return cand
    known = sorted(list_environments(root))
    hint = difflib.get_close_matches(str(ref), known, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})"
    raise ConfigError(f"no environment named {str(ref)!r} under {root / 'environments'}{extra}")


def list_environments(root: Path | None = None, kind: str | None = None) -> list[str]:
    """Names of the shipped, plannable environments (mixins such as base.yaml excluded), of ``kind``
    (``site``, ``event``, ``federation``) or of every kind."""
    if kind is not None:
        return [n for n, k in environment_kinds(root).items() if k == kind]
    root = root or project_root()
    out: list[str] = []
    envdir = root / "environments"
    for f in sorted(envdir.rglob("*.yaml")):
        if f.parent.name == "mixins" or f.stem in ("base",):
            continue
        out.append(f.stem)
    return out


def display(path: Path) -> str:
    """A path as an operator would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop
        return str(path)


# --------------------------------------------------------------------------- YAML


class _Constructor(SafeConstructor):
    """ruamel's safe constructor, with a line and column for every value it cannot build.

    ruamel raises a bare ValueError, IndexError or KeyError (no position) for an impossible date
    (2026-02-30), an integer longer than Python converts, ``!!float abc`` or ``!!int ''``.
    """

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except (ValueError, OverflowError, IndexError, KeyError, TypeError):
            kind = str(tag or node.tag).rsplit(":", 1)[-1]
            raise ConstructorError(
                None, None, f"{_short(node.value)} cannot be read as {kind}: fix it, or quote it to write text",
                node.start_mark,
            ) from None

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            # Looks like a date but is none (2026-02-30): keep the text, and the field that wants a
            # date says which one and how to write it.
            return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def _unquoted(problem: str) -> str:
    """A parser's message with whatever it quotes of the text left out."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "'...'", problem)


def _read_yaml(path: Path, *, quote: bool = True) -> dict[str, Any]:
    """The YAML mapping in ``path``, or one ConfigError. ``quote=False``: messages never quote the file's text (a
    file another one names, that may be no environment)."""
    name = display(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read file ({e.strerror})", file=name) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES} bytes; is it really an environment?", file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", file=name) from None
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = (e.problem or e.context or "invalid YAML").strip()
        if "duplicate key" in str(e):
            key = _duplicate_key(str(e)) if quote else ""
            problem = "duplicate key" + (f" {key}" if key else "") + ": write each key once in a mapping"
        elif "'\\t'" in problem:
            problem += ": indent with spaces, YAML does not allow tabs there"
        elif not quote:
            problem = _unquoted(problem)
        raise ConfigError(f"YAML syntax error at {where}: {problem}", file=name) from None
    except ReaderError as e:
        if not isinstance(e.character, int) or not isinstance(e.position, int):
            raise ConfigError(f"YAML error: {str(e).splitlines()[0]}", file=name) from None
        line = text.count("\n", 0, e.position) + 1
        column = e.position - text.rfind("\n", 0, e.position)
        escape = f"\\x{e.character:02x}" if e.character < 0x100 else f"\\u{e.character:04x}"
        raise ConfigError(
            f"YAML syntax error at line {line}, column {column}: character #x{e.character:04x} is not allowed in "
            f"YAML: remove it, or write it as the escape {escape} inside double quotes",
            file=name,
        ) from None
    except YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"YAML error: {first if quote else _unquoted(first)}", file=name) from None
    except RecursionError:
        raise ConfigError("YAML nests too deeply", file=name) from None
    if data is None:
        raise ConfigError("file is empty: an environment is a YAML mapping of fields", file=name)
    if not isinstance(data, dict):
        raise ConfigError(
            f"top level must be a mapping of fields, got a {type(data).__name__}", file=name
        )
    _check_shape(data, name)
    return data


def _check_shape(data: dict[str, Any], name: str) -> None:
    """Refuse what YAML aliases can build but no environment is: a mapping or list that contains
    itself (``a: &a [*a]``), or an expansion larger than any site (nested aliases, "billion laughs").
    Iterative, so that neither recurses or runs for ever in the walks that follow."""
    seen = 0
    todo: list[tuple[Any, PathT, tuple[int, ...]]] = [(data, (), ())]
    while todo:
        node, path, ancestors = todo.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(
                f"holds more than {MAX_VALUES} values once its aliases (*name) are expanded: "
                "an environment has a few hundred; write the values out",
                file=name,
            )
        if isinstance(node, dict | list):
            if id(node) in ancestors:
                raise ConfigError(
                    "an alias (*name) refers to a mapping or list that contains it: write the value out",
                    file=name,
                    path=format_path(path),
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            todo.extend((v, (*path, str(k) if isinstance(node, dict) else k), (*ancestors, id(node)))
                        for k, v in items)


def _duplicate_key(msg: str) -> str:
    m = re.search(r'found duplicate key "([^"]*)"', msg)
    return repr(m.group(1)) if m else ""


# --------------------------------------------------------------------------- secrets


def _walk(data: Any, path: PathT = ()) -> Iterator[tuple[PathT, Any, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*path, str(k)), k, v
            yield from _walk(v, (*path, str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, (*path, i))


def _scan_secrets(data: dict[str, Any], name: str) -> None:
    """Refuse secret values anywhere in a file, before any other check."""
    for path, key, value in _walk(data):
        k = str(key).lower()
        if isinstance(value, str) and PEM_RE.search(value):
            raise ConfigError(
                "a private key is written in the environment file; keep it out of the repository and "
                "give it to Pulumi with `pulumi config set --secret`",
                file=name,
                path=format_path(path),
            )
        if SECRET_KEY_RE.search(k) and not k.endswith("_secret") and value not in (None, "", {}, []):
            raise ConfigError(
                "secrets are never values in environment files: store it with "
                "`pulumi config set --secret aiinfn:<name> ...` and reference <name> from the "
                "matching `*_secret` field",
                file=name,
                path=format_path(path),
            )
    # Walk of scalars inside lists too (e.g. a PEM in a list item).
    for item in _iter_scalars(data):
        if isinstance(item[1], str) and PEM_RE.search(item[1]):
            raise ConfigError(
                "a private key is written in the environment file; give it to Pulumi as a secret",
                file=name,
                path=format_path(item[0]),
            )


def _iter_scalars(data: Any, path: PathT = ()) -> Iterator[tuple[PathT, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _iter_scalars(v, (*path, str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _iter_scalars(v, (*path, i))
    else:
        yield path, data


# --------------------------------------------------------------------------- layering


class Layered:
    """The merged data of a file and its ``extends:`` chain, with the file that set each path."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[PathT, Path] = {}
        self.files: list[Path] = []

    def data_at(self, path: PathT) -> Any:
        """The merged value at ``path`` (mapping keys as recorded, as text), or None."""
        node: Any = self.data
        for part in path:
            if isinstance(node, dict):
                node = next((v for k, v in node.items() if str(k) == part), None)
            elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                node = node[part]
            else:
                return None
        return node

    def file_for(self, path: PathT, related: tuple[PathT, ...] = ()) -> Path | None:
        """The file to blame for a problem at ``path``: the top-most file (in layering order) that
        set ``path``, anything under it, or the value that holds it (a list item belongs to the file
        that wrote the list), or the same for a ``related`` path; else the file that set the nearest
        enclosing mapping."""
        rank = {f: i for i, f in enumerate(self.files)}
        best: Path | None = None
        for cand in (path, *related):
            n = len(cand)
            setters = [f for p, f in self.origin.items() if p[:n] == cand]
            # Origins are recorded per mapping key: a path into a list or a scalar has none, the
            # value that holds it does.
            holder = next((cand[:m] for m in range(n - 1, 0, -1) if cand[:m] in self.origin), None)
            if holder is not None and not isinstance(self.data_at(holder), dict):
                setters.append(self.origin[holder])
            for f in setters:
                if best is None or rank.get(f, -1) > rank.get(best, -1):
                    best = f
        if best is not None:
            return best
        for n in range(len(path), -1, -1):
            enclosing = self.origin.get(path[:n])
            if enclosing is not None:
                return enclosing
        return None


def _whole(key: PathT) -> bool:
    """A mapping an overlay replaces whole rather than merges: a MIG layout (``node_pools.<pool>.mig``) as
    ``{profile: count}`` describes a GPU's whole partition, so a base's profiles never survive beside it."""
    return len(key) == 3 and key[0] == "node_pools" and key[2] == "mig"


def _merge(dst: dict[str, Any], src: dict[str, Any], origin: dict[PathT, Path], file: Path, path: PathT) -> None:
    for k, v in src.items():
        key = (*path, str(k))
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and not _whole(key):
            origin.setdefault(key, file)
            _merge(dst[k], v, origin, file, key)
        else:
            dst[k] = _copy(v)
            for p in [p for p in origin if p[: len(key)] == key]:
                del origin[p]
            _record(v, origin, file, key)


def _record(v: Any, origin: dict[PathT, Path], file: Path, path: PathT) -> None:
    origin[path] = file
    if isinstance(v, dict):
        for k, x in v.items():
            _record(x, origin, file, (*path, str(k)))


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


#: Top-level fields of any kind of environment file: a file holding none of them is not an environment.
def _environment_fields() -> frozenset[str]:
    return frozenset({"extends", *(f for m in KINDS.values() for f in m.model_fields)})


def environment_roots(naming: Path, root: Path | None = None) -> list[Path]:
    """Where a file may find the environments it names (``extends:``, an event's or a federation's ``sites:``):
    the project's checkout (the directory holding Pulumi.yaml and environments/; outside a checkout, the
    environments/ directory under the working directory) and the directory tree of the naming file itself."""
    root = root or project_root()
    home = root if (root / "Pulumi.yaml").is_file() else root / "environments"
    out = []
    for r in (home, naming.parent):
        try:
            out.append(r.resolve())
        except (OSError, RuntimeError):  # pragma: no cover - a directory that vanished
            continue
    return out


def check_environment_file(target: Path, naming: Path, ref: str, where: str, root: Path | None = None) -> None:
    """Refuse a file ``naming`` names (as ``ref``, at field ``where``) that is not where environments are read
    from, or is not a YAML file. ``target`` has its symlinks resolved already. Never reads it."""
    name = display(naming)
    if target.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{_short(ref)} is not a .yaml or .yml file: name environment files only", file=name,
                          path=where)
    roots = environment_roots(naming, root)
    if not any(target.is_relative_to(r) for r in roots):
        raise ConfigError(
            f"{_short(ref)} is {display(target)}, outside where environments are read from (this checkout, or the "
            "directory of this file and below): name an environment file there",
            file=name,
            path=where,
        )


def _refuse_non_environment(data: dict[str, Any], target: Path, naming: Path, ref: str, where: str) -> None:
    """A named file with a top-level key that is no environment's field (nor a near miss of one, which the
    validation then names with a hint) is refused without quoting any of it: it may be any YAML file of the
    checkout (a stack's Pulumi config, a clouds.yaml, a manifest)."""
    fields = sorted(_environment_fields())
    strangers = [k for k in data
                 if not (isinstance(k, str) and (k in fields or difflib.get_close_matches(k, fields, n=1, cutoff=0.8)))]
    if strangers or not data:
        raise ConfigError(
            f"{_short(ref)} ({display(target)}) is not an environment file: {len(strangers)} of its {len(data)} "
            "top-level keys are no field of a site, an event or a federation",
            file=display(naming),
            path=where,
        )


def layer(path: Path, _stack: tuple[Path, ...] = (), _named: tuple[Path, str, str] | None = None) -> Layered:
    """Read ``path`` and everything it extends: bases first, the file itself last (it wins).

    A base must be a .yaml/.yml file inside ``environment_roots`` of the file naming it (symlinks resolved
    first), and its top level must hold environment fields; problems with a base's own text are reported
    without quoting it (it may be no environment at all).
    """
    path = path.resolve()
    if path in _stack:
        chain = " -> ".join(display(p) for p in (*_stack, path))
        raise ConfigError(f"extends: cycle {chain}", file=display(_stack[0]), path="extends")
    data = _read_yaml(path, quote=_named is None)
    if _named is not None:
        _refuse_non_environment(data, path, *_named)
    name = display(path)
    _scan_secrets(data, name)
    bases = data.pop("extends", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("must be a file name or a list of file names", file=name, path="extends")
    out = Layered()
    for i, base in enumerate(bases):
        where = f"extends[{i}]" if len(bases) > 1 else "extends"
        try:
            target = (path.parent / base).resolve()
            found = target.is_file()
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, a symlink loop ...
            raise ConfigError(
                f"{_short(base)} is not a usable file name: write the path of a YAML file, relative to this one",
                file=name,
                path=where,
            ) from None
        if not found:
            raise ConfigError(f"{_short(base)} not found (looked for {display(target)})", file=name, path=where)
        check_environment_file(target, path, base, where)
        sub = layer(target, (*_stack, path), (path, base, where))
        _merge(out.data, sub.data, out.origin, target, ())
        for p, f in sub.origin.items():
            out.origin[p] = f
        out.files.extend(sub.files)
    _merge(out.data, data, out.origin, path, ())
    out.files.append(path)
    return out


# --------------------------------------------------------------------------- validation errors


def _unwrap(t: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the core type."""
    while True:
        origin = get_origin(t)
        if origin is Annotated:
            t = get_args(t)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(t) if a is not type(None)]
            t = args[0] if args else t
            if len(args) != 1:
                return t
        else:
            return t


def _model_at(loc: PathT, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for 'did you mean' hints)."""
    current: Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: dict[str, Any], root: type[BaseModel]) -> str:
    typ = err["type"]
    loc = err["loc"]
    inp = err.get("input")
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if typ in ("extra_forbidden", "invalid_key"):  # invalid_key: a field name that is not text (`0:`)
        model = _model_at(loc, root)
        field = str(loc[-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(field, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (valid: {', '.join(known)})" if known else "")
        return f"unknown field {field!r}{hint}"
    if typ == "missing":
        return "required field is missing"
    shown = _short(inp)
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {shown}"
    if typ in ("float_type", "float_parsing"):
        return f"expected a number, got {shown}"
    if typ in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {shown}"
    if typ in ("string_type",):
        quote = ": quote it to write text" if isinstance(inp, int | float | dt.date) else ""
        return f"expected text, got {shown}{quote}"
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of fields, got {shown}"
    if typ in ("list_type",):
        return f"expected a list, got {shown}"
    if typ in ("enum", "literal_error"):
        return f"{shown} is not allowed: {msg[0].lower() + msg[1:]}"
    if typ in ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"):
        return f"expected a date like 2026-12-01, got {shown}"
    if typ == "too_short" and "min_length" in err.get("ctx", {}):
        n = err["ctx"]["min_length"]
        return f"{shown}: needs at least {n} item{'s' if n != 1 else ''}"
    if typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
               "string_pattern_mismatch", "string_too_short", "string_too_long", "finite_number"):
        return f"{shown}: {msg[0].lower() + msg[1:]}"
    return msg


def _short(v: Any) -> str:
    s = v.isoformat(" ") if isinstance(v, dt.datetime) else v.isoformat() if isinstance(v, dt.date) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _data_loc(data: Any, loc: PathT) -> PathT:
    """pydantic's location with every mapping key as text, as the loader records paths: a key
    written ``1:`` is the integer 1 in YAML, and names a key, not a list position."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            keys = [k for k in node if k == part or str(k) == str(part)]
            out.append(str(keys[0]) if keys else part)
            node = node[keys[0]] if keys else None
        else:
            out.append(part)
            ok = isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node)
            node = node[part] if ok else None
    return tuple(out)


def _pydantic_error(e: ValidationError, layered: Layered, top: Path, root: type[BaseModel]) -> ConfigError:
    errors = e.errors(include_url=False)
    first = errors[0]
    # pydantic ends the location of a bad mapping key with "[key]": the key itself is the field
    loc: PathT = _data_loc(layered.data, tuple(p for p in first["loc"] if p != "[key]"))
    file = layered.file_for(loc) or top
    extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = _describe(dict(first), root)
    if first["loc"][-1:] == ("[key]",) and first["type"] == "string_type":
        message = f"key {_short(first.get('input'))} is not text: quote it"
    return ConfigError(message + extra, file=display(file), path=format_path(loc) or None)


#: Validated environments by file, with a digest of every file of their extends chain (content,
#: not mtime: timestamps are too coarse for files rewritten in a loop). `aiinfn plan` and the program
#: it runs then parse and validate the same files once, not twice.
_CACHE: dict[tuple[Path, bool], tuple[tuple[tuple[Path, str], ...], AnyEnvironment]] = {}

#: The model of each `kind` of environment file.
KINDS: dict[str, type[BaseModel]] = {"site": Environment, "event": Event, "federation": Federation}


def _signature(files: list[Path]) -> tuple[tuple[Path, str], ...] | None:
    try:
        return tuple((f, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files)
    except OSError:
        return None


def load(ref: str | Path, *, root: Path | None = None, semantic: bool = True) -> AnyEnvironment:
    """Load, layer and validate environment ``ref`` (a name under environments/ or a path)."""
    path = resolve(ref, root)
    key = (path.resolve(), semantic)
    cached = _CACHE.get(key)
    if cached is not None and _signature([f for f, _ in cached[0]]) == cached[0]:
        return cached[1]
    layered = layer(path)
    env = _validate(layered, path, semantic, root)
    files = list(layered.files)
    if not isinstance(env, Environment):
        for site in env.site_environments().values():
            files.extend(_files_of(site))
    sig = _signature(files)
    if sig is not None:
        _CACHE[key] = (sig, env)
    return env


def load_site(ref: str | Path, *, root: Path | None = None, purpose: str = "this command") -> Environment:
    """``load``, refusing an event or a federation file: ``purpose`` works on a site only."""
    env = load(ref, root=root)
    if not isinstance(env, Environment):
        raise ConfigError(
            f"is {an(env.kind)} file, and {purpose} works on a site: give a site environment "
            f"(one of {', '.join(sorted(n for n, k in environment_kinds(root).items() if k == 'site'))})",
            file=display(resolve(ref, root)),
        )
    return env


def kind_of(data: dict[str, Any], name: str) -> str:
    """The `kind` a file's merged data declares (``site`` when it says none)."""
    kind = data.get("kind", "site")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(
            f"{_short(kind)} is not a kind of environment (valid: {', '.join(KINDS)})", file=name, path="kind"
        )
    return str(kind)


def _validate(layered: Layered, path: Path, semantic: bool, root: Path | None) -> AnyEnvironment:
    kind = kind_of(layered.data, display(layered.file_for(("kind",)) or path))
    model = KINDS[kind]
    try:
        env: AnyEnvironment = model.model_validate(layered.data)  # type: ignore[assignment]
    except ValidationError as e:
        raise _pydantic_error(e, layered, path, model) from None
    except (RecursionError, OverflowError) as e:  # pathological input
        raise ConfigError(f"cannot be validated ({type(e).__name__})", file=display(path)) from None
    try:
        if isinstance(env, Event | Federation):
            sites = _members(env, path, root)
            env._sites = sites
            if isinstance(env, Event):
                env._file = str(path)
            if semantic:
                if isinstance(env, Event):
                    validate.check_event(env, sites)
                else:
                    validate.check_federation(env, sites)
        elif semantic:
            validate.check(env)
    except ConfigError as e:
        if e.file:
            raise
        loc = tuple(parse_path(e.path)) if e.path else ()
        related = tuple(tuple(parse_path(r)) for r in e.related)
        file = layered.file_for(loc, related) or path
        raise e.with_file(display(file)) from None
    return env


def _members(env: Event | Federation, path: Path, root: Path | None) -> dict[str, Environment]:
    """The site environments an event or a federation names, each loaded and validated in full."""
    out: dict[str, Environment] = {}
    for i, ref in enumerate(env.sites):
        where = f"sites[{i}]"
        looks_like_path = ref.endswith((".yaml", ".yml")) or "/" in ref
        target: str | Path = (path.parent / ref) if looks_like_path else ref
        if isinstance(target, Path):
            try:
                real = target.resolve()
                exists = real.is_file()
            except (OSError, ValueError, RuntimeError):
                raise ConfigError(f"{_short(ref)} is not a usable file name", file=display(path), path=where) from None
            if exists:
                # the same rule as `extends`: only environment files, from where environments are read
                check_environment_file(real, path, ref, where, root)
                _refuse_non_environment(_read_yaml(real, quote=False), real, path, ref, where)
        try:
            site = load(target, root=root)
        except ConfigError as e:
            if e.file is None or "not found" in e.message or "no environment named" in e.message:
                raise ConfigError(e.message, path=where) from None
            raise
        if not isinstance(site, Environment):
            raise ConfigError(f"{ref!r} is {an(site.kind)} file, not a site", path=where)
        if site.name in out:
            raise ConfigError(f"site {site.name!r} is listed twice", path=where)
        out[site.name] = site
    return out


def _files_of(site: Environment) -> list[Path]:
    """The files a cached site environment was read from."""
    for sig, env in _CACHE.values():
        if env is site:
            return [f for f, _ in sig]
    return []


def environment_kinds(root: Path | None = None) -> dict[str, str]:
    """Shipped environment name -> its kind (``site``, ``event``, ``federation``; ``example`` files
    are sites too), read from each file's own ``kind`` (or its extends chain's)."""
    out: dict[str, str] = {}
    for name in list_environments(root):
        try:
            out[name] = kind_of(layer(resolve(name, root)).data, name)
        except ConfigError:
            out[name] = "broken"
    return out
