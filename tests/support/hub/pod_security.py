"""Pod Security Standards, level ``restricted`` (Kubernetes 1.33), for a pod spec as sent to the API.

No API server runs here, so no admission plugin can judge a pod: this is the published rule list of
the ``restricted`` profile (which includes ``baseline``), written out check by check, for the fields a
pod spec can carry. ``violations(pod_spec)`` returns one line per broken rule (empty: the pod fits).
Gap: AppArmor/SELinux/sysctl/procMount rules are checked only for the values the platform could set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Volume types ``restricted`` allows.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}
#: Capabilities ``baseline`` lets a container add; ``restricted`` allows only NET_BIND_SERVICE.
RESTRICTED_ADD = {"NET_BIND_SERVICE"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name')}]", c


def violations(spec: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{key} is set")
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {v.get('name')}: type {sorted(kinds - ALLOWED_VOLUMES)} not allowed")
    pod_nonroot = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        out.append(f"pod seccompProfile {pod_seccomp}")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    for name, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and not pod_nonroot):
            out.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in SECCOMP_OK:
            out.append(f"{name}: seccompProfile is {seccomp} (RuntimeDefault or Localhost needed)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities do not drop ALL")
        added = set(caps.get("add") or []) - RESTRICTED_ADD
        if added:
            out.append(f"{name}: adds capabilities {sorted(added)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount {sc['procMount']}")
    return out
