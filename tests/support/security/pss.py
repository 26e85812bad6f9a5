"""The Pod Security Standards (``baseline`` and ``restricted``) as Kubernetes 1.33 enforces them.

A reading of the checks the pinned Kubernetes' Pod Security admission runs (the staging repository
k8s.io/pod-security-admission at its v0.33 tags, directory ``policy/``, and the published table at
kubernetes.io/docs/concepts/security/pod-security-standards), one function per check, each citing
its source file. PyPI has no implementation of these rules (searched: none of the packages named
for Pod Security or PSA is one), so this is ours; tests/security/test_pod_security.py holds it to the
examples the upstream tests use.

``violations(obj, level)`` takes any object holding a pod spec (Pod, Deployment, Job, CronJob ...)
as Pod Security admission does for workload resources, and returns one line per failed check.
Not modelled: the feature-gated relaxation for user-namespace pods (``hostUsers: false``), off by
default in 1.33, and exemptions configured in the API server (the rke2 role's business).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Pod = dict[str, Any]
Container = dict[str, Any]


def pod_specs(obj: dict[str, Any]) -> list[tuple[dict[str, Any], Pod]]:
    """(metadata, spec) of every pod template inside ``obj`` (the object itself for a Pod)."""
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind == "Pod":
        return [(obj.get("metadata", {}), spec)]
    if kind == "PodTemplate":
        t = obj.get("template", {})
        return [(t.get("metadata", {}), t.get("spec", {}))]
    if kind == "CronJob":
        t = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
        return [(t.get("metadata", {}), t.get("spec", {}))]
    if kind == "JobSet":
        out = []
        for r in spec.get("replicatedJobs", []):
            t = r.get("template", {}).get("spec", {}).get("template", {})
            out.append((t.get("metadata", {}), t.get("spec", {})))
        return out
    t = spec.get("template", {})
    return [(t.get("metadata", {}), t.get("spec", {}))]


def containers(spec: Pod) -> Iterator[Container]:
    """Init, regular and ephemeral containers (every check covers all three)."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(field) or []


def _sc(c: Container) -> dict[str, Any]:
    return c.get("securityContext") or {}


def _psc(spec: Pod) -> dict[str, Any]:
    return spec.get("securityContext") or {}


def _windows(spec: Pod) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


# --------------------------------------------------------------------------- baseline


def host_process(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_windowsHostProcess.go: windowsOptions.hostProcess must not be true."""
    bad = (_psc(spec).get("windowsOptions") or {}).get("hostProcess") is True or any(
        (_sc(c).get("windowsOptions") or {}).get("hostProcess") is True for c in containers(spec))
    return ["hostProcess"] if bad else []


def host_namespaces(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_hostNamespaces.go: hostNetwork, hostPID, hostIPC must be unset or false."""
    return [f"host namespaces ({f})" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]


def privileged(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_privileged.go: securityContext.privileged must be unset or false."""
    return [f"privileged ({c.get('name')})" for c in containers(spec) if _sc(c).get("privileged") is True]


#: policy/check_capabilities_baseline.go, capabilities_allowed_1_0.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def capabilities_baseline(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_capabilities_baseline.go: capabilities.add only from the default set."""
    out = []
    for c in containers(spec):
        added = set((_sc(c).get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"non-default capabilities {sorted(added - BASELINE_CAPABILITIES)} ({c.get('name')})")
    return out


def host_path_volumes(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_hostPathVolumes.go: no hostPath volume."""
    return [f"hostPath volume {v.get('name')}" for v in spec.get("volumes") or [] if "hostPath" in v]


def host_ports(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_hostPorts.go: hostPort unset or 0 (no known list is configured)."""
    return [f"hostPort {p['hostPort']} ({c.get('name')})" for c in containers(spec)
            for p in c.get("ports") or [] if p.get("hostPort")]


def app_armor(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_appArmorProfile.go: profile type RuntimeDefault or Localhost (or unset); the
    deprecated annotations only ``runtime/default`` or ``localhost/*``."""
    out = []
    for setter, sc in [("pod", _psc(spec)), *((c.get("name"), _sc(c)) for c in containers(spec))]:
        t = (sc.get("appArmorProfile") or {}).get("type")
        if t is not None and t not in ("RuntimeDefault", "Localhost"):
            out.append(f"appArmorProfile {t} ({setter})")
    for k, v in (meta.get("annotations") or {}).items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                v == "" or v == "runtime/default" or v.startswith("localhost/")):
            out.append(f"AppArmor annotation {k}={v}")
    return out


#: policy/check_seLinuxOptions.go, selinuxAllowedTypes1_31.
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def selinux(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_seLinuxOptions.go: type from the allowed set; user and role unset."""
    out = []
    for setter, sc in [("pod", _psc(spec)), *((c.get("name"), _sc(c)) for c in containers(spec))]:
        o = sc.get("seLinuxOptions") or {}
        if o.get("type", "") not in SELINUX_TYPES or o.get("user") or o.get("role"):
            out.append(f"seLinuxOptions ({setter})")
    return out


def proc_mount(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_procMount.go: procMount unset or Default."""
    return [f"procMount ({c.get('name')})" for c in containers(spec)
            if _sc(c).get("procMount") not in (None, "Default")]


def seccomp_baseline(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_seccompProfile_baseline.go: seccompProfile.type must not be Unconfined."""
    out = []
    for setter, sc in [("pod", _psc(spec)), *((c.get("name"), _sc(c)) for c in containers(spec))]:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"seccompProfile Unconfined ({setter})")
    return out


#: policy/check_sysctls.go, sysctlsAllowedV1Dot32 (the set in force at 1.33).
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def sysctls(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_sysctls.go: only the safe set."""
    return [f"sysctl {s.get('name')}" for s in _psc(spec).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]


BASELINE = [host_process, host_namespaces, privileged, capabilities_baseline, host_path_volumes, host_ports,
            app_armor, selinux, proc_mount, seccomp_baseline, sysctls]


# --------------------------------------------------------------------------- restricted


#: policy/check_restrictedVolumes.go, restrictedVolumes_1_0 (image volumes allowed as of 1.33).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                      "projected", "secret"}


def volume_types(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_restrictedVolumes.go: only the allowed volume sources."""
    out = []
    for v in spec.get("volumes") or []:
        sources = set(v) - {"name"}
        if not sources <= RESTRICTED_VOLUMES:
            out.append(f"volume {v.get('name')} of type {sorted(sources - RESTRICTED_VOLUMES)}")
    return out


def privilege_escalation(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_allowPrivilegeEscalation.go: allowPrivilegeEscalation must be false (1.25+: not
    for Windows pods)."""
    if _windows(spec):
        return []
    return [f"allowPrivilegeEscalation != false ({c.get('name')})" for c in containers(spec)
            if _sc(c).get("allowPrivilegeEscalation") is not False]


def run_as_non_root(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_runAsNonRoot.go: runAsNonRoot true on the pod or on every container, never false."""
    out = []
    pod_value = _psc(spec).get("runAsNonRoot")
    if pod_value is False:
        out.append("runAsNonRoot=false (pod)")
    for c in containers(spec):
        v = _sc(c).get("runAsNonRoot")
        if v is False:
            out.append(f"runAsNonRoot=false ({c.get('name')})")
        elif v is None and pod_value is not True:
            out.append(f"runAsNonRoot unset ({c.get('name')})")
    return out


def run_as_user(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_runAsUser.go (1.23+): runAsUser must not be 0."""
    out = ["runAsUser=0 (pod)"] if _psc(spec).get("runAsUser") == 0 else []
    return out + [f"runAsUser=0 ({c.get('name')})" for c in containers(spec) if _sc(c).get("runAsUser") == 0]


def seccomp_restricted(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_seccompProfile_restricted.go: RuntimeDefault or Localhost on the pod or on every
    container (1.25+: not for Windows pods)."""
    if _windows(spec):
        return []
    ok = ("RuntimeDefault", "Localhost")
    pod_type = (_psc(spec).get("seccompProfile") or {}).get("type")
    out = [f"seccompProfile {pod_type} (pod)"] if pod_type is not None and pod_type not in ok else []
    for c in containers(spec):
        t = (_sc(c).get("seccompProfile") or {}).get("type")
        if t is not None and t not in ok:
            out.append(f"seccompProfile {t} ({c.get('name')})")
        elif t is None and pod_type not in ok:
            out.append(f"seccompProfile unset ({c.get('name')})")
    return out


def capabilities_restricted(meta: dict[str, Any], spec: Pod) -> list[str]:
    """policy/check_capabilities_restricted.go: drop ALL, add at most NET_BIND_SERVICE (1.25+: not for
    Windows pods)."""
    if _windows(spec):
        return []
    out = []
    for c in containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"capabilities.drop lacks ALL ({c.get('name')})")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"capabilities.add {sorted(caps['add'])} ({c.get('name')})")
    return out


RESTRICTED = [*BASELINE, volume_types, privilege_escalation, run_as_non_root, run_as_user, seccomp_restricted,
              capabilities_restricted]
LEVELS = {"privileged": [], "baseline": BASELINE, "restricted": RESTRICTED}


def violations(obj: dict[str, Any], level: str) -> list[str]:
    """What Pod Security ``level`` (at Kubernetes 1.33) refuses in ``obj``; empty when it is admitted."""
    return [v for meta, spec in pod_specs(obj) for check in LEVELS[level] for v in check(meta, spec)]
