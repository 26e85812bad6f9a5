"""Images in batch jobs: a team's image for its members only, and Apptainer under the platform's profile.

A job of an image the platform built with Apptainer (the managed image, a team image) runs under the
Localhost seccomp profile its notebooks use (aiinfn.images.seccomp: RuntimeDefault plus user namespaces,
installed on every node by the rke2 role), so `apptainer exec` works in a job as in a notebook; every other
job keeps RuntimeDefault, and so does a job sent to an offload target (a virtual node's remote side has no
such profile). The settings are the ones the site's batch bundle writes for a cnaf with one team image
(Apptainer's package digest a stand-in: none is pinned yet, versions.APPTAINER_DEB_SHA256). Gap: no kubelet
loads the profile here; the pod is held to the Pod Security ``restricted`` rules (tests/support/security/pss.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn.batch import jobs
from aiinfn.config.loader import load_site
from aiinfn.images import seccomp
from aiinfn.planning import make_plan
from aiinfn.services import batch
from aiinfn.services import images as platform_images

SUPPORT = Path(__file__).resolve().parents[1] / "support" / "security"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import pss  # noqa: E402 - found through SUPPORT

ROOT = Path(__file__).resolve().parents[2]
SHA = "0" * 63 + "2"
TEAM = {"groups": ["ai-infn/lhc"], "pip": ["dash==2.18.2"]}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> jobs.Settings:
    path = tmp_path_factory.mktemp("teams") / "cnaf-teams.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump({"extends": str(ROOT / "environments" / "cnaf.yaml"),
                                          "services": {"jupyterhub": {"team_images": {"lhc": TEAM}}}}, f)
    plan = make_plan(load_site(path))
    with pytest.MonkeyPatch.context() as mp:
        real = platform_images.team_image_refs
        mp.setattr(platform_images, "team_image_refs", lambda p: real(p, SHA))
        doc = batch.settings(plan)
    return jobs.Settings(doc)


def _job(settings: jobs.Settings, groups: set[str], **body: Any) -> dict[str, Any]:
    sub = jobs.parse({"project": "lhc-ml", "script": {"name": "run.sh", "content": "apptainer exec x.sif true\n"},
                      **body}, settings, groups)
    return jobs.job(sub, "ilse", "unused", "batch-ilse-0a1b2c3d", settings)


def _profiles(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    return [spec["securityContext"]["seccompProfile"], *(c["securityContext"]["seccompProfile"]
                                                         for c in spec["containers"])]


def test_a_team_image_runs_for_its_members_under_the_apptainer_profile(settings: jobs.Settings) -> None:
    job = _job(settings, {"ai-infn/lhc"}, image="lhc")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "/environments/team-lhc:" in container["image"] and settings.carries_apptainer(container["image"])
    assert _profiles(job) == [{"type": "Localhost", "localhostProfile": seccomp.PROFILE}] * 2
    assert pss.violations(job, "restricted") == []
    # the same image by its reference, as a notebook of it passes it on
    assert _job(settings, {"ai-infn/lhc"}, image=container["image"])["spec"]["template"]["spec"]["containers"][0][
        "image"] == container["image"]


def test_a_team_image_is_refused_to_others_with_one_line(settings: jobs.Settings) -> None:
    lhc = _job(settings, {"ai-infn/lhc"}, image="lhc")["spec"]["template"]["spec"]["containers"][0]["image"]
    # a member of lhc-ml whose groups are not the team's
    other = jobs.Settings({**settings.doc, "team_images": {"lhc": {"groups": ["ai-infn/cms"], "image": lhc}}})
    for image in ("lhc", lhc):
        with pytest.raises(jobs.Refused) as refused:
            _job(other, {"ai-infn/lhc"}, image=image)
        assert refused.value.status == 400
        assert refused.value.message.startswith("image: ") and "\n" not in refused.value.message


def test_other_images_keep_runtime_default(settings: jobs.Settings) -> None:
    job = _job(settings, {"ai-infn/lhc"})
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == settings.doc["default_image"]
    assert not settings.carries_apptainer(str(settings.doc["default_image"]))
    assert _profiles(job) == [{"type": "RuntimeDefault"}] * 2
    assert pss.violations(job, "restricted") == []
