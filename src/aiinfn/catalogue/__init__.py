"""Accelerator catalogue: GPU and FPGA models, PCI IDs, MIG geometry and layouts."""

from .accelerators import MODELS, AcceleratorModel, DeviceClass, MigGeometry, MigProfile, model, model_names
from .mig import MigLayoutError, Placement, config_name, mig_parted_entries, place, validate

__all__ = [
    "MODELS",
    "AcceleratorModel",
    "DeviceClass",
    "MigGeometry",
    "MigLayoutError",
    "MigProfile",
    "Placement",
    "config_name",
    "mig_parted_entries",
    "model",
    "model_names",
    "place",
    "validate",
]
