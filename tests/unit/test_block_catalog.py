"""The CSI driver's Keystone URL when storage.block.auth_url is unset: read from the project's own catalog.

``cinder_csi.catalog_auth_url`` is fed the items pulumi_openstack's getAuthScope returns (its typed results,
built here as the SDK builds them); a catalog it cannot use is one line naming storage.block.auth_url, at
``aiinfn plan`` time too (the offline Keystone answer replaced by one without an identity endpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi_openstack.identity import outputs as ident

from aiinfn.services import cinder_csi


def _service(typ: str, *endpoints: tuple[str, str, str]) -> Any:
    return ident.GetAuthScopeServiceCatalogResult(
        id=f"id-{typ}", name=typ, type=typ,
        endpoints=[ident.GetAuthScopeServiceCatalogEndpointResult(
            id=f"{typ}-{i}", interface=i, region=r, region_id=r, url=u) for i, r, u in endpoints])


CATALOG = [
    _service("compute", ("public", "RegionOne", "https://nova.example.test/v2.1")),
    _service("identity", ("internal", "RegionOne", "https://10.0.0.5:5000/v3"),
             ("admin", "RegionOne", "https://10.0.0.5:35357/v3"),
             ("public", "RegionTwo", "https://keystone-two.example.test:5000/v3"),
             ("public", "RegionOne", "https://keystone.example.test:5000/v3")),
]


def test_the_regions_public_identity_endpoint_is_chosen() -> None:
    assert cinder_csi.catalog_auth_url(CATALOG, "RegionOne") == "https://keystone.example.test:5000/v3"
    assert cinder_csi.catalog_auth_url(CATALOG, "RegionTwo") == "https://keystone-two.example.test:5000/v3"


@pytest.mark.parametrize(("catalog", "says"), [
    ([], "no public identity endpoint in region 'RegionOne'"),
    ([_service("identity", ("internal", "RegionOne", "https://10.0.0.5:5000/v3"))], "no public identity endpoint"),
    ([_service("identity", ("public", "RegionTwo", "https://k.example.test/v3"))], "no public identity endpoint"),
    ([_service("identity", ("public", "RegionOne", "http://k.example.test:5000/v3"))], "not HTTPS"),
    ([_service("identity", ("public", "RegionOne", "https://k.example.test:8443/v3"))], "does not open"),
    ([_service("identity", ("public", "RegionOne", "https://a.example.test/v3"),
               ("public", "RegionOne", "https://b.example.test/v3"))], "several public identity endpoints"),
])
def test_a_catalog_it_cannot_use_names_the_field_that_fixes_it(catalog: list[Any], says: str) -> None:
    with pytest.raises(ValueError) as e:
        cinder_csi.catalog_auth_url(catalog, "RegionOne")
    assert says in str(e.value) and "set storage.block.auth_url" in str(e.value)
    assert "\n" not in str(e.value)


def test_plan_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    from aiinfn.cli import main
    from aiinfn.offline import runtime

    real = runtime.auth_scope

    def no_identity(name: str, region: str) -> dict[str, Any]:
        scope = real(name, region)
        return {**scope, "serviceCatalogs": [c for c in scope["serviceCatalogs"] if c["type"] != "identity"]}

    monkeypatch.setattr(runtime, "auth_scope", no_identity)
    monkeypatch.setattr("sys.argv", ["aiinfn", "plan", "cnaf", "--build-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "storage.block.auth_url" in line]
    assert len(lines) == 1 and "no public identity endpoint in region 'RegionOne'" in lines[0], err
