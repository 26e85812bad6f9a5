"""The MIG catalogue against NVIDIA's own mig-parted v0.15.0 stock configs (the oracle).

Every config NVIDIA ships that applies to an A100-40GB, A100-80GB, A30 or H100-80GB must be
accepted by the catalogue and reproduced in mig-parted format; layouts the hardware cannot hold
must be refused with a message naming the GPU, the layout and why. The oracle file is read in place
from ../shared/schemas (never copied into the project).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig

ORACLE_MODELS = ("A100-40GB", "A100-80GB", "A30", "H100-80GB")


def _pci(model: cat.AcceleratorModel) -> set[str]:
    return {f"0x{d}{model.vendor_id}".upper().replace("0X", "0x") for d in model.device_ids}


def _filters(entry: dict[str, Any]) -> set[str] | None:
    f = entry.get("device-filter")
    if f is None:
        return None
    items = [f] if isinstance(f, str) else list(f)
    return {i.upper().replace("0X", "0x") for i in items}


def _applies(model: cat.AcceleratorModel, entry: dict[str, Any]) -> bool:
    """Does mig-parted apply this entry to `model`? By device filter, else by profile names."""
    assert model.mig is not None
    filt = _filters(entry)
    if filt is not None:
        return bool(_pci(model) & filt)
    devices = entry.get("mig-devices") or {}
    return bool(devices) and all(p in model.mig.profiles for p in devices)


@pytest.fixture(scope="module")
def oracle(shared: Path) -> dict[str, list[dict[str, Any]]]:
    path = shared / "schemas" / "mig-parted-v0.15.0" / "config-default.yaml"
    doc = YAML(typ="safe", pure=True).load(path.read_text())
    assert doc["version"] == "v1"
    return doc["mig-configs"]


@pytest.fixture(scope="module")
def checked(oracle: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Model -> names of the stock configs applied to it (each checked below)."""
    out: dict[str, list[str]] = {m: [] for m in ORACLE_MODELS}
    for name, entries in oracle.items():
        for entry in entries:
            if not entry.get("mig-enabled") or not entry.get("mig-devices"):
                continue
            for m in ORACLE_MODELS:
                if _applies(cat.model(m), entry):
                    out[m].append(name)
    return out


def test_every_stock_config_for_our_gpus_is_accepted_and_reproduced(oracle: dict[str, list[dict[str, Any]]]) -> None:
    for name, entries in oracle.items():
        for entry in entries:
            if not entry.get("mig-enabled") or not entry.get("mig-devices"):
                continue
            for m in ORACLE_MODELS:
                model = cat.model(m)
                if not _applies(model, entry):
                    continue
                layout = mig.expand(entry["mig-devices"])
                try:
                    mig.validate(model, layout)
                except mig.MigLayoutError as e:  # pragma: no cover - the failure message is the point
                    pytest.fail(f"NVIDIA's {name} for {m} refused: {e}")
                rendered = mig.mig_parted_entries(model, [layout] * 4)
                assert len(rendered) == 1
                assert rendered[0]["devices"] == "all"
                assert rendered[0]["mig-enabled"] is True
                assert rendered[0]["mig-devices"] == {k: int(v) for k, v in entry["mig-devices"].items()}
                assert set(rendered[0]["device-filter"]) == {f"0x{d.upper()}{model.vendor_id.upper()}"
                                                              for d in model.device_ids}


def test_the_oracle_is_not_vacuous(checked: dict[str, list[str]]) -> None:
    """Exactly the stock configs NVIDIA lists for each model were checked (counts from the file:
    A100-40GB: 1g.5gb, 1g.5gb.me, 1g.10gb, 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb, balanced;
    A100-80GB and H100-80GB: 1g.10gb, 1g.10gb.me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb, balanced;
    A30: 1g.6gb, 1g.6gb.me, 2g.12gb, 2g.12gb.me, 4g.24gb, balanced)."""
    assert sorted(checked["A100-40GB"]) == sorted(
        ["all-1g.5gb", "all-1g.5gb.me", "all-1g.10gb", "all-2g.10gb", "all-3g.20gb", "all-4g.20gb",
         "all-7g.40gb", "all-balanced"])
    for m in ("A100-80GB", "H100-80GB"):
        assert sorted(checked[m]) == sorted(
            ["all-1g.10gb", "all-1g.10gb.me", "all-1g.20gb", "all-2g.20gb", "all-3g.40gb", "all-4g.40gb",
             "all-7g.80gb", "all-balanced"]), m
    assert sorted(checked["A30"]) == sorted(
        ["all-1g.6gb", "all-1g.6gb.me", "all-2g.12gb", "all-2g.12gb.me", "all-4g.24gb", "all-balanced"])


def test_disabled_configs_render_as_disabled(oracle: dict[str, list[dict[str, Any]]]) -> None:
    assert oracle["all-disabled"][0]["mig-enabled"] is False
    for m in ORACLE_MODELS:
        (entry,) = mig.mig_parted_entries(cat.model(m), [None, None])
        assert entry["mig-enabled"] is False and "mig-devices" not in entry and entry["devices"] == "all"


@pytest.mark.parametrize(
    ("model", "layout", "expected"),
    [
        ("A100-80GB", ["3g.30gb"], "'3g.30gb' is not a MIG profile of A100-80GB (valid: 1g.10gb,"),
        ("A100-80GB", ["1g.10gb"] * 8, "needs 8 compute slices but A100-80GB has 7"),
        ("A100-40GB", ["1g.5gb"] * 8, "needs 8 compute slices but A100-40GB has 7"),
        ("H100-80GB", ["1g.10gb"] * 8, "needs 8 compute slices but H100-80GB has 7"),
        ("A100-80GB", ["4g.40gb", "4g.40gb"], "needs 8 compute slices"),
        ("A100-40GB", ["4g.20gb", "3g.20gb"], "NVIDIA does not support 4g + 3g instances together on A100-40GB"),
        ("A100-80GB", ["1g.10gb+me", "1g.10gb+me"], "at most one +me profile"),
        ("A30", ["1g.6gb"] * 5, "needs 5 compute slices but A30 has 4"),
        ("A30", ["2g.12gb"] * 3, "needs 6 compute slices but A30 has 4"),
        ("A30", ["2g.12gb+me", "1g.6gb+me"], "at most one +me profile"),
        ("A100-80GB", ["1g.20gb"] * 5, "needs 10 memory slices but A100-80GB has 8"),
    ],
)
def test_impossible_layouts_are_refused_with_the_reason(model: str, layout: list[str], expected: str) -> None:
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(cat.model(model), layout)
    assert expected in str(e.value)
    assert model in str(e.value)


def test_placements_returned_are_real_driver_placements() -> None:
    """place() returns, for an accepted layout, one instance per profile at an offset the driver
    allows, with no two instances sharing a memory slice (what nvidia-smi would be asked for).

    For the geometries in the catalogue, brute force (below) finds no multiset that passes the
    slice counts and the 4g+3g rule yet cannot be placed; the search is kept exact anyway."""
    for name in ("A100-40GB", "A100-80GB", "H100-80GB", "A30"):
        model = cat.model(name)
        assert model.mig is not None
        placed = 0
        for layout in (["3g.40gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"], ["2g.20gb"] * 3 + ["1g.20gb"],
                       ["1g.6gb", "1g.6gb", "2g.12gb"], ["3g.20gb", "2g.10gb", "1g.10gb"]):
            try:
                placements = mig.place(model, layout)
            except mig.MigLayoutError:
                continue
            assert sorted(p.profile for p in placements) == sorted(layout)
            used: list[int] = []
            for p in placements:
                prof = model.mig.profiles[p.profile]
                assert p.start in prof.starts and p.size == prof.memory
                used.extend(range(p.start, p.start + p.size))
            assert len(used) == len(set(used)) and max(used) < model.mig.memory_slices
            placed += 1
        assert placed >= 1, name


def test_gpus_without_mig_are_refused() -> None:
    for m in ("T4", "RTX5000", "V70"):
        with pytest.raises(mig.MigLayoutError, match="does not support MIG"):
            mig.validate(cat.model(m), ["1g.10gb"])


def _brute_force(model: cat.AcceleratorModel, layout: tuple[str, ...]) -> bool:
    """Independent check: try every start offset of every instance."""
    geo = model.mig
    assert geo is not None
    profiles = [geo.profiles[p] for p in layout]
    if sum(p.media for p in profiles) > 1 or sum(p.compute for p in profiles) > geo.compute_slices:
        return False
    if any(bad <= {p.compute for p in profiles} for bad in geo.forbidden_together):
        return False
    for starts in itertools.product(*[p.starts for p in profiles]):
        used: list[int] = []
        for p, s in zip(profiles, starts, strict=True):
            used.extend(range(s, s + p.memory))
        if max(used, default=0) < geo.memory_slices and len(used) == len(set(used)):
            return True
    return not profiles


@pytest.mark.parametrize("name", [m for m in cat.MODELS if cat.MODELS[m].mig_capable])
def test_placement_search_agrees_with_brute_force_on_every_multiset(name: str) -> None:
    model = cat.model(name)
    assert model.mig is not None
    names = sorted(model.mig.profiles)
    accepted = 0
    for size in range(1, model.mig.compute_slices + 1):
        for layout in itertools.combinations_with_replacement(names, size):
            expected = _brute_force(model, layout)
            try:
                mig.validate(model, layout)
                got = True
            except mig.MigLayoutError:
                got = False
            assert got == expected, f"{name} {layout}: search says {got}, brute force {expected}"
            accepted += got
    assert accepted > 10


def test_profile_facts_are_consistent() -> None:
    for m in cat.MODELS.values():
        assert m.vendor_id in ("10de", "10ee")
        for d in m.device_ids:
            assert len(d) == 4 and d == d.lower() and int(d, 16) >= 0
        if m.mig is None:
            continue
        per_slice = m.memory_gb // m.mig.memory_slices
        for p in m.mig.profiles.values():
            assert p.name.startswith(f"{p.compute}g.{p.memory * per_slice}gb")
            assert p.memory_gb == p.memory * per_slice
            assert p.name.endswith("+me") == p.media
            assert all(s >= 0 and s + p.memory <= m.mig.memory_slices for s in p.starts)
            # `+` cannot appear in a resource name: the device plugin writes it as `.`
            assert p.resource_suffix == "mig-" + p.name.replace("+", ".")


def test_config_names_are_valid_label_values_and_stable() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for m in (cat.model(x) for x in ORACLE_MODELS):
        assert m.mig is not None
        for a, b in itertools.product(m.mig.profiles, repeat=2):
            layout = [a, b]
            try:
                mig.validate(m, layout)
            except mig.MigLayoutError:
                continue
            name = mig.config_name(m, [layout, layout])
            assert name == mig.config_name(m, [list(layout), list(layout)])
            assert len(name) <= 63 and all(c.isalnum() or c in "-_." for c in name), name
            key = (m.name, tuple(sorted(Counter(layout).items())))
            assert seen.setdefault(name, key) == key, f"{name} names two layouts"
