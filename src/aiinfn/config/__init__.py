"""Environment model: loading, layering and validation of environments/*.yaml."""

from .loader import list_environments, load, project_root, resolve
from .models import Environment

__all__ = ["Environment", "list_environments", "load", "project_root", "resolve"]
