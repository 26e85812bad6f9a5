"""Every upstream version the platform pins, in one place.

Upgrading a component means changing its line here (and reading that component's upgrade notes);
environments cannot override these, so all sites run what the tests validated.
"""

from __future__ import annotations

from typing import Final

#: Kubernetes minor the cluster runs; the Kubernetes OpenAPI schema used by the tests follows it.
KUBERNETES: Final = "1.33"
#: RKE2 release installed by the bootstrap roles (its Kubernetes minor must equal KUBERNETES).
RKE2: Final = "v1.33.5+rke2r1"
#: NVIDIA driver branch and container toolkit the nvidia_driver role installs on passthrough GPU nodes
#: (the GPU Operator runs with its own driver and toolkit disabled).
NVIDIA_DRIVER: Final = "580.95.05"
NVIDIA_CONTAINER_TOOLKIT: Final = "1.18.0"
#: Xilinx/AMD XRT runtime for the Alveo V70 nodes.
XRT: Final = "2.18.179"
#: Kueue release and the API version our objects use.
KUEUE: Final = "0.19.2"
KUEUE_API: Final = "kueue.x-k8s.io/v1beta2"
#: NVIDIA mig-parted config format version written for the MIG manager.
MIG_PARTED_CONFIG: Final = "v1"

#: Image of the in-cluster jobs (aiinfn.jobs: standard-library Python programs).
JOB_IMAGE: Final = "docker.io/library/python:3.12.8-slim"

#: Events (services.event): the pause image of warm placeholders and of the image pre-pull (the one the
#: zero-to-jupyterhub chart pinned in CHARTS uses for its own placeholders), and the image of the archive Job
#: that copies participants' homes before an event's teardown (rclone: local copy, or S3).
PAUSE_IMAGE: Final = "registry.k8s.io/pause:3.10.1"
ARCHIVE_IMAGE: Final = "docker.io/rclone/rclone:1.68.2"

#: sts-wire release the managed notebook images carry (checked at mount time, see planning.jupyterhub).
STS_WIRE: Final = "v2.1.3"

#: sha256 of every artifact the bootstrap roles install from outside Debian (rke2, sts_wire, fpga_xrt), keyed by
#: component, then ``<version>/<file>``. The roles check the downloaded file against this value only, never against
#: a checksum file fetched from the same place as the artifact (whoever can replace the one can replace the other).
#: ``None``: not pinned yet. Nothing could confirm these values from a source independent of the download itself
#: when they were last reviewed: RKE2 lists them in the release's sha256sum-amd64.txt (compare it with a second
#: copy, e.g. the release page's asset digest), sts-wire publishes no checksum at all (only the binary
#: sts-wire_linux) and AMD shows XRT's on its sign-in download page. A playbook that needs an unpinned artifact
#: stops in its first play (role inventory_check) naming this table, before any host changes. Tests install
#: stand-in artifacts and pass their digests through the roles' ``*_sha256_override`` variables, which no
#: playbook sets.
ARTIFACT_SHA256: Final[dict[str, dict[str, str | None]]] = {
    "rke2": {f"{RKE2}/rke2.linux-amd64.tar.gz": None},
    "sts-wire": {f"{STS_WIRE}/sts-wire_linux": None},
    "xrt": {f"{XRT}/xrt_{XRT}_12-amd64-xrt.deb": None},
}

#: interLink (virtual kubelets for offloading to HPC): the Helm chart the overlay installs per offload
#: target (its values.schema.json is ../shared/schemas/interlink-chart-0.6.1), the release of the
#: images the chart runs (the chart's appVersion; its defaults say `latest`, never used here), and
#: what the interlink_edge role installs on an HPC edge node: the interLink API and the SLURM plugin.
INTERLINK_CHART: Final = "0.6.1"
INTERLINK: Final = "0.6.0"
INTERLINK_VIRTUAL_KUBELET_IMAGE: Final = f"ghcr.io/interlink-hq/interlink/virtual-kubelet-inttw:{INTERLINK}"
INTERLINK_SLURM_PLUGIN: Final = "0.6.1"

#: interLink's HTCondor plugin (interlink-hq/interlink-htcondor-plugin, for CNAF's Tier-1), what the
#: interlink_edge role installs for an offload target of kind ``htcondor``: it ships no binaries, only a
#: Python program (handles.py, Flask, PyYAML) run with the facility's HTCondor tools; pinned by the
#: commit of its newest tag (v0.3.7-pre7, 2025-06-18) and the sha256 of that commit's handles.py.
INTERLINK_HTCONDOR_PLUGIN: Final = "91ceda339d67993bba3175c6b582817be82bbfb3"
INTERLINK_HTCONDOR_PLUGIN_SHA256: Final = "0ffd79628a98b1a7200ccb82b9bb7425d55f6f7cf9434643d4c02639b50d1e65"

#: The batch service (aiinfn.batch.service, shipped as files): the z2jh-pinned hub image (JupyterHub
#: 5.5.0, tornado) with the official Kubernetes Python client added (src/aiinfn/batch/Containerfile),
#: built into the platform's registry.
KUBERNETES_CLIENT: Final = "33.1.0"
BATCH_IMAGE: Final = f"harbor.cloud.infn.it/ai-infn/aiinfn-batch:hub-4.4.0-k8s-{KUBERNETES_CLIENT}"

#: OpenStack Cinder CSI (services.cinder_csi: the block StorageClass of the databases): the chart of
#: kubernetes/cloud-provider-openstack whose release line follows KUBERNETES (2.33.x for 1.33), and the
#: driver image it runs (the chart's appVersion, pinned explicitly rather than taken from the chart).
CINDER_CSI_CHART: Final = "2.33.1"
CINDER_CSI: Final = "v1.33.1"
CINDER_CSI_IMAGE: Final = "registry.k8s.io/provider-os/cinder-csi-plugin"

#: Helm charts: name -> (repository, chart, version).
CHARTS: Final[dict[str, tuple[str, str, str]]] = {
    "jupyterhub": ("https://hub.jupyter.org/helm-chart/", "jupyterhub", "4.4.0"),
    "kueue": ("oci://registry.k8s.io/kueue/charts", "kueue", KUEUE),
    "harbor": ("https://helm.goharbor.io", "harbor", "1.19.0"),
    "gpu-operator": ("https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v25.10.0"),
    "kube-prometheus-stack": (
        "https://prometheus-community.github.io/helm-charts",
        "kube-prometheus-stack",
        "79.5.0",
    ),
    "juicefs-csi-driver": ("https://juicedata.github.io/charts/", "juicefs-csi-driver", "0.30.0"),
    "nfs-subdir-external-provisioner": (
        "https://kubernetes-sigs.github.io/nfs-subdir-external-provisioner/",
        "nfs-subdir-external-provisioner",
        "4.0.18",
    ),
    "cert-manager": ("https://charts.jetstack.io", "cert-manager", "v1.19.1"),
    "interlink": ("https://interlink-hq.github.io/interlink-helm-chart/", "interlink", INTERLINK_CHART),
    "openstack-cinder-csi": ("https://kubernetes.github.io/cloud-provider-openstack", "openstack-cinder-csi",
                             CINDER_CSI_CHART),
}


def chart_version(name: str) -> str:
    """The pinned version of chart ``name``."""
    return CHARTS[name][2]


def artifact_sha256() -> dict[str, dict[str, str | None]]:
    """A copy of ``ARTIFACT_SHA256``, as the inventory carries it (``aiinfn_artifact_sha256``)."""
    return {component: dict(files) for component, files in ARTIFACT_SHA256.items()}


def rke2_kubernetes_minor() -> str:
    """``1.33`` for ``v1.33.5+rke2r1``."""
    major, minor = RKE2.lstrip("v").split(".")[:2]
    return f"{major}.{minor}"

#: The platform's managed notebook image (aiinfn.images, built by services.images): the z2jh 4.4.0 user image
#: (the chart's own singleuser default, JupyterHub 5.5.0 in it) plus Jupyter Server Proxy (web apps behind the
#: notebook server) and Apptainer, from its official release package (GitHub releases of apptainer/apptainer:
#: ``apptainer_<version>_amd64.deb``). The package's sha256 is not pinned yet (None): nothing here could fetch it
#: from a source independent of the download; the build refuses an unpinned package (services.images).
NOTEBOOK_BASE_IMAGE: Final = "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0"
JUPYTER_SERVER_PROXY: Final = "4.6.0"
APPTAINER: Final = "1.4.5"
APPTAINER_DEB_SHA256: Final[str | None] = None
#: The in-cluster image builder (kaniko's executor: unpacks and builds as root inside its container, no
#: privilege, no user namespace) and the managed image's repository in Harbor's environments project.
KANIKO_IMAGE: Final = "gcr.io/kaniko-project/executor:v1.23.2"
MANAGED_IMAGE_REPOSITORY: Final = "environments/aiinfn-notebook"
