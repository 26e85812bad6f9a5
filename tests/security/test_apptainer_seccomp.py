"""Apptainer in notebooks under Pod Security ``restricted``: the Localhost seccomp profile (aiinfn.images.seccomp)
and the notebook pod that selects it.

Checked as data, since no kubelet, containerd or kernel enforcement runs here: the profile is in the format
containerd reads (the OCI/Docker seccomp JSON its CRI plugin loads for ``Localhost``) and differs from the
RuntimeDefault baseline only by the calls Apptainer's unprivileged mode needs; the role installs that exact
file (tests/integration/hosts/test_role_rke2_userns.py); the notebook pod of an image with Apptainer passes
the 1.33 ``restricted`` checks (tests/support/security/pss.py) with it, and any other image keeps
RuntimeDefault. Gap: the baseline is transcribed from containerd's source, not compared with the exact
containerd RKE2 ships (see the module's docstring).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pss

from aiinfn import versions
from aiinfn.config.loader import load_site
from aiinfn.hub import spawner
from aiinfn.images import seccomp
from aiinfn.planning import make_plan
from aiinfn.services import images, jupyterhub

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
           "SCMP_ACT_TRACE", "SCMP_ACT_LOG"}
OPS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ"}


def _allowed(profile: dict[str, Any]) -> dict[str, list[Any]]:
    """Syscall -> the rules that allow it (``[]`` args: unconditionally)."""
    out: dict[str, list[Any]] = {}
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            for name in rule["names"]:
                out.setdefault(name, []).append(rule.get("args") or [])
    return out


def test_the_profile_is_seccomp_json_as_containerd_reads_it() -> None:
    text = (ROOT / "roles" / "rke2" / "files" / "seccomp" / "apptainer.json").read_text()
    assert text == seccomp.profile_text(), "the role's file is the rendered profile (regenerate it)"
    doc = json.loads(text)
    assert set(doc) <= {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags"}
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and "SCMP_ARCH_X86_64" in doc["architectures"]
    for rule in doc["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet", "comment", "includes", "excludes"}, rule
        assert rule["action"] in ACTIONS and rule["names"] and all(isinstance(n, str) for n in rule["names"])
        for arg in rule.get("args") or []:
            assert set(arg) <= {"index", "value", "valueTwo", "op"} and arg["op"] in OPS and 0 <= arg["index"] < 6


def test_the_profile_adds_only_what_apptainer_needs_to_runtime_default() -> None:
    base, ours = _allowed(seccomp.runtime_default()), _allowed(seccomp.profile())
    assert set(base) <= set(ours), "nothing RuntimeDefault allows is taken away"
    unconditional = {n for n, rules in ours.items() if [] in rules}
    before = {n for n, rules in base.items() if [] in rules}
    assert unconditional - before == set(seccomp.APPTAINER_ADDS)
    assert {n: base[n] for n in base if n not in seccomp.APPTAINER_ADDS} == {
        n: ours[n] for n in ours if n not in seccomp.APPTAINER_ADDS}, "every other rule is RuntimeDefault's"
    # RuntimeDefault: clone only without namespace flags, clone3 answered ENOSYS; never kernel modules, bpf,
    # ptrace, keyctl, reboot or the clock, in ours either
    assert base["clone"] == [[{"index": 0, "value": seccomp.CLONE_NAMESPACES, "valueTwo": 0,
                               "op": "SCMP_CMP_MASKED_EQ"}]]
    assert seccomp.CLONE_NAMESPACES & 0x10000000, "CLONE_NEWUSER is among the flags RuntimeDefault filters"
    for name in ("init_module", "finit_module", "bpf", "ptrace", "keyctl", "reboot", "settimeofday", "kexec_load",
                 "open_by_handle_at", "perf_event_open", "add_key", "umount"):
        assert name not in ours, name


def test_the_notebook_of_an_image_with_apptainer_is_restricted_with_the_localhost_profile() -> None:
    plan = make_plan(load_site("cnaf"))
    values = jupyterhub.values(plan, "nfs")
    ks = values["hub"]["config"]["KubeSpawner"]
    spawner.configure({"apptainer": {**images.apptainer(plan)}})
    managed = f"{images.harbor.host(plan)}/{versions.MANAGED_IMAGE_REPOSITORY}:0123456789abcdef"
    other = "harbor.cloud.infn.it/ai-infn/ai-infn-lab:2026.11"
    for image, expected in ((managed, {"type": "Localhost", "localhostProfile": seccomp.PROFILE}),
                            (other, {"type": "RuntimeDefault"})):
        pod_sc, c_sc = spawner.apptainer_security(image, dict(ks["pod_security_context"]),
                                                  dict(ks["container_security_context"]))
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-anna", "namespace": "jupyterhub-users"},
               "spec": {"securityContext": {**pod_sc, "runAsUser": 70001, "runAsGroup": 70001},
                        "containers": [{"name": "notebook", "image": image, "securityContext": c_sc}]}}
        assert c_sc["seccompProfile"] == expected and pod_sc["seccompProfile"] == expected
        assert pss.violations(pod, "restricted") == [], (image, pss.violations(pod, "restricted"))
        assert c_sc["capabilities"] == {"drop": ["ALL"]} and c_sc["allowPrivilegeEscalation"] is False
    # the checks are live: an Unconfined profile, the usual way to run Apptainer in a container, is refused
    unconfined = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "jupyterhub-users"},
                  "spec": {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}},
                           "containers": [{"name": "c", "image": managed, "securityContext": dict(
                               ks["container_security_context"], seccompProfile={"type": "Unconfined"})}]}}
    assert pss.violations(unconfined, "restricted")
