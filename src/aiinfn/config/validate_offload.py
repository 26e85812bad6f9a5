"""Cross-field rules of the batch service and the offload targets (called by ``validate.check``).

* the batch service authenticates its callers through the hub: it needs ``services.jupyterhub``;
* an offload target becomes a Node (``interlink-<target>``), a Kueue ResourceFlavor and a ClusterQueue
  (``offload-<target>``): their names must be valid and must not be a node's or a project's already;
* a target's per-job limits fit inside what it offers;
* offloaded accelerators are GPUs (interLink's virtual node advertises ``nvidia.com/gpu``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..catalogue import accelerators as cat
from ..errors import ConfigError
from ..planning.labels import virtual_node_name
from ..planning.nodes import inventory
from .models import Environment

#: Prefix of the offload targets' Kueue ResourceFlavor and ClusterQueue names.
OFFLOAD_PREFIX = "offload-"
MAX_NAME = 63
#: The extended resource interLink 0.6 advertises GPUs of a virtual node as.
GPU_RESOURCE = "nvidia.com/gpu"


def offload_queue_name(target: str) -> str:
    """The ResourceFlavor and ClusterQueue of offload target ``target``."""
    return f"{OFFLOAD_PREFIX}{target}"


def _fail(path: str, message: str, *related: str) -> None:
    raise ConfigError(message, path=path, related=related)


def check(env: Environment) -> None:
    batch = env.services.batch
    if batch is not None and env.services.jupyterhub is None:
        _fail("services.batch", "the batch service authenticates users through the hub: configure "
              "services.jupyterhub too (or remove services.batch)", "services.jupyterhub")
    nodes = {n.name for n in inventory(env)}
    for name, target in env.offload.targets.items():
        base = f"offload.targets.{name}"
        node = virtual_node_name(name)
        if len(node) > MAX_NAME or len(offload_queue_name(name)) > MAX_NAME:
            _fail(base, f"the target's virtual node {node!r} would be longer than {MAX_NAME} characters: "
                  f"use a name of at most {MAX_NAME - len(node) + len(name)}")
        if node in nodes:
            _fail(base, f"its virtual node {node!r} would have the name of a node of the site: rename the target",
                  "node_pools")
        if offload_queue_name(name) in env.projects:
            _fail(base, f"its ClusterQueue {offload_queue_name(name)!r} is the name of a project's queue: rename "
                  "the target or the project", f"projects.{offload_queue_name(name)}")
        if urlsplit(target.endpoint).path not in ("", "/"):
            _fail(f"{base}.endpoint", "give the interLink API as https://host[:port]: a virtual kubelet takes no path")
        limits = target.limits
        if limits.max_cpu is not None and limits.max_cpu > target.cpu:
            _fail(f"{base}.limits.max_cpu", f"{limits.max_cpu} CPU per job is more than the target offers in all "
                  f"({target.cpu}): lower it", f"{base}.cpu")
        if limits.max_memory_gb is not None and limits.max_memory_gb > target.memory_gb:
            _fail(f"{base}.limits.max_memory_gb", f"{limits.max_memory_gb} GB per job is more than the target "
                  f"offers in all ({target.memory_gb} GB): lower it", f"{base}.memory_gb")
        for model in target.accelerators:
            if cat.model(model).resource != GPU_RESOURCE:
                _fail(f"{base}.accelerators.{model}", f"{model} is offered as {cat.model(model).resource}; interLink's "
                      f"virtual node advertises GPUs as {GPU_RESOURCE} only: offload GPU models")
