"""The Kubernetes overlay: what researchers use, deployed onto the bootstrapped cluster.

This first part installs the GPU Operator (MIG manager fed our mig-parted config), Kueue with the
queues derived from real capacity, and the projects' namespaces, access and network policies. The
objects come from aiinfn.planning.kueue as plain manifests; this module only registers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from aiinfn import versions
from aiinfn.planning import Plan, jupyterhub, monitoring, services
from aiinfn.planning.kueue import kueue_objects, project_objects
from aiinfn.planning.overlay import (
    GPU_OPERATOR_NAMESPACE,
    KUEUE_NAMESPACE,
    NFS_NAMESPACE,
    gpu_operator_values,
    kueue_values,
    mig_configmap,
    nfs_provisioner_values,
    platform_namespaces,
)


def release_args(chart: str, namespace: str, values: pulumi.Input[dict[str, Any]]) -> dict[str, Any]:
    repo, name, version = versions.CHARTS[chart]
    args: dict[str, Any] = {
        "name": chart,
        "chart": name if not repo.startswith("oci://") else f"{repo}/{name}",
        "version": version,
        "namespace": namespace,
        "create_namespace": False,
        "atomic": True,
        "cleanup_on_fail": True,
        "values": values,
    }
    if not repo.startswith("oci://"):
        args["repository_opts"] = k8s.helm.v3.RepositoryOptsArgs(repo=repo)
    return args


@dataclass(frozen=True)
class OverlayArgs:
    plan: Plan
    kubeconfig: pulumi.Input[str]
    #: fixed IP of the NFS node (None when the environment has no platform filesystem)
    nfs_server: pulumi.Input[str] | None
    #: every Pulumi config secret the environment names (name -> secret Output)
    secrets: dict[str, pulumi.Output[str]]
    #: fixed IPs of the nodes outside the cluster that Prometheus scrapes (monitoring.scraped_nodes)
    addresses: dict[str, pulumi.Output[str]]


class Overlay(pulumi.ComponentResource):
    def __init__(self, name: str, args: OverlayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:overlay:Overlay", name, None, opts)
        plan = args.plan
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_cluster = pulumi.ResourceOptions(parent=self, provider=provider)

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=list(deps)))

        namespaces = {
            obj["metadata"]["name"]: k8s.core.v1.Namespace(
                f"{name}-ns-{obj['metadata']['name']}", metadata=obj["metadata"], opts=on_cluster
            )
            for obj in platform_namespaces()
        }

        cm = mig_configmap(plan)
        mig_config = k8s.core.v1.ConfigMap(
            f"{name}-mig-parted-config",
            metadata=cm["metadata"],
            data=cm["data"],
            opts=after(namespaces[GPU_OPERATOR_NAMESPACE]),
        )
        gpu_operator = k8s.helm.v3.Release(
            f"{name}-gpu-operator",
            **release_args("gpu-operator", GPU_OPERATOR_NAMESPACE, gpu_operator_values(plan)),
            opts=after(mig_config),
        )
        kueue = k8s.helm.v3.Release(
            f"{name}-kueue",
            **release_args("kueue", KUEUE_NAMESPACE, kueue_values()),
            opts=after(namespaces[KUEUE_NAMESPACE]),
        )

        releases: dict[str, pulumi.Output[Any]] = {"gpu-operator": gpu_operator.status, "kueue": kueue.status}
        env = plan.env
        storage_class = env.storage.nfs.storage_class if env.storage.nfs else None
        nfs = None
        if env.storage.nfs is not None and args.nfs_server is not None:
            nfs = k8s.helm.v3.Release(
                f"{name}-nfs-provisioner",
                **release_args(
                    "nfs-subdir-external-provisioner",
                    NFS_NAMESPACE,
                    pulumi.Output.from_input(args.nfs_server).apply(lambda ip: nfs_provisioner_values(plan, ip)),
                ),
                opts=after(namespaces[NFS_NAMESPACE]),
            )
            releases["nfs-subdir-external-provisioner"] = nfs.status
        if env.services.jupyterhub is not None and storage_class is not None and nfs is not None:
            hub_opts = after(namespaces[jupyterhub.NAMESPACE], nfs)
            releases["jupyterhub"] = self._jupyterhub(name, args, storage_class, hub_opts)

        releases.update(self._services(name, args, namespaces, after, storage_class))

        created: dict[str, pulumi.Resource] = {f"namespace-{ns}": res for ns, res in namespaces.items()}
        for obj in project_objects(plan):
            created[_key(obj)] = _register(f"{name}-{_key(obj)}", obj, on_cluster, created)
        after_kueue = after(kueue)
        for obj in kueue_objects(plan):
            created[_key(obj)] = _register(f"{name}-{_key(obj)}", obj, after_kueue, created)

        self.register_outputs({"releases": releases, "objects": sorted(k for k in created if k not in namespaces)})

    def _jupyterhub(
        self, name: str, args: OverlayArgs, storage_class: str, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[Any]:
        """The hub: its OAuth client secret as a Secret, its database on a protected claim, the chart."""
        secret = k8s.core.v1.Secret(
            f"{name}-iam-oauth",
            metadata={"name": jupyterhub.OAUTH_SECRET, "namespace": jupyterhub.NAMESPACE},
            string_data={
                jupyterhub.OAUTH_SECRET_KEY: pulumi.Output.secret(args.secrets[args.plan.env.iam.client_secret])
            },
            type="Opaque",
            opts=opts,
        )
        deps: list[pulumi.Resource] = [secret]
        s3 = args.plan.env.storage.s3
        if jupyterhub.mount_script(args.plan) is not None and s3 is not None and s3.client_secret:
            key = random.RandomBytes(f"{name}-hub-crypt-key", length=32, opts=pulumi.ResourceOptions(parent=self))
            for secret_name, data in (
                (jupyterhub.CRYPT_SECRET, {"key": key.hex}),
                (jupyterhub.STSWIRE_SECRET, {jupyterhub.STSWIRE_SECRET_KEY: args.secrets[s3.client_secret]}),
            ):
                deps.append(
                    k8s.core.v1.Secret(
                        f"{name}-{secret_name}",
                        metadata={"name": secret_name, "namespace": jupyterhub.NAMESPACE},
                        string_data=pulumi.Output.secret(data),
                        type="Opaque",
                        opts=opts,
                    )
                )
        claim = jupyterhub.hub_db_claim(storage_class)
        db = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-hub-db",
            metadata=claim["metadata"],
            spec=claim["spec"],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True)),
        )
        hub = k8s.helm.v3.Release(
            f"{name}-jupyterhub",
            **release_args("jupyterhub", jupyterhub.NAMESPACE, jupyterhub.values(args.plan, storage_class)),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[*deps, db])),
        )
        return hub.status

    def _services(
        self,
        name: str,
        args: OverlayArgs,
        namespaces: dict[str, k8s.core.v1.Namespace],
        after: Any,
        storage_class: str | None,
    ) -> dict[str, pulumi.Output[Any]]:
        """TLS, monitoring and accounting, JuiceFS and Harbor."""
        plan, env = args.plan, args.plan.env
        out: dict[str, pulumi.Output[Any]] = {}

        def secret(key: str, ns: str, data: dict[str, pulumi.Input[str]], deps: list[pulumi.Resource]) -> Any:
            return k8s.core.v1.Secret(
                f"{name}-{key}",
                metadata={"name": key, "namespace": ns},
                string_data=pulumi.Output.secret(data),
                type="Opaque",
                opts=after(namespaces[ns], *deps),
            )

        cert_manager = k8s.helm.v3.Release(
            f"{name}-cert-manager",
            **release_args("cert-manager", services.CERT_MANAGER_NAMESPACE, services.cert_manager_values()),
            opts=after(namespaces[services.CERT_MANAGER_NAMESPACE]),
        )
        out["cert-manager"] = cert_manager.status
        issuer = services.cluster_issuer(plan)
        KubernetesObject(f"{name}-clusterissuer-{issuer['metadata']['name']}", issuer, after(cert_manager))

        grafana_password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False,
                                                 opts=pulumi.ResourceOptions(parent=self))
        grafana = secret(monitoring.GRAFANA_ADMIN_SECRET, monitoring.NAMESPACE,
                         {"admin-user": "admin", "admin-password": grafana_password.result}, [])
        targets = pulumi.Output.all(**args.addresses).apply(lambda a: monitoring.exporter_targets(a, plan))
        prometheus = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            **release_args(
                "kube-prometheus-stack",
                monitoring.NAMESPACE,
                targets.apply(lambda t: monitoring.values(plan, storage_class, t)),
            ),
            opts=after(namespaces[monitoring.NAMESPACE], grafana),
        )
        out["kube-prometheus-stack"] = prometheus.status
        for obj in monitoring.manifests(plan):
            KubernetesObject(f"{name}-{_key(obj)}", obj, after(prometheus))

        jfs_class = services.juicefs_storage_class(plan)
        if jfs_class is not None and env.storage.juicefs is not None and env.storage.s3 is not None:
            jfs = env.storage.juicefs
            jfs_secret = secret(services.JUICEFS_SECRET, services.JUICEFS_NAMESPACE, {
                "name": f"aiinfn-{env.site.name}",
                "metaurl": args.secrets[jfs.metadata_url_secret],
                "storage": "s3",
                "bucket": jfs.bucket,
                "access-key": args.secrets[jfs.access_key_secret],
                "secret-key": args.secrets[jfs.secret_key_secret],
            }, [])
            driver = k8s.helm.v3.Release(
                f"{name}-juicefs-csi-driver",
                **release_args("juicefs-csi-driver", services.JUICEFS_NAMESPACE, services.juicefs_values()),
                opts=after(namespaces[services.JUICEFS_NAMESPACE]),
            )
            out["juicefs-csi-driver"] = driver.status
            k8s.storage.v1.StorageClass(
                f"{name}-storageclass-{jfs.storage_class}",
                metadata=jfs_class["metadata"],
                provisioner=jfs_class["provisioner"],
                reclaim_policy=jfs_class["reclaimPolicy"],
                allow_volume_expansion=jfs_class["allowVolumeExpansion"],
                parameters=jfs_class["parameters"],
                opts=after(driver, jfs_secret),
            )

        harbor_values = services.harbor_values(plan)
        harbor = env.services.harbor
        if harbor_values is not None and harbor is not None and storage_class is not None:
            deps: list[pulumi.Resource] = [secret(services.HARBOR_ADMIN_SECRET, services.HARBOR_NAMESPACE, {
                "HARBOR_ADMIN_PASSWORD": args.secrets[harbor.admin_password_secret]}, [])]
            if harbor.s3_access_key_secret and harbor.s3_secret_key_secret:
                deps.append(secret(services.HARBOR_S3_SECRET, services.HARBOR_NAMESPACE, {
                    "REGISTRY_STORAGE_S3_ACCESSKEY": args.secrets[harbor.s3_access_key_secret],
                    "REGISTRY_STORAGE_S3_SECRETKEY": args.secrets[harbor.s3_secret_key_secret],
                }, []))
            claim = services.harbor_db_claim(plan, storage_class)
            assert claim is not None
            deps.append(k8s.core.v1.PersistentVolumeClaim(
                f"{name}-harbor-database",
                metadata=claim["metadata"],
                spec=claim["spec"],
                opts=pulumi.ResourceOptions.merge(
                    after(namespaces[services.HARBOR_NAMESPACE]),
                    pulumi.ResourceOptions(protect=True, retain_on_delete=True),
                ),
            ))
            release = k8s.helm.v3.Release(
                f"{name}-harbor",
                **release_args("harbor", services.HARBOR_NAMESPACE, harbor_values),
                opts=after(namespaces[services.HARBOR_NAMESPACE], cert_manager, *deps),
            )
            out["harbor"] = release.status
            for obj in services.harbor_bootstrap_objects(plan):
                _register(f"{name}-{_key(obj)}", obj, after(release), {})
        return out


def _key(obj: dict[str, Any]) -> str:
    """A stable resource name part: kind, namespace and name (``localqueue-theory-default``)."""
    meta = obj["metadata"]
    parts = [obj["kind"].lower(), meta.get("namespace", ""), meta["name"]]
    return "-".join(p for p in parts if p)


def _register(
    name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions, created: dict[str, pulumi.Resource]
) -> pulumi.Resource:
    ns = obj["metadata"].get("namespace")
    deps = [created[f"namespace-{ns}"]] if ns and f"namespace-{ns}" in created else []
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=deps))
    kind = obj["kind"]
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=obj["metadata"], opts=opts)
    if kind == "RoleBinding":
        return k8s.rbac.v1.RoleBinding(
            name, metadata=obj["metadata"], role_ref=obj["roleRef"], subjects=obj["subjects"], opts=opts
        )
    if kind == "ClusterRoleBinding":
        return k8s.rbac.v1.ClusterRoleBinding(
            name, metadata=obj["metadata"], role_ref=obj["roleRef"], subjects=obj["subjects"], opts=opts
        )
    if kind in ("ServiceAccount", "Role", "ConfigMap", "Job"):
        return KubernetesObject(name, obj, opts)
    if kind == "NetworkPolicy":
        return k8s.networking.v1.NetworkPolicy(name, metadata=obj["metadata"], spec=obj["spec"], opts=opts)
    return KubernetesObject(name, obj, opts)


class KubernetesObject(pulumi.CustomResource):
    """A custom resource with every top-level field of its manifest.

    pulumi_kubernetes' CustomResource class only carries `spec`; Kueue's WorkloadPriorityClass has
    `value` and `description` at the top level, so the object is registered whole, with the same
    type token (`kubernetes:<apiVersion>:<kind>`) and provider version the SDK class would use.
    """

    def __init__(self, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        from pulumi_kubernetes import _utilities

        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=_utilities.get_version()))
        super().__init__(f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}", name, dict(manifest), opts)

