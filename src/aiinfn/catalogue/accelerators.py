"""Accelerator facts: the GPU and FPGA models the platform serves.

Every number here is a hardware fact (PCI IDs, memory, MIG geometry) and is the single source the
rest of the toolkit reads: flavors take their PCI alias from here, the planner its capacity, the
overlay its Kubernetes resource names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class DeviceClass(StrEnum):
    """What a model is: a GPU or an FPGA (the label ``aiinfn.infn.it/accelerator-kind``)."""

    GPU = "gpu"
    FPGA = "fpga"


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile, e.g. ``3g.40gb`` on an A100-80GB.

    ``compute`` and ``memory`` count slices; ``starts`` are the memory-slice indexes at which the
    driver may place the instance (``nvidia-smi mig -lgipp``); ``media`` marks ``+me`` profiles,
    which take the GPU's single set of media engines (at most one per GPU).
    """

    name: str
    compute: int
    memory: int
    starts: tuple[int, ...]
    memory_gb: int
    media: bool = False

    @property
    def resource_suffix(self) -> str:
        """The suffix of the Kubernetes extended resource in the `mixed` strategy (``mig-<name>``).

        NVIDIA's device plugin writes ``+`` as ``.`` (``+`` is invalid in a resource name), so
        ``1g.10gb+me`` is advertised as ``nvidia.com/mig-1g.10gb.me``.
        """
        return "mig-" + self.name.replace("+", ".")


@dataclass(frozen=True)
class MigGeometry:
    """How a MIG-capable GPU is sliced: slice counts, profiles and combinations the driver refuses."""

    compute_slices: int
    memory_slices: int
    profiles: dict[str, MigProfile]
    #: Sets of profile sizes (compute slices) that NVIDIA documents as unsupported together even
    #: though they would fit the slice model (e.g. 4g + 3g on the 7-slice GPUs).
    forbidden_together: tuple[frozenset[int], ...] = ()


@dataclass(frozen=True)
class AcceleratorModel:
    """A GPU or FPGA model as passed through to a VM."""

    name: str
    device_class: DeviceClass
    vendor_id: str
    device_ids: tuple[str, ...]
    memory_gb: int
    #: Nova PCI alias the catalogue proposes; a site may name its own in `site.pci_aliases`.
    default_alias: str
    #: Kubernetes extended resource a whole device yields.
    resource: str
    #: Value of the node label that selects this model (GPU feature discovery's product label
    #: for NVIDIA; our own label for FPGAs).
    product_label: str
    mig: MigGeometry | None = None
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def mig_capable(self) -> bool:
        return self.mig is not None

    def pci_ids(self) -> list[str]:
        return [f"{self.vendor_id}:{d}" for d in self.device_ids]


def _profiles(*items: MigProfile) -> dict[str, MigProfile]:
    return {p.name: p for p in items}


def _seven_slice(gb_per_slice: int) -> MigGeometry:
    """The 7-compute / 8-memory-slice geometry of A100 and H100 (GA100 / GH100)."""
    g = gb_per_slice

    def p(c: int, m: int, starts: tuple[int, ...], media: bool = False) -> MigProfile:
        name = f"{c}g.{m * g}gb" + ("+me" if media else "")
        return MigProfile(name, c, m, starts, m * g, media)

    seven = tuple(range(7))
    return MigGeometry(
        compute_slices=7,
        memory_slices=8,
        profiles=_profiles(
            p(1, 1, seven),
            p(1, 1, seven, media=True),
            p(1, 2, (0, 2, 4, 6)),
            p(2, 2, (0, 2, 4)),
            p(3, 4, (0, 4)),
            p(4, 4, (0,)),
            MigProfile(f"7g.{8 * g}gb", 7, 8, (0,), 8 * g),
        ),
        forbidden_together=(frozenset({4, 3}),),
    )


def _a30() -> MigGeometry:
    def p(c: int, starts: tuple[int, ...], media: bool = False) -> MigProfile:
        return MigProfile(f"{c}g.{c * 6}gb" + ("+me" if media else ""), c, c, starts, c * 6, media)

    return MigGeometry(
        compute_slices=4,
        memory_slices=4,
        profiles=_profiles(
            p(1, (0, 1, 2, 3)),
            p(1, (0, 1, 2, 3), media=True),
            p(2, (0, 2)),
            p(2, (0, 2), media=True),
            p(4, (0,)),
        ),
    )


MODELS: dict[str, AcceleratorModel] = {
    m.name: m
    for m in (
        AcceleratorModel(
            "T4", DeviceClass.GPU, "10de", ("1eb8",), 16, "t4", "nvidia.com/gpu", "Tesla-T4",
            aliases=("Tesla-T4",),
        ),
        AcceleratorModel(
            "RTX5000", DeviceClass.GPU, "10de", ("1eb0",), 16, "rtx5000", "nvidia.com/gpu", "Quadro-RTX-5000",
            aliases=("Quadro-RTX-5000", "RTX-5000"),
        ),
        AcceleratorModel(
            "A30", DeviceClass.GPU, "10de", ("20b7",), 24, "a30", "nvidia.com/gpu", "NVIDIA-A30", mig=_a30(),
        ),
        AcceleratorModel(
            "A100-40GB", DeviceClass.GPU, "10de", ("20f1", "20b0", "20b1"), 40, "a100-40gb", "nvidia.com/gpu",
            "NVIDIA-A100-PCIE-40GB", mig=_seven_slice(5),
        ),
        AcceleratorModel(
            "A100-80GB", DeviceClass.GPU, "10de", ("20b5", "20b2"), 80, "a100-80gb", "nvidia.com/gpu",
            "NVIDIA-A100-80GB-PCIe", mig=_seven_slice(10),
        ),
        AcceleratorModel(
            "H100-80GB", DeviceClass.GPU, "10de", ("2331", "2330"), 80, "h100-80gb", "nvidia.com/gpu",
            "NVIDIA-H100-PCIe", mig=_seven_slice(10),
        ),
        AcceleratorModel(
            "V70", DeviceClass.FPGA, "10ee", ("5094",), 16, "alveo-v70", "amd.com/xilinx-v70", "Alveo-V70",
            aliases=("Alveo-V70",),
            notes="PCI device ID to be confirmed on the host with `lspci -nn -d 10ee:`; the site's "
            "Nova alias is authoritative.",
        ),
    )
}


def model(name: str) -> AcceleratorModel:
    """The catalogue entry for ``name`` (or one of its aliases); KeyError if unknown."""
    if name in MODELS:
        return MODELS[name]
    for m in MODELS.values():
        if name in m.aliases:
            return m
    raise KeyError(name)


def model_names() -> list[str]:
    return list(MODELS)


def pci_alias_spec(aliases: Mapping[str, int]) -> str | None:
    """Nova's ``pci_passthrough:alias`` flavor extra spec: ``alias:count[,alias:count]``, sorted by alias.

    The one writer of the format: the stacks put it on the flavors they manage, preflight compares a
    site's flavors with it. None when there is nothing to pass through.
    """
    return ",".join(f"{alias}:{count}" for alias, count in sorted(aliases.items())) or None
