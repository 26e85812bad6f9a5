"""Offloading through interLink and the batch service's bundle, as the site's stack registers them.

The cnaf site with ``services.batch`` and two offload targets (an OIDC SLURM target with GPUs, an mTLS
HTCondor one), planned under the mock runtime (tests/stacks/conftest.py's gap applies). What is judged:

* the interLink chart's values: every key one of the chart's own (values.yaml, plus the keys it
  documents in comments: accelerators, nodeLabels, nodeTaints), the merged values valid against the
  chart's values.schema.json (0.6.1, read in place), images pinned, no secret among them;
* the Kueue objects valid against the Kueue 0.19.2 CRDs (strict: an unknown field anywhere refused),
  the flavors selecting the virtual node by its hostname label and tolerating its taint, the offload
  queue in the cohort with no namespace of its own, lent to project queues only;
* no JupyterHub profile can select or tolerate a virtual node;
* the batch service's objects valid for Kubernetes 1.33 (strict), its RBAC bound only in project
  namespaces, its token generated and secret;
* bad offload settings refused with one line naming the field.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jsonschema
import kubernetes_validate
import pytest
import yaml

from aiinfn import preview, versions
from aiinfn.batch import interlink_token
from aiinfn.config.loader import load_site
from aiinfn.errors import ConfigError
from aiinfn.hub import cluster
from aiinfn.planning import make_plan
from aiinfn.planning.labels import HOSTNAME_LABEL, VIRTUAL_NODE_TAINT, VIRTUAL_NODE_TYPE_LABEL
from aiinfn.services import batch, jupyterhub, kueue, offload

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import schemas  # noqa: E402 - found through SUPPORT

TARGETS: dict[str, Any] = {
    "leonardo": {
        "kind": "slurm", "endpoint": "https://interlink.leonardo.example.org",
        "auth": {"type": "oidc", "client_id": "ai-infn-vk", "client_secret": "leonardo-vk-secret",
                 "refresh_token_secret": "leonardo-vk-refresh"},
        "cpu": 512, "memory_gb": 2048, "accelerators": {"A100-40GB": 16},
        "limits": {"max_wall_time_hours": 24, "max_cpu": 64},
    },
    "tier1": {
        "kind": "htcondor", "endpoint": "https://interlink.t1.example.org:8443",
        "auth": {"type": "mtls", "cert_secret": "t1-vk-cert", "key_secret": "t1-vk-key", "ca_secret": "t1-vk-ca"},
        "cpu": 1024, "memory_gb": 4096,
    },
}
OVERRIDES = {"services": {"batch": {}}, "offload": {"targets": TARGETS}}
#: Keys the chart reads that its values.yaml shows only in comments (templates/virtual-kubelet-config.yaml).
DOCUMENTED = {("virtualNode", "resources", "accelerators"), ("virtualNode", "nodeLabels"),
              ("virtualNode", "nodeTaints")}
CHART = "interlink-chart-0.6.1"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> preview.Preview:
    root = Path(__file__).resolve().parents[2]
    path = tmp_path_factory.mktemp("offload") / "cnaf-offload.yaml"
    path.write_text(yaml.safe_dump({"extends": str(root / "environments" / "cnaf.yaml"), **OVERRIDES}))
    return preview.build(path, stack="cnaf")


def _bundle(report: preview.Preview, service: str) -> Any:
    (b,) = [b for b in report.bundles if b.service == service]
    return b


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


def _unknown_keys(values: Any, defaults: Any, path: tuple[str, ...] = ()) -> list[str]:
    out: list[str] = []
    if not isinstance(values, dict):
        return out
    for k, v in values.items():
        p = (*path, k)
        if p in DOCUMENTED:
            continue
        if not isinstance(defaults, dict) or k not in defaults:
            out.append(".".join(p))
        elif isinstance(defaults[k], dict) and defaults[k]:
            out.extend(_unknown_keys(v, defaults[k], p))
    return out


# --------------------------------------------------------------------------- the virtual nodes


def test_each_target_is_a_virtual_node_of_the_pinned_chart_with_valid_values(report: preview.Preview,
                                                                              shared: Path) -> None:
    folder = shared / "schemas" / CHART
    defaults = yaml.safe_load((folder / "values.yaml").read_text())
    schema = json.loads((folder / "values.schema.json").read_text())
    releases = {r.key: r for r in _bundle(report, "offload").releases}
    assert set(releases) == {"interlink-leonardo", "interlink-tier1"}
    assert versions.chart_version("interlink") == "0.6.1"
    registered = {r.inputs["name"]: r.inputs for r in report.run.by_type("kubernetes:helm.sh/v3:Release")}
    for key, release in releases.items():
        values = dict(release.values)
        assert _unknown_keys(values, defaults) == [], "keys the chart does not have"
        jsonschema.Draft7Validator(schema).validate(_merge(defaults, values))
        assert values["nodeName"] == key and values["virtualNode"]["image"] == versions.INTERLINK_VIRTUAL_KUBELET_IMAGE
        assert ":latest" not in json.dumps(values)
        assert registered[key]["version"] == "0.6.1" and registered[key]["namespace"] == offload.NAMESPACE
    leo = dict(releases["interlink-leonardo"].values)
    assert leo["interlink"] == {"enabled": False, "address": "https://interlink.leonardo.example.org", "port": 443}
    assert leo["virtualNode"]["resources"] == {"CPUs": 512, "memGiB": 2048, "pods": 100, "accelerators": [
        {"resourceType": "nvidia.com/gpu", "model": "a100-40gb", "available": 16}]}
    t1 = dict(releases["interlink-tier1"].values)
    assert t1["interlink"]["port"] == 8443 and t1["interlink"]["tls"]["enabled"] is True
    # a schema that accepts anything would prove nothing: a spoiled copy is refused
    spoiled = _merge(defaults, {**leo, "virtualNode": {**leo["virtualNode"], "name": "Not A DNS Name"}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(spoiled)


def test_no_secret_is_a_chart_value_and_the_secrets_are_references(report: preview.Preview) -> None:
    b = _bundle(report, "offload")
    text = json.dumps([dict(r.values) for r in b.releases])
    for ref in ("leonardo-vk-secret", "leonardo-vk-refresh", "t1-vk-key", "t1-vk-cert", "t1-vk-ca"):
        assert ref not in text
    oauth = dict(b.releases[0].values)["OAUTH"]
    assert oauth["ClientSecret"].startswith("file:") and oauth["RefreshToken"].startswith("file:")
    assert oauth["image"] == versions.JOB_IMAGE
    secrets = {s.name: s for s in b.secrets}
    assert {r.name for r in secrets["interlink-leonardo-oidc"].references()} == {"leonardo-vk-secret",
                                                                                 "leonardo-vk-refresh"}
    assert secrets["interlink-tier1-tls-certs"].namespace == offload.NAMESPACE  # the chart's own Secret name
    assert {r.name for r in secrets["interlink-tier1-tls-certs"].references()} == {"t1-vk-cert", "t1-vk-key",
                                                                                   "t1-vk-ca"}


def test_the_token_refresher_reads_its_secrets_from_files_and_writes_the_token(tmp_path: Path) -> None:
    """aiinfn.batch.interlink_token (mounted over the chart's refresh.py) against a token endpoint."""
    seen: list[dict[str, list[str]]] = []

    class Token(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            return None

        def do_POST(self) -> None:
            seen.append(parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            body = json.dumps({"access_token": "at-1", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "client-secret").write_text("cs-1\n")
    (tmp_path / "refresh-token").write_text("rt-1\n")
    env = {"IAM_TOKEN_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}/token", "IAM_CLIENT_ID": "vk",
           "IAM_CLIENT_SECRET": f"file:{tmp_path}/client-secret", "IAM_REFRESH_TOKEN": f"file:{tmp_path}/refresh-token",
           "IAM_GRANT_TYPE": "refresh_token", "TOKEN_PATH": str(tmp_path / "token")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert interlink_token.main(["--once"]) == 0
        mp.setenv("IAM_CLIENT_SECRET", f"file:{tmp_path}/missing")
        assert interlink_token.main(["--once"]) == 1
    server.shutdown()
    assert seen[0]["client_secret"] == ["cs-1"] and seen[0]["refresh_token"] == ["rt-1"]
    assert (tmp_path / "token").read_text() == "at-1" and (tmp_path / "token").stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- Kueue


def test_offload_objects_are_valid_kueue_objects(report: preview.Preview, shared: Path) -> None:
    crds = schemas.crd_schemas(shared / "schemas" / f"kueue-v{versions.KUEUE}")
    objs = [dict(m.manifest) for b in report.bundles for m in b.manifests if m.api_group == "kueue.x-k8s.io"]
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "ResourceFlavor"} >= {
        "offload-leonardo", "offload-leonardo-gpu", "offload-tier1"}
    for o in objs:
        schemas.assert_valid(o, crds[(o["apiVersion"], o["kind"])])
    flavor = next(o for o in objs if o["metadata"]["name"] == "offload-leonardo")
    spoiled = copy.deepcopy(flavor)
    spoiled["spec"]["nodeSelector"] = spoiled["spec"].pop("nodeLabels")
    with pytest.raises(schemas.SchemaProblems):
        schemas.assert_valid(spoiled, crds[(flavor["apiVersion"], "ResourceFlavor")])


def test_flavors_select_the_virtual_node_and_only_batch_queues_may_borrow_it(report: preview.Preview) -> None:
    objs = {(m.manifest["kind"], m.manifest["metadata"]["name"]): dict(m.manifest)
            for b in report.bundles for m in b.manifests}
    for name in ("offload-leonardo", "offload-leonardo-gpu", "offload-tier1"):
        spec = objs[("ResourceFlavor", name)]["spec"]
        node = "interlink-" + name.split("-")[1]
        assert spec["nodeLabels"] == {HOSTNAME_LABEL: node}
        assert spec["tolerations"] == [{"key": VIRTUAL_NODE_TAINT, "operator": "Equal", "value": "true",
                                        "effect": "NoSchedule"}]
    cq = objs[("ClusterQueue", "offload-leonardo")]["spec"]
    assert cq["cohortName"] == kueue.COHORT and "namespaceSelector" not in cq  # nothing submits there
    assert [r["nominalQuota"] for g in cq["resourceGroups"] for f in g["flavors"] for r in f["resources"]] == [
        512, "2048Gi", 16]

    def offload_flavors(queue: dict[str, Any]) -> set[str]:
        return {f["name"] for g in queue["spec"]["resourceGroups"] for f in g["flavors"]
                if f["name"].startswith("offload-")}

    assert offload_flavors(objs[("ClusterQueue", kueue.INTERACTIVE_QUEUE)]) == set()
    for q in report.plan.quotas:
        queue = objs[("ClusterQueue", q.project)]
        assert offload_flavors(queue) == {"offload-leonardo", "offload-leonardo-gpu", "offload-tier1"}
        for g in queue["spec"]["resourceGroups"]:
            for f in g["flavors"]:
                if f["name"].startswith("offload-"):
                    assert all(r["nominalQuota"] in (0, "0Gi") for r in f["resources"])  # borrowed, never owned
                    assert all(("borrowingLimit" in r) == (not q.borrowing) for r in f["resources"])


def test_no_hub_profile_can_select_or_tolerate_a_virtual_node(report: preview.Preview) -> None:
    """interLink 0.6's virtual kubelet labels its node so, and taints it virtual-node.interlink/no-schedule:
    a profile lands there only if its selector matches those labels and it tolerates the taint."""
    for target in TARGETS:
        node_labels = {HOSTNAME_LABEL: f"interlink-{target}", "kubernetes.io/os": "virtual-kubelet",
                       "kubernetes.io/role": "agent", VIRTUAL_NODE_TYPE_LABEL: "virtual-kubelet",
                       "nvidia-gpu-type": "a100-40gb"}
        for p in jupyterhub.profiles(report.plan):
            o = p.get("kubespawner_override") or {}
            for t in o.get("tolerations") or []:
                assert t.get("key") not in (None, "", VIRTUAL_NODE_TAINT) and t.get("operator") != "Exists", (
                    p["slug"], t)
            selector = o.get("node_selector") or {}
            assert selector and not all(node_labels.get(k) == v for k, v in selector.items()), p["slug"]


# --------------------------------------------------------------------------- the batch service's bundle


def test_the_batch_service_objects_are_valid_and_its_rights_are_project_scoped(report: preview.Preview) -> None:
    b = _bundle(report, "batch")
    objs = [dict(m.manifest) for m in b.manifests]
    for o in objs:
        kubernetes_validate.validate(o, versions.KUBERNETES, strict=True)
    (role,) = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == batch.SERVICE]
    bindings = [o for o in objs if o["kind"] == "RoleBinding"]
    assert {o["metadata"]["namespace"] for o in bindings if o["roleRef"]["kind"] == "ClusterRole"} == {
        q.namespace for q in report.plan.quotas}
    # cluster-wide only the users' home volumes: read the areas' volume by name, create volumes (which the
    # service's own admission policy holds to home volumes)
    (homes,) = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    assert homes["roleRef"]["name"] == batch.HOMES_ROLE
    (homes_role,) = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == batch.HOMES_ROLE]
    assert homes_role["rules"] == [
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get"],
         "resourceNames": [batch.AREAS_VOLUME]},
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create"]}]
    (vap,) = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]
    assert vap["metadata"]["name"] == batch.HOME_VOLUMES_POLICY and vap["spec"]["failurePolicy"] == "Fail"
    assert [o["spec"]["policyName"] for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding"] == [
        batch.HOME_VOLUMES_POLICY]
    # the areas' volume a home volume copies is the notebooks' own
    notebooks = [dict(m.manifest) for m in _bundle(report, "notebooks").manifests]
    assert batch.AREAS_VOLUME in {o["metadata"]["name"] for o in notebooks if o["kind"] == "PersistentVolume"}
    # in the hub's namespace only the listing of ConfigMaps (the event registrations), by a Role there
    (hub_role,) = [o for o in objs if o["kind"] == "Role"]
    assert hub_role["metadata"]["namespace"] == jupyterhub.NAMESPACE
    assert hub_role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    assert [o["roleRef"] for o in bindings if o["metadata"]["namespace"] == jupyterhub.NAMESPACE] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": hub_role["metadata"]["name"]}]
    rights = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
              for v in rule["verbs"]}
    assert ("batch", "jobs", "create") in rights and ("", "pods/log", "get") in rights
    assert not {(g, r, v) for g, r, v in rights if r in ("secrets", "pods", "persistentvolumeclaims")
                and v in ("update", "patch", "delete")}
    assert not {r for _, r, _ in rights if r in ("secrets", "pods/exec", "serviceaccounts/token", "roles",
                                                 "rolebindings")}
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == versions.BATCH_IMAGE
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert set(cm["data"]) == {"__init__.py", "jobs.py", "service.py", "cluster.py", "settings.json"}
    # the window of an event is read by the hub's own parser, shipped as it is
    assert cm["data"]["cluster.py"] == (Path(cluster.__file__)).read_text()
    # the hub knows the service, and its token reaches it only from a Secret made of a generated value
    registered = {r.inputs["name"]: r for r in report.run.by_type("kubernetes:helm.sh/v3:Release")}
    hub_values = registered["jupyterhub"].inputs["values"]
    assert "apiToken" not in hub_values["hub"]["services"][batch.SERVICE]
    assert {s.namespace for s in b.secrets} == {batch.NAMESPACE, jupyterhub.NAMESPACE}
    assert all(not isinstance(v, str) for s in b.secrets for v in s.data.values())


def test_every_object_of_the_site_waits_for_what_it_needs(report: preview.Preview) -> None:
    from aiinfn.services.bundle import check

    check(report.bundles)


# --------------------------------------------------------------------------- bad settings


BAD = [
    ({"endpoint": "http://edge.example.org"}, "offload.targets.leonardo.endpoint", "https"),
    ({"endpoint": "https://edge.example.org/api"}, "offload.targets.leonardo.endpoint", "no path"),
    ({"limits": {"max_cpu": 10_000}}, "offload.targets.leonardo.limits.max_cpu", "more than the target offers"),
    ({"accelerators": {"V70": 2}}, "offload.targets.leonardo.accelerators.V70", "nvidia.com/gpu"),
    ({"kind": "pbs"}, "offload.targets.leonardo.kind", ""),
    ({"auth": {"type": "oidc", "client_id": "vk", "client_secret": "x"}}, "offload.targets.leonardo.auth", ""),
]


BAD_IDS = [f"{b[1].rsplit('.', 1)[1]}{i}" for i, b in enumerate(BAD)]


@pytest.mark.parametrize(("change", "path", "words"), BAD, ids=BAD_IDS)
def test_bad_offload_settings_are_refused_in_one_line(tmp_path: Path, root: Path, change: dict[str, Any],
                                                      path: str, words: str) -> None:
    target = {**TARGETS["leonardo"], **change}
    env = tmp_path / "bad.yaml"
    env.write_text(yaml.safe_dump({"extends": str(root / "environments" / "cnaf.yaml"),
                                   "offload": {"targets": {"leonardo": target}}}))
    with pytest.raises(ConfigError) as e:
        make_plan(load_site(env))
    assert path in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_batch_without_the_hub_is_refused(tmp_path: Path, plan_variant: Callable[..., Any], root: Path) -> None:
    env = tmp_path / "nohub.yaml"
    data = yaml.safe_load((root / "environments" / "cnaf.yaml").read_text())
    data["extends"] = str(root / "environments" / "base.yaml")
    data["services"].pop("jupyterhub")
    data["services"]["batch"] = {}
    env.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_site(env)
    assert "services.batch" in str(e.value) and "services.jupyterhub" in str(e.value)
