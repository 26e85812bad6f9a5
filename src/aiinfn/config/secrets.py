"""Where an environment refers to secrets: the names of Pulumi config secrets it needs."""

from __future__ import annotations

from pydantic import BaseModel


def secret_refs(model: BaseModel, prefix: str = "") -> dict[str, str]:
    """Every ``*_secret`` field of the environment: field path -> Pulumi config key it names."""
    out: dict[str, str] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(value, BaseModel):
            out.update(secret_refs(value, path))
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, BaseModel):
                    out.update(secret_refs(v, f"{path}.{k}"))
        elif name.endswith("_secret") and isinstance(value, str):
            out[path] = value
    return out
