"""Environment model: loading, layering and validation of environments/*.yaml (see loader.load)."""
