"""Accelerator catalogue facts: PCI IDs, vendors, MIG profile geometry, names, aliases and the
Kubernetes resource names the rest of the toolkit takes from here."""

from __future__ import annotations

import re

import pytest

from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue.accelerators import DeviceClass

HEX4 = re.compile(r"^[0-9a-f]{4}$")
PROFILE_NAME = re.compile(r"^(?P<compute>[1-9][0-9]*)g\.(?P<gb>[1-9][0-9]*)gb(?P<me>\+me)?$")
#: The name part of a Kubernetes extended resource (a qualified name; NVIDIA's device plugin also
#: requires it to be a DNS subdomain).
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
VENDORS = {"10de": "NVIDIA", "10ee": "AMD/Xilinx"}
MODELS = list(cat.MODELS.values())
MIG_MODELS = [m for m in MODELS if m.mig is not None]


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.name)
def test_pci_ids_are_four_lowercase_hex_digits(m: cat.AcceleratorModel) -> None:
    """Nova's PCI alias and mig-parted's device filter are built from these: `lspci -nn` form."""
    assert HEX4.match(m.vendor_id), m.vendor_id
    assert m.device_ids and all(HEX4.match(d) for d in m.device_ids), m.device_ids
    assert len(set(m.device_ids)) == len(m.device_ids)
    assert m.pci_ids() == [f"{m.vendor_id}:{d}" for d in m.device_ids]


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.name)
def test_vendor_is_nvidia_for_gpus_and_xilinx_for_fpgas(m: cat.AcceleratorModel) -> None:
    assert m.vendor_id in VENDORS
    assert m.vendor_id == {DeviceClass.GPU: "10de", DeviceClass.FPGA: "10ee"}[m.device_class]
    assert not m.mig_capable or m.vendor_id == "10de"  # MIG is NVIDIA's


def test_no_two_models_share_a_pci_id() -> None:
    """A device ID names one model: otherwise a passthrough alias or a MIG device filter would
    match the wrong card."""
    owners: dict[str, str] = {}
    for m in MODELS:
        for pci in m.pci_ids():
            assert owners.setdefault(pci, m.name) == m.name, f"{pci}: {owners[pci]} and {m.name}"


def test_known_pci_ids() -> None:
    """Spot checks against the PCI ID database (pci.ids): 10de:20b5 A100 PCIe 80GB (the card the
    local OpenStack fixture fakes), 10de:20b7 A30, 10de:2331 H100 PCIe, 10de:1eb8 Tesla T4,
    10de:20f1 and 10de:20b1 A100 PCIe 40GB."""
    assert "10de:20b5" in cat.model("A100-80GB").pci_ids()
    assert cat.model("A30").pci_ids() == ["10de:20b7"]
    assert "10de:2331" in cat.model("H100-80GB").pci_ids()
    assert cat.model("T4").pci_ids() == ["10de:1eb8"]
    assert {"10de:20f1", "10de:20b1"} <= set(cat.model("A100-40GB").pci_ids())


@pytest.mark.parametrize("m", MIG_MODELS, ids=lambda m: m.name)
def test_mig_profile_memory_is_its_share_of_the_gpu(m: cat.AcceleratorModel) -> None:
    """memory_gb = memory slices x (GPU memory / memory slices), and the name says the same."""
    geo = m.mig
    assert geo is not None
    assert m.memory_gb % geo.memory_slices == 0
    per_slice = m.memory_gb // geo.memory_slices
    for p in geo.profiles.values():
        assert 1 <= p.memory <= geo.memory_slices and 1 <= p.compute <= geo.compute_slices, p.name
        assert p.memory_gb == p.memory * per_slice, p.name
        match = PROFILE_NAME.match(p.name)
        assert match, p.name
        assert int(match["compute"]) == p.compute, p.name
        assert int(match["gb"]) == p.memory_gb, p.name
        assert (match["me"] is not None) == p.media, p.name


@pytest.mark.parametrize("m", MIG_MODELS, ids=lambda m: m.name)
def test_mig_profile_geometry(m: cat.AcceleratorModel) -> None:
    """Start offsets lie inside the GPU and are aligned to the instance size (as `nvidia-smi mig
    -lgipp` lists them); one profile takes the whole GPU; every `+me` profile is its plain twin
    plus the media engines."""
    geo = m.mig
    assert geo is not None
    for p in geo.profiles.values():
        assert p.starts and len(set(p.starts)) == len(p.starts), p.name
        for s in p.starts:
            assert s >= 0 and s + p.memory <= geo.memory_slices, (p.name, s)
            assert s % p.memory == 0, (p.name, s)
        if p.media:
            twin = geo.profiles[p.name.removesuffix("+me")]
            assert (twin.compute, twin.memory, twin.starts, twin.media) == (p.compute, p.memory, p.starts, False)
    whole = [p for p in geo.profiles.values() if (p.compute, p.memory) == (geo.compute_slices, geo.memory_slices)]
    assert [p.memory_gb for p in whole] == [m.memory_gb]


def test_mig_geometry_by_model() -> None:
    """A100 and H100 have 7 compute and 8 memory slices, the A30 4 and 4 (NVIDIA MIG user guide);
    GPUs without MIG have no geometry."""
    shape = {m.name: (m.mig.compute_slices, m.mig.memory_slices) for m in MIG_MODELS if m.mig}
    assert shape == {"A30": (4, 4), "A100-40GB": (7, 8), "A100-80GB": (7, 8), "H100-80GB": (7, 8)}
    assert {m.name for m in MODELS if not m.mig_capable} == {"T4", "RTX5000", "V70"}


def test_model_resolves_names_and_aliases() -> None:
    assert cat.model("A100-80GB") is cat.MODELS["A100-80GB"]
    assert cat.model("Tesla-T4") is cat.MODELS["T4"]
    assert cat.model("Quadro-RTX-5000") is cat.model("RTX-5000") is cat.MODELS["RTX5000"]
    assert cat.model("Alveo-V70") is cat.MODELS["V70"]
    for m in MODELS:
        assert cat.model(m.name) is m
        for alias in m.aliases:
            assert cat.model(alias) is m, alias
    with pytest.raises(KeyError):
        cat.model("A100")
    assert cat.model_names() == list(cat.MODELS)


def test_aliases_are_unambiguous() -> None:
    """No alias repeats another model's name or alias, so `model()` cannot pick the wrong one."""
    seen: dict[str, str] = {m.name: m.name for m in MODELS}
    for m in MODELS:
        for alias in m.aliases:
            assert seen.setdefault(alias, m.name) == m.name, f"{alias}: {seen[alias]} and {m.name}"


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.name)
def test_whole_device_resource_names(m: cat.AcceleratorModel) -> None:
    """NVIDIA GPUs are requested as `nvidia.com/gpu` (the device plugin's whole-GPU resource); other
    devices under their vendor's domain, never NVIDIA's. The product label is a valid label value."""
    prefix, _, name = m.resource.partition("/")
    assert DNS_SUBDOMAIN.match(prefix) and QUALIFIED_NAME.match(name) and len(name) <= 63, m.resource
    if m.vendor_id == "10de":
        assert m.resource == "nvidia.com/gpu"
    else:
        assert not m.resource.startswith("nvidia.com/")
    assert len(m.product_label) <= 63 and LABEL_VALUE.match(m.product_label), m.product_label


@pytest.mark.parametrize("m", MIG_MODELS, ids=lambda m: m.name)
def test_mixed_strategy_mig_resource_names(m: cat.AcceleratorModel) -> None:
    """In the `mixed` strategy NVIDIA's device plugin advertises each profile as
    `nvidia.com/mig-<profile>` with `+` written `.` (it builds the name as
    ``strings.ReplaceAll("mig-"+profile, "+", ".")``): `nvidia.com/mig-1g.10gb.me`. The name must be
    valid and tell the profiles of one GPU apart."""
    assert m.mig is not None
    names = {}
    for p in m.mig.profiles.values():
        resource = f"nvidia.com/{p.resource_suffix}"
        assert resource == "nvidia.com/mig-" + p.name.replace("+", ".")
        suffix = p.resource_suffix
        assert QUALIFIED_NAME.match(suffix) and DNS_SUBDOMAIN.match(suffix) and len(suffix) <= 63, suffix
        names[resource] = p.name
    assert len(names) == len(m.mig.profiles)
    if m.name == "A100-80GB":
        assert names["nvidia.com/mig-1g.10gb.me"] == "1g.10gb+me"
        assert names["nvidia.com/mig-3g.40gb"] == "3g.40gb"
