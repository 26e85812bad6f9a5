"""MIG layouts: accept a layout only if the GPU can hold it, and write it in mig-parted format.

A layout is the list of GPU-instance profiles carved out of one GPU. It is accepted when:
every name is a profile of that model; at most one ``+me`` profile is present; the compute slices
add up to no more than the GPU has; no combination NVIDIA documents as unsupported appears; and
the instances can be placed on the memory slices at the start offsets the driver allows (the
search below is exact: it tries every placement).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .accelerators import AcceleratorModel, MigProfile


class MigLayoutError(ValueError):
    """A layout the hardware cannot hold; ``index`` is the offending profile's position, if one is."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Placement:
    profile: str
    start: int
    size: int


def _profile(model: AcceleratorModel, name: str, index: int) -> MigProfile:
    assert model.mig is not None
    prof = model.mig.profiles.get(name)
    if prof is None:
        valid = ", ".join(model.mig.profiles)
        raise MigLayoutError(f"{name!r} is not a MIG profile of {model.name} (valid: {valid})", index)
    return prof


def place(model: AcceleratorModel, layout: Iterable[str]) -> list[Placement]:
    """Placements for ``layout`` on one GPU of ``model``, or MigLayoutError saying why none exists."""
    names = list(layout)
    shown = "[" + ", ".join(names) + "]"
    if model.mig is None:
        raise MigLayoutError(f"{model.name} does not support MIG: cannot hold layout {shown}")
    geo = model.mig
    profiles = [_profile(model, n, i) for i, n in enumerate(names)]

    media = [p.name for p in profiles if p.media]
    if len(media) > 1:
        raise MigLayoutError(
            f"layout {shown} on {model.name} has {len(media)} media-extension (+me) profiles; "
            "a GPU has one set of media engines, so at most one +me profile"
        )
    compute = sum(p.compute for p in profiles)
    if compute > geo.compute_slices:
        raise MigLayoutError(
            f"layout {shown} needs {compute} compute slices but {model.name} has {geo.compute_slices}"
        )
    memory = sum(p.memory for p in profiles)
    if memory > geo.memory_slices:
        raise MigLayoutError(
            f"layout {shown} needs {memory} memory slices but {model.name} has {geo.memory_slices}"
        )
    sizes = {p.compute for p in profiles}
    for bad in geo.forbidden_together:
        if bad <= sizes:
            combo = " + ".join(f"{c}g" for c in sorted(bad, reverse=True))
            raise MigLayoutError(
                f"layout {shown}: NVIDIA does not support {combo} instances together on {model.name}"
            )

    # Exact search: place the largest instances first on the allowed start offsets.
    order = sorted(range(len(profiles)), key=lambda i: (-profiles[i].memory, -profiles[i].compute, i))
    used = [False] * geo.memory_slices
    chosen: dict[int, int] = {}

    def fits(prof: MigProfile, start: int) -> bool:
        end = start + prof.memory
        return end <= geo.memory_slices and not any(used[start:end])

    def search(k: int) -> bool:
        if k == len(order):
            return True
        i = order[k]
        prof = profiles[i]
        tried: set[int] = set()
        for start in prof.starts:
            if start in tried or not fits(prof, start):
                continue
            tried.add(start)
            for s in range(start, start + prof.memory):
                used[s] = True
            chosen[i] = start
            if search(k + 1):
                return True
            for s in range(start, start + prof.memory):
                used[s] = False
            del chosen[i]
        return False

    if not search(0):
        raise MigLayoutError(
            f"layout {shown} cannot be placed on {model.name}: the instances overlap on every "
            f"placement the driver allows ({_starts_hint(profiles)})"
        )
    return sorted(
        (Placement(profiles[i].name, chosen[i], profiles[i].memory) for i in range(len(profiles))),
        key=lambda p: p.start,
    )


def _starts_hint(profiles: list[MigProfile]) -> str:
    seen: dict[str, MigProfile] = {p.name: p for p in profiles}
    return "; ".join(
        f"{p.name} starts at {{{','.join(map(str, p.starts))}}} and spans {p.memory}"
        for p in seen.values()
    )


def validate(model: AcceleratorModel, layout: Iterable[str]) -> None:
    """Raise MigLayoutError unless ``layout`` fits one GPU of ``model``."""
    place(model, layout)


def counts(layout: Iterable[str]) -> dict[str, int]:
    """``[1g.10gb, 1g.10gb, 2g.20gb]`` -> ``{"1g.10gb": 2, "2g.20gb": 1}`` (first-seen order)."""
    return dict(Counter(layout))


def expand(devices: Mapping[str, int]) -> list[str]:
    """The inverse of counts()."""
    out: list[str] = []
    for name, n in devices.items():
        out.extend([name] * int(n))
    return out


#: Longest Kubernetes label value.
_LABEL_MAX = 63


def config_name(model: AcceleratorModel, layouts: list[list[str] | None]) -> str:
    """A stable, human-readable mig-parted config name for one node's GPUs.

    ``all-disabled`` / ``all-1g.10gb`` / ``all-balanced``-style names are NVIDIA's; ours are
    ``aiinfn-<model>-<profile>x<n>[-...]`` so they never collide with the stock configs and say
    what they hold. The name is the ``nvidia.com/mig.config`` label value, so it is a valid label
    value: profiles in sorted order (a layout is a multiset), ``+`` written ``.`` as NVIDIA's own
    config names do (``all-1g.10gb.me``), and past 63 characters cut and ended with a hash of the
    whole name.
    """
    if all(layout is None for layout in layouts):
        return "all-disabled"
    parts: list[str] = []
    for layout in layouts:
        if layout is None:
            parts.append("off")
        elif not layout:
            parts.append("empty")
        else:
            parts.append("_".join(f"{n}x{c}" for n, c in sorted(counts(layout).items())))
    body = parts[0] if len(set(parts)) == 1 else "--".join(parts)
    name = f"aiinfn-{model.name.lower()}-{body}".replace("+", ".")
    if len(name) > _LABEL_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[: _LABEL_MAX - len(digest) - 1].rstrip('-_.')}-{digest}"
    return name


def mig_parted_entries(model: AcceleratorModel, layouts: list[list[str] | None]) -> list[dict[str, object]]:
    """mig-parted ``mig-configs`` entries for one node's GPUs (index = GPU position on the node).

    GPUs with the same layout are grouped into one entry; every entry carries a ``device-filter``
    with the model's PCI IDs in mig-parted's ``0xDEVICEVENDOR`` form, so a config applied to the
    wrong hardware does nothing instead of failing half-way.
    """
    groups: dict[tuple[tuple[str, int], ...] | None, list[int]] = {}
    for idx, layout in enumerate(layouts):
        # The same multiset in another order is the same layout (mig-devices is a mapping).
        key = None if layout is None else tuple(sorted(counts(layout).items()))
        groups.setdefault(key, []).append(idx)
    entries: list[dict[str, object]] = []
    device_filter = [f"0x{d.upper()}{model.vendor_id.upper()}" for d in model.device_ids]
    for idxs in groups.values():
        devices: object = "all" if len(idxs) == len(layouts) else idxs
        entry: dict[str, object] = {"device-filter": device_filter, "devices": devices}
        first = layouts[idxs[0]]
        if first is None:
            entry["mig-enabled"] = False
        else:
            entry["mig-enabled"] = True
            entry["mig-devices"] = counts(first)
        entries.append(entry)
    return entries
