"""MIG layouts: NVIDIA's own stock configs as the oracle, refusals that say why, and an exhaustive
check that the placement search in ``aiinfn.catalogue.mig`` is exact.

The oracle is NVIDIA mig-parted v0.15.0's ``config-default.yaml``, read in place from
``../shared/schemas/mig-parted-v0.15.0/`` (never copied into the project).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig

ORACLE_MODELS = ("A100-40GB", "A100-80GB", "A30", "H100-80GB")
MIG_MODELS = [name for name, m in cat.MODELS.items() if m.mig_capable]
#: A Kubernetes label value (the config name is the `nvidia.com/mig.config` label).
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --- the oracle ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stock(shared: Path) -> dict[str, list[dict[str, Any]]]:
    path = shared / "schemas" / "mig-parted-v0.15.0" / "config-default.yaml"
    doc = YAML(typ="safe", pure=True).load(path.read_text())
    assert doc["version"] == "v1"
    configs: dict[str, list[dict[str, Any]]] = doc["mig-configs"]
    return configs


def _filter_ids(entry: dict[str, Any]) -> set[str] | None:
    """An entry's ``device-filter`` (a string or a list of ``0xDEVICEVENDOR``), upper-cased."""
    f = entry.get("device-filter")
    if f is None:
        return None
    return {s.strip().upper() for s in ([f] if isinstance(f, str) else f)}


def _model_ids(model: cat.AcceleratorModel) -> set[str]:
    return {f"0x{d}{model.vendor_id}".upper() for d in model.device_ids}


def _as_list(value: object) -> list[Any]:
    assert isinstance(value, list)
    return value


def _enabled_with_devices(entry: dict[str, Any]) -> bool:
    return bool(entry.get("mig-enabled")) and bool(entry.get("mig-devices"))


def _applies(model: cat.AcceleratorModel, entry: dict[str, Any]) -> bool:
    """Would mig-parted apply ``entry`` to a GPU of ``model``?

    With a device filter: when one of the model's PCI IDs is in it. Without: the generic entries
    (MIG off, or on with no instances) apply to every GPU; the others to the GPUs that have every
    profile they name.
    """
    assert model.mig is not None
    ids = _filter_ids(entry)
    if ids is not None:
        return bool(ids & _model_ids(model))
    if not _enabled_with_devices(entry):
        return True
    return all(p in model.mig.profiles for p in entry["mig-devices"])


@pytest.fixture(scope="module")
def checked(stock: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every (config, model) pair of the oracle checked against the catalogue: model -> config -> entry.

    Each check: the layout is accepted by validate(), and mig_parted_entries() reproduces NVIDIA's
    `mig-enabled` and `mig-devices` exactly, for all the GPUs of a node (`devices: all`).
    """
    failures: list[str] = []
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in ORACLE_MODELS}
    for config, entries in stock.items():
        for name in ORACLE_MODELS:
            model = cat.model(name)
            hits = [e for e in entries if _applies(model, e)]
            if not hits:
                continue
            # Two entries of one config for one GPU would leave the oracle ambiguous.
            assert len(hits) == 1, f"{config}: {len(hits)} entries apply to {name}"
            (entry,) = hits
            out[name][config] = entry
            enabled = bool(entry.get("mig-enabled"))
            devices = {str(k): int(v) for k, v in (entry.get("mig-devices") or {}).items()}
            layout: list[str] | None = mig.expand(devices) if enabled else None
            if layout is not None:
                try:
                    mig.validate(model, layout)
                except mig.MigLayoutError as e:
                    failures.append(f"NVIDIA's {config} refused for {name}: {e}")
                    continue
            for gpus in (1, 4):
                rendered = mig.mig_parted_entries(model, [layout] * gpus)
                assert len(rendered) == 1, (config, name, rendered)
                (ours,) = rendered
                expected: dict[str, Any] = {"devices": "all", "mig-enabled": enabled}
                if enabled:
                    expected["mig-devices"] = devices
                got = {k: v for k, v in ours.items() if k != "device-filter"}
                if got != expected:
                    failures.append(f"{config} for {name} x{gpus}: rendered {got}, NVIDIA has {expected}")
                # Our filter is the model's PCI IDs; where NVIDIA filters, ours is within NVIDIA's.
                ours_ids = {str(s).upper() for s in _as_list(ours["device-filter"])}
                assert ours_ids == _model_ids(model)
                nvidia_ids = _filter_ids(entry)
                if nvidia_ids is not None and not ours_ids <= nvidia_ids:
                    failures.append(f"{config}: {name} IDs {sorted(ours_ids - nvidia_ids)} not in NVIDIA's filter")
    assert not failures, "\n".join(failures)
    return out


def test_every_stock_config_for_our_gpus_is_accepted_and_reproduced(
    checked: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """The oracle is not vacuous: exactly these configs of the file apply to each model (counted
    by reading config-default.yaml), each was accepted and reproduced by the `checked` fixture.

    With MIG instances:
    - A100-40GB (8): all-1g.5gb (7), all-1g.5gb.me (1), all-1g.10gb (its A100-40GB entry: 4),
      all-2g.10gb (3), all-3g.20gb (2), all-4g.20gb (1), all-7g.40gb (1), all-balanced
      (its A100-40GB entry: 2x 1g.5gb + 2g.10gb + 3g.20gb);
    - A100-80GB and H100-80GB (8 each): all-1g.10gb (its 80GB entry: 7), all-1g.10gb.me,
      all-1g.20gb (4), all-2g.20gb (3), all-3g.40gb (2), all-4g.40gb, all-7g.80gb, all-balanced
      (its 80GB entry: 2x 1g.10gb + 2g.20gb + 3g.40gb);
    - A30 (6): all-1g.6gb (4), all-1g.6gb.me, all-2g.12gb (2), all-2g.12gb.me, all-4g.24gb,
      all-balanced (its A30 entry: 2x 1g.6gb + 2g.12gb).
    Generic, rendered only: all-disabled (MIG off) and all-enabled (MIG on, no instances).
    """
    with_devices = {
        m: sorted(c for c, e in configs.items() if _enabled_with_devices(e)) for m, configs in checked.items()
    }
    assert with_devices["A100-40GB"] == sorted(
        ["all-1g.5gb", "all-1g.5gb.me", "all-1g.10gb", "all-2g.10gb", "all-3g.20gb", "all-4g.20gb",
         "all-7g.40gb", "all-balanced"]
    )
    for name in ("A100-80GB", "H100-80GB"):
        assert with_devices[name] == sorted(
            ["all-1g.10gb", "all-1g.10gb.me", "all-1g.20gb", "all-2g.20gb", "all-3g.40gb", "all-4g.40gb",
             "all-7g.80gb", "all-balanced"]
        ), name
    assert with_devices["A30"] == sorted(
        ["all-1g.6gb", "all-1g.6gb.me", "all-2g.12gb", "all-2g.12gb.me", "all-4g.24gb", "all-balanced"]
    )
    assert {m: len(v) for m, v in with_devices.items()} == {"A100-40GB": 8, "A100-80GB": 8, "A30": 6, "H100-80GB": 8}
    for name, configs in checked.items():
        assert "all-balanced" in configs and configs["all-balanced"].get("device-filter"), name
        assert {"all-disabled", "all-enabled"} <= set(configs), name


def test_the_stock_configs_use_every_profile_of_the_catalogue(checked: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Each profile we offer is one NVIDIA ships a config for on that GPU (a misspelt or invented
    profile such as 3g.30gb would show here), and NVIDIA uses no profile we lack."""
    for name, configs in checked.items():
        model = cat.model(name)
        assert model.mig is not None
        used = {p for e in configs.values() for p in (e.get("mig-devices") or {})}
        assert used == set(model.mig.profiles), name


def test_single_profile_stock_configs_are_the_maximum_the_gpu_holds(
    checked: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """NVIDIA's `all-<profile>` configs fill the GPU: one more instance of the profile is refused."""
    seen = 0
    for name, configs in checked.items():
        model = cat.model(name)
        for config, entry in configs.items():
            devices = entry.get("mig-devices") or {}
            if len(devices) != 1:
                continue
            ((profile, n),) = devices.items()
            with pytest.raises(mig.MigLayoutError):
                mig.validate(model, [profile] * (int(n) + 1))
            seen += 1
            assert config.startswith("all-")
    assert seen == 7 + 7 + 7 + 5


def test_disabled_gpus_render_as_nvidia_all_disabled(stock: dict[str, list[dict[str, Any]]]) -> None:
    """A node with MIG off everywhere is labelled with NVIDIA's own `all-disabled`, and our entry says
    the same thing NVIDIA's does."""
    (nvidia,) = stock["all-disabled"]
    for name in ORACLE_MODELS:
        model = cat.model(name)
        assert mig.config_name(model, [None, None]) == "all-disabled"
        (ours,) = mig.mig_parted_entries(model, [None, None])
        assert {k: v for k, v in ours.items() if k != "device-filter"} == nvidia


def test_filtered_stock_entries_are_refused_on_the_other_memory_size(stock: dict[str, list[dict[str, Any]]]) -> None:
    """NVIDIA filters all-1g.10gb by device because `1g.10gb` means one memory slice on an 80GB GPU
    but two on an A100-40GB: the 80GB entry (7 instances) must be refused on the 40GB card."""
    eighty = next(e for e in stock["all-1g.10gb"] if _model_ids(cat.model("A100-80GB")) & (_filter_ids(e) or set()))
    layout = mig.expand(eighty["mig-devices"])
    assert layout == ["1g.10gb"] * 7
    with pytest.raises(mig.MigLayoutError, match=r"needs 14 memory slices but A100-40GB has 8"):
        mig.validate(cat.model("A100-40GB"), layout)


# --- refusals -----------------------------------------------------------------------------------


def _shown(layout: list[str]) -> str:
    return "[" + ", ".join(layout) + "]"


REFUSALS = [
    # (model, layout, why)
    ("A100-40GB", ["1g.5gb"] * 8, "needs 8 compute slices but A100-40GB has 7"),
    ("A100-80GB", ["1g.10gb"] * 8, "needs 8 compute slices but A100-80GB has 7"),
    ("H100-80GB", ["1g.10gb"] * 8, "needs 8 compute slices but H100-80GB has 7"),
    ("A100-80GB", ["4g.40gb", "4g.40gb"], "needs 8 compute slices but A100-80GB has 7"),
    ("A100-40GB", ["4g.20gb", "4g.20gb"], "needs 8 compute slices but A100-40GB has 7"),
    # 4g + 3g passes the slice counts (7 compute, 8 memory): only NVIDIA's rule refuses it.
    ("A100-40GB", ["4g.20gb", "3g.20gb"], "NVIDIA does not support 4g + 3g instances together on A100-40GB"),
    ("A100-80GB", ["3g.40gb", "4g.40gb"], "NVIDIA does not support 4g + 3g instances together on A100-80GB"),
    ("H100-80GB", ["4g.40gb", "3g.40gb"], "NVIDIA does not support 4g + 3g instances together on H100-80GB"),
    ("A100-80GB", ["1g.10gb+me", "1g.10gb+me"], "has 2 media-extension (+me) profiles"),
    ("A100-40GB", ["1g.5gb+me", "1g.5gb", "1g.5gb+me"], "at most one +me profile"),
    ("A30", ["1g.6gb+me", "2g.12gb+me"], "at most one +me profile"),
    ("A30", ["1g.6gb"] * 5, "needs 5 compute slices but A30 has 4"),
    ("A30", ["2g.12gb"] * 3, "needs 6 compute slices but A30 has 4"),
    ("A100-80GB", ["1g.20gb"] * 5, "needs 10 memory slices but A100-80GB has 8"),
    ("H100-80GB", ["3g.40gb", "3g.40gb", "1g.10gb"], "needs 9 memory slices but H100-80GB has 8"),
    ("T4", ["1g.10gb"], "T4 does not support MIG"),
    ("V70", ["1g.5gb", "1g.5gb"], "V70 does not support MIG"),
    ("RTX5000", ["7g.40gb"], "RTX5000 does not support MIG"),
]


@pytest.mark.parametrize(("name", "layout", "why"), REFUSALS, ids=[f"{m}-{'+'.join(lay)}" for m, lay, _ in REFUSALS])
def test_impossible_layouts_are_refused_naming_gpu_layout_and_reason(name: str, layout: list[str], why: str) -> None:
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(cat.model(name), layout)
    message = str(e.value)
    assert why in message
    assert name in message
    assert _shown(layout) in message


@pytest.mark.parametrize(
    ("name", "layout", "index"),
    [("A100-80GB", ["3g.30gb"], 0), ("A100-80GB", ["1g.10gb", "2g.20gb", "3g.30gb"], 2), ("A30", ["1g.5gb"], 0)],
)
def test_unknown_profile_is_refused_listing_the_valid_ones(name: str, layout: list[str], index: int) -> None:
    """The message names the GPU and the bad profile and lists every valid profile; `index` points
    at the bad entry so the environment error can name `mig[<index>]`."""
    model = cat.model(name)
    assert model.mig is not None
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(model, layout)
    message = str(e.value)
    assert f"{layout[index]!r} is not a MIG profile of {name}" in message
    valid = message[message.index("(valid: ") + len("(valid: ") : message.rindex(")")]
    assert valid.split(", ") == list(model.mig.profiles)
    assert e.value.index == index


def _counts_pass(geo: cat.MigGeometry, layout: tuple[str, ...]) -> bool:
    """The count rules alone: compute and memory slices, one +me, NVIDIA's 4g + 3g rule."""
    profs = [geo.profiles[n] for n in layout]
    return (
        sum(p.compute for p in profs) <= geo.compute_slices
        and sum(p.memory for p in profs) <= geo.memory_slices
        and sum(p.media for p in profs) <= 1
        and not (geo.compute_slices == 7 and {3, 4} <= {p.compute for p in profs})
    )


def _multisets(geo: cat.MigGeometry, max_size: int) -> list[tuple[str, ...]]:
    names = sorted(geo.profiles)
    return [ms for k in range(max_size + 1) for ms in itertools.combinations_with_replacement(names, k)]


def test_no_catalogue_layout_passes_the_counts_yet_cannot_be_placed() -> None:
    """Exhaustive search (independent brute force below, every multiset up to the compute slices):
    on A30, A100-40GB, A100-80GB and H100-80GB, every layout that passes the slice counts, the one
    +me rule and the 4g + 3g rule can be placed at the driver's start offsets. Tight candidates
    such as 3x 1g.20gb + 2x 1g.10gb on an A100-80GB (8 memory slices, 1g.10gb never at slice 7) or
    2g.12gb + 2x 1g.6gb on an A30 fit once the 2-slice instances move. So the "cannot be placed"
    refusal never fires on real hardware here; its message is checked on a restricted geometry in
    the next test."""
    for name in MIG_MODELS:
        geo = cat.model(name).mig
        assert geo is not None
        candidates = [ms for ms in _multisets(geo, geo.compute_slices) if _counts_pass(geo, ms)]
        unplaceable = [ms for ms in candidates if not _brute(geo, ms)]
        assert unplaceable == [], name
    a100, a30 = cat.model("A100-80GB").mig, cat.model("A30").mig
    assert a100 is not None and a30 is not None
    assert _brute(a100, ("1g.20gb",) * 3 + ("1g.10gb",) * 2)
    assert _brute(a30, ("2g.12gb", "1g.6gb", "1g.6gb"))


def test_placement_failure_names_gpu_layout_and_the_allowed_offsets() -> None:
    """A layout within the slice counts that overlaps on every allowed placement (an A30 whose 2g
    instances could only start at slice 0) is refused with the offsets that made it impossible."""
    a30 = cat.model("A30")
    assert a30.mig is not None
    profiles = dict(a30.mig.profiles)
    profiles["2g.12gb"] = dataclasses.replace(profiles["2g.12gb"], starts=(0,))
    narrow = dataclasses.replace(a30, name="A30-narrow", mig=dataclasses.replace(a30.mig, profiles=profiles))
    layout = ["2g.12gb", "2g.12gb"]
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(narrow, layout)
    message = str(e.value)
    assert f"layout {_shown(layout)} cannot be placed on A30-narrow" in message
    assert "2g.12gb starts at {0} and spans 2" in message
    # The real A30 places the same layout at slices 0 and 2.
    assert [(p.profile, p.start) for p in mig.place(a30, layout)] == [("2g.12gb", 0), ("2g.12gb", 2)]


# --- the placement search is exact --------------------------------------------------------------


def _brute(geo: cat.MigGeometry, layout: tuple[str, ...]) -> bool:
    """Independent decision: backtrack over every start offset of every instance (memory slices as
    a bit mask, disjoint, inside the GPU), compute slices summed, at most one +me, and NVIDIA's
    4g + 3g rule stated for 7-slice GPUs."""
    profs = [geo.profiles[n] for n in layout]
    if sum(p.compute for p in profs) > geo.compute_slices or sum(p.media for p in profs) > 1:
        return False
    if geo.compute_slices == 7 and {3, 4} <= {p.compute for p in profs}:
        return False

    def fit(i: int, used: int) -> bool:
        if i == len(profs):
            return True
        p = profs[i]
        for s in p.starts:
            span = ((1 << p.memory) - 1) << s
            if s + p.memory <= geo.memory_slices and not used & span and fit(i + 1, used | span):
                return True
        return False

    return fit(0, 0)


@pytest.mark.parametrize("name", MIG_MODELS)
def test_validate_agrees_with_brute_force_on_every_multiset(name: str) -> None:
    """Every multiset of profiles up to one more instance than the GPU has compute slices: validate()
    accepts exactly what the brute force can place, in any order, and place() returns a real
    placement (allowed offsets, no shared memory slice, one instance per profile asked)."""
    model = cat.model(name)
    geo = model.mig
    assert geo is not None
    accepted = refused_within_compute = 0
    for ms in _multisets(geo, geo.compute_slices + 1):
        expected = _brute(geo, ms)
        for layout in (list(ms), list(reversed(ms))):
            try:
                placements = mig.place(model, layout)
            except mig.MigLayoutError:
                assert not expected, f"{name} {layout}: refused, but brute force places it"
                continue
            assert expected, f"{name} {layout}: accepted, but brute force cannot place it"
            assert Counter(p.profile for p in placements) == Counter(layout)
            used: list[int] = []
            for p in placements:
                prof = geo.profiles[p.profile]
                assert p.start in prof.starts and p.size == prof.memory
                used.extend(range(p.start, p.start + p.size))
            assert len(used) == len(set(used)) and all(0 <= s < geo.memory_slices for s in used)
        accepted += expected
        refused_within_compute += not expected and sum(geo.profiles[n].compute for n in ms) <= geo.compute_slices
    # Not vacuous: both answers occur, and some refusals are not just "too many compute slices".
    assert accepted > 10 and refused_within_compute > 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # NVIDIA MIG user guide, "Number of Instances Available" for A100-40GB, A100/H100-80GB and A30.
        ("A100-40GB",
         {"1g.5gb": 7, "1g.5gb+me": 1, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}),
        ("A100-80GB",
         {"1g.10gb": 7, "1g.10gb+me": 1, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}),
        ("H100-80GB",
         {"1g.10gb": 7, "1g.10gb+me": 1, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}),
        ("A30", {"1g.6gb": 4, "1g.6gb+me": 1, "2g.12gb": 2, "2g.12gb+me": 1, "4g.24gb": 1}),
    ],
)
def test_instances_of_one_profile_match_nvidia_documented_maximum(name: str, expected: dict[str, int]) -> None:
    model = cat.model(name)
    assert model.mig is not None
    got = {}
    for profile in model.mig.profiles:
        n = 0
        while True:
            try:
                mig.validate(model, [profile] * (n + 1))
            except mig.MigLayoutError:
                break
            n += 1
        got[profile] = n
    assert got == expected


# --- config names -------------------------------------------------------------------------------


def _valid_layouts(model: cat.AcceleratorModel) -> list[list[str]]:
    geo = model.mig
    assert geo is not None
    return [list(ms) for ms in _multisets(geo, geo.compute_slices) if ms and _brute(geo, ms)]


def _meaning(model: cat.AcceleratorModel, layouts: list[list[str] | None]) -> frozenset[Any]:
    """What mig-parted does with the entries (order of GPUs in an entry and of profiles ignored)."""
    out = set()
    for entry in mig.mig_parted_entries(model, layouts):
        e: dict[str, Any] = dict(entry)
        devices = e["devices"] if e["devices"] == "all" else tuple(e["devices"])
        mig_devices = frozenset((e.get("mig-devices") or {}).items())
        out.add((tuple(e["device-filter"]), devices, e["mig-enabled"], mig_devices))
    return frozenset(out)


def _node_layouts(model: cat.AcceleratorModel, rng: random.Random) -> list[list[list[str] | None]]:
    """Nodes of 1 to 8 GPUs: every valid layout on uniform nodes, and random mixed nodes (some with
    MIG off on some GPUs, some long enough to need the hash)."""
    valid = _valid_layouts(model)
    off: list[str] | None = None
    nodes: list[list[list[str] | None]] = [[layout] * n for layout in valid for n in (1, 2, 4, 8)]
    nodes += [[off], [off] * 4, [[], []]]
    pool: list[list[str] | None] = [*valid, None]
    for _ in range(1500):
        node = [rng.choice(pool) for _ in range(rng.randint(2, 8))]
        nodes.append(node)
        # The same node with each GPU's profiles in another order.
        nodes.append([None if x is None else rng.sample(x, len(x)) for x in node])
    return nodes


@pytest.mark.parametrize("name", ORACLE_MODELS)
def test_config_name_is_a_label_value_naming_exactly_one_config(name: str) -> None:
    """The name is the node's `nvidia.com/mig.config` label value and the key of the mig-parted
    config the MIG manager applies: it must be a valid label value (at most 63 characters of
    [A-Za-z0-9_.-], alphanumeric at both ends), the same for the same layout (profiles in any
    order), and different whenever mig-parted would do something different — the planner writes
    one config per name, so two layouts sharing a name would put one node on the other's layout."""
    model = cat.model(name)
    rng = random.Random(f"config-name-{name}")
    by_name: dict[str, frozenset[Any]] = {}
    by_meaning: dict[frozenset[Any], str] = {}
    hashed = 0
    for layouts in _node_layouts(model, rng):
        config = mig.config_name(model, layouts)
        assert config == mig.config_name(model, [None if x is None else list(x) for x in layouts])
        assert len(config) <= 63 and LABEL_VALUE.match(config), config
        assert config.startswith(f"aiinfn-{name.lower()}-") or config == "all-disabled"
        meaning = _meaning(model, layouts)
        assert by_name.setdefault(config, meaning) == meaning, f"{config} names two different configs"
        assert by_meaning.setdefault(meaning, config) == config, f"one config named {config} and {by_meaning[meaning]}"
        hashed += len(config) == 63
    assert hashed > 0  # the long names were exercised


def test_config_names_read_as_their_layout() -> None:
    """Short names stay readable, deployed names do not change, and `+me` is written `.me` like
    NVIDIA's own `all-1g.10gb.me`."""
    a100 = cat.model("A100-80GB")
    assert mig.config_name(a100, [["1g.10gb"] * 7] * 4) == "aiinfn-a100-80gb-1g.10gbx7"
    assert mig.config_name(cat.model("A30"), [["2g.12gb", "2g.12gb"]]) == "aiinfn-a30-2g.12gbx2"
    assert mig.config_name(a100, [["1g.10gb+me", "3g.40gb"]]) == "aiinfn-a100-80gb-1g.10gb.mex1_3g.40gbx1"
    assert (
        mig.config_name(a100, [["3g.40gb", "1g.10gb"], ["1g.10gb", "3g.40gb"]])
        == mig.config_name(a100, [["1g.10gb", "3g.40gb"]])
        == "aiinfn-a100-80gb-1g.10gbx1_3g.40gbx1"
    )
    assert mig.config_name(a100, [["7g.80gb"], None]) == "aiinfn-a100-80gb-7g.80gbx1--off"
