"""A stand-in XRT release for tests: AMD distributes XRT only after a sign-in, and there is no Alveo card here.

``build_release(artifacts, version)`` writes ``<artifacts>/xrt/<version>/xrt_<version>_12-amd64-xrt.deb`` (a
small package named and versioned like AMD's, whose ``/opt/xilinx/xrt/bin/xbutil`` prints ``XRT stand-in``)
and a ``sha256sum.txt`` beside it with the package's digest as it was built. The role fpga_xrt ignores that file:
it checks each package against the pinned sha256 it is given (``fpga_xrt_sha256_override`` in the tests, from
``published_sha256``). With ``tamper`` the package is altered after its checksum was published.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

XBUTIL = "#!/bin/sh\necho 'XRT stand-in'\n"


def package_name(version: str) -> str:
    return f"xrt_{version}_12-amd64-xrt.deb"


def build_release(artifacts: Path, version: str, *, tamper: bool = False) -> Path:
    """Write the stand-in release of ``version`` under ``artifacts/xrt``; returns its version directory."""
    d = artifacts / "xrt" / version
    root = artifacts / "build"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: xrt\nVersion: {version}\nArchitecture: amd64\nMaintainer: aiinfn tests <t@example.org>\n"
        "Description: aiinfn test stand-in of AMD XRT\n")
    (root / "opt/xilinx/xrt/bin").mkdir(parents=True, exist_ok=True)
    (root / "opt/xilinx/xrt/bin/xbutil").write_text(XBUTIL)
    (root / "opt/xilinx/xrt/bin/xbutil").chmod(0o755)
    d.mkdir(parents=True, exist_ok=True)
    deb = d / package_name(version)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    (d / "sha256sum.txt").write_text(f"{digest}  {deb.name}\n")
    if tamper:
        with deb.open("ab") as f:
            f.write(b"tampered")
    return d


def published_sha256(artifacts: Path, version: str) -> dict[str, str]:
    """``{"<version>/<package>": sha256}`` of the release as built (before any tampering): the pins a test passes."""
    lines = (artifacts / "xrt" / version / "sha256sum.txt").read_text().splitlines()
    return {f"{version}/{name}": digest for digest, _, name in (line.partition("  ") for line in lines)}
