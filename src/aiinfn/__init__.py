"""aiinfn: infrastructure as code for the AI_INFN federated GPU platform."""

__version__ = "0.1.0"
