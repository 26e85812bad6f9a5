"""MIG: what the mutation run of catalogue/mig.py showed the catalogue tests left unsaid (docs/benchmarks.md).

* the mig-parted ``device-filter`` is written as NVIDIA's own config-default.yaml (mig-parted v0.15.0, read in
  place from ../shared) writes the same PCI IDs;
* a GPU with MIG off and a GPU with MIG on but no instance are different configs on one node;
* the config name (the ``nvidia.com/mig.config`` label value, which the MIG manager acts on: a new name
  re-partitions the node) is readable up to the label's 63 characters, cut tidily past them, and stable;
* the refusals read as a full sentence.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig

ORACLE_MODELS = ("A100-40GB", "A100-80GB", "A30", "H100-80GB")
#: The readable form the docstring of config_name promises: ``aiinfn-<model>-<profile>x<n>[_...][--...]``.
DIGEST = re.compile(r"-[0-9a-f]{10}$")


@pytest.fixture(scope="module")
def nvidia_filters(shared: Path) -> set[str]:
    """Every device-filter string of NVIDIA's stock configs, as NVIDIA writes it."""
    doc = YAML(typ="safe", pure=True).load(
        (shared / "schemas" / "mig-parted-v0.15.0" / "config-default.yaml").read_text())
    out: set[str] = set()
    for entries in doc["mig-configs"].values():
        for e in entries:
            f = e.get("device-filter")
            if f is not None:
                out.update(s.strip() for s in ([f] if isinstance(f, str) else f))
    return out


@pytest.mark.parametrize("name", ORACLE_MODELS)
def test_device_filter_is_written_as_nvidia_writes_the_same_ids(name: str, nvidia_filters: set[str]) -> None:
    model = cat.model(name)
    (entry,) = mig.mig_parted_entries(model, [None])
    written = entry["device-filter"]
    assert isinstance(written, list) and len(written) == len(model.device_ids)
    # NVIDIA's stock file filters by these IDs in this exact spelling (0x, device then vendor, upper case)
    assert set(written) <= nvidia_filters, sorted(set(written) - nvidia_filters)


def test_mig_off_and_mig_on_without_instances_are_two_configs_on_one_node() -> None:
    a100 = cat.model("A100-80GB")
    entries = mig.mig_parted_entries(a100, [None, [], ["7g.80gb"], None])
    assert [{k: v for k, v in e.items() if k != "device-filter"} for e in entries] == [
        {"devices": [0, 3], "mig-enabled": False},
        {"devices": [1], "mig-enabled": True, "mig-devices": {}},
        {"devices": [2], "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
    ]
    # and the names tell the two apart, as the docstring's scheme writes them
    assert mig.config_name(a100, [[], ["7g.80gb"]]) == "aiinfn-a100-80gb-empty--7g.80gbx1"
    assert mig.config_name(a100, [None, ["7g.80gb"]]) == "aiinfn-a100-80gb-off--7g.80gbx1"
    assert mig.config_name(a100, [[], []]) == "aiinfn-a100-80gb-empty"
    assert mig.config_name(a100, [[]]) != mig.config_name(a100, [None]) == "all-disabled"


def test_a_name_of_exactly_63_characters_stays_readable() -> None:
    a100 = cat.model("A100-80GB")
    layouts: list[list[str] | None] = [["1g.10gb", "1g.10gb+me"], ["1g.10gb+me", "1g.20gb"]]
    readable = "aiinfn-a100-80gb-1g.10gbx1_1g.10gb.mex1--1g.10gb.mex1_1g.20gbx1"
    assert len(readable) == 63
    assert mig.config_name(a100, layouts) == readable


def test_a_cut_name_ends_its_readable_part_cleanly_and_never_changes() -> None:
    """Past 63 characters: as much of the readable name as fits, no separator left dangling before the hash,
    and the name a deployed node carries stays what it was (a changed name re-partitions the node)."""
    a100 = cat.model("A100-80GB")
    layouts: list[list[str] | None] = [["1g.10gb"], ["1g.10gb"], ["1g.10gb+me"], ["1g.10gb+me"]]
    readable = "aiinfn-a100-80gb-1g.10gbx1--1g.10gbx1--1g.10gb.mex1--1g.10gb.mex1"
    name = mig.config_name(a100, layouts)
    assert len(name) <= 63 and DIGEST.search(name)
    head = DIGEST.sub("", name)
    assert readable.startswith(head) and head[-1].isalnum(), head
    # the cut fell on a separator of the readable name (so stripping it mattered)
    assert readable[len(head)] in "-_."
    assert name == "aiinfn-a100-80gb-1g.10gbx1--1g.10gbx1--1g.10gb.mex1-0a3477bc3f"


def test_a_placement_failure_lists_each_profiles_offsets_readably() -> None:
    a30 = cat.model("A30")
    assert a30.mig is not None
    profiles = dict(a30.mig.profiles)
    profiles["2g.12gb"] = dataclasses.replace(profiles["2g.12gb"], starts=(0,))
    profiles["1g.6gb"] = dataclasses.replace(profiles["1g.6gb"], starts=(0, 1))
    narrow = dataclasses.replace(a30, name="A30-narrow", mig=dataclasses.replace(a30.mig, profiles=profiles))
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(narrow, ["2g.12gb", "1g.6gb"])
    assert str(e.value) == (
        "layout [2g.12gb, 1g.6gb] cannot be placed on A30-narrow: the instances overlap on every placement "
        "the driver allows (2g.12gb starts at {0} and spans 2; 1g.6gb starts at {0,1} and spans 1)")


def test_two_media_extensions_are_refused_with_the_reason() -> None:
    with pytest.raises(mig.MigLayoutError) as e:
        mig.validate(cat.model("A30"), ["1g.6gb+me", "2g.12gb+me"])
    assert str(e.value) == (
        "layout [1g.6gb+me, 2g.12gb+me] on A30 has 2 media-extension (+me) profiles; "
        "a GPU has one set of media engines, so at most one +me profile")
    assert e.value.index is None


def test_placements_are_disjoint_and_at_allowed_offsets() -> None:
    """Whatever order the search tries, what it returns is a real placement: each instance at one of its
    profile's start offsets, inside the GPU, overlapping no other."""
    for name in ORACLE_MODELS:
        model = cat.model(name)
        assert model.mig is not None
        geo = model.mig
        for layout in (["1g.10gb"] * 7, ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"], ["4g.40gb", "3g.40gb"],
                       ["2g.12gb", "1g.6gb", "1g.6gb"], ["1g.5gb"] * 7, ["3g.20gb", "3g.20gb"]):
            if any(p not in geo.profiles for p in layout):
                continue
            try:
                placed = mig.place(model, layout)
            except mig.MigLayoutError:
                continue
            assert sorted(p.profile for p in placed) == sorted(layout)
            used: set[int] = set()
            for p in placed:
                prof = geo.profiles[p.profile]
                assert p.start in prof.starts and p.size == prof.memory
                span = set(range(p.start, p.start + p.size))
                assert max(span) < geo.memory_slices and not span & used, (name, layout, placed)
                used |= span
