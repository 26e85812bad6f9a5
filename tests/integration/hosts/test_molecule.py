"""Every role's molecule scenario (roles/<role>/molecule/default), run as `molecule test` would be by hand:
create (real test hosts of tests/support/hosts, started by molecule_hosts.py), prepare, converge, idempotence
(a second converge that must change nothing), verify (the scenario's verify.yml), destroy.

Each scenario runs with a host prefix and net of its own (AIINFN_MOLECULE_PREFIX / AIINFN_MOLECULE_NET) and its
own molecule working directory, so it collides neither with the other host tests (AIINFN_TEST_HOSTS_PREFIX,
default ``ah``) nor with a developer's `molecule test` of the same role (the scenarios' own defaults). A scenario
that fails fails its test with the tail of molecule's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import hostlib
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLES_DIR = hostlib.REPO / "roles"
#: The entry point the scenarios' create.yml and destroy.yml run.
KEEPER = Path(hostlib.__file__).resolve().with_name("molecule_hosts.py")
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())
#: The steps every scenario's test sequence ends with (prepare too where the scenario has a prepare.yml).
STEPS = ["create", "converge", "idempotence", "verify", "destroy"]
#: How molecule reports a step that ran and succeeded.
DONE = re.compile(r"(?:➜ |\[[\w/-]+ > )(\w+)\]?:? Executed: Successful")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Seconds one scenario may take (the slowest takes about a minute here).
TIMEOUT = 900


def test_every_role_has_a_scenario() -> None:
    missing = [r for r in ROLES if not (ROLES_DIR / r / "molecule" / "default" / "molecule.yml").is_file()]
    assert ROLES and not missing, f"roles without a molecule scenario: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_molecule_scenario(role: str, host_image: Path, tmp_path: Path) -> None:
    index = ROLES.index(role)
    prefix = f"mt{index:02d}"
    env = {
        **os.environ,
        "AIINFN_MOLECULE_PREFIX": prefix,
        "AIINFN_MOLECULE_NET": f"10.254.{200 + index}",
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        # molecule finds ansible-config, ansible-playbook ... by name
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    started = time.monotonic()
    try:
        res = subprocess.run([str(Path(sys.executable).parent / "molecule"), "test"], cwd=ROLES_DIR / role, env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
        left = hostlib._namespaces(prefix)
    except subprocess.TimeoutExpired as exc:
        partial = ANSI.sub("", "".join(o if isinstance(o, str) else (o or b"").decode(errors="replace")
                                       for o in (exc.stdout, exc.stderr)))
        tail = "\n".join(partial.splitlines()[-80:])
        pytest.fail(f"molecule test of role {role} did not end in {TIMEOUT} s:\n{tail}")
    finally:
        # whatever became of molecule (a timeout kills it, not the keeper of its hosts), the hosts go
        subprocess.run([sys.executable, str(KEEPER), "destroy"], env={**env, "AIINFN_TEST_HOSTS_PREFIX": prefix},
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    took = time.monotonic() - started
    output = ANSI.sub("", res.stdout + res.stderr)
    tail = "\n".join(output.splitlines()[-80:])
    assert res.returncode == 0, f"molecule test of role {role} failed (exit {res.returncode}, {took:.0f} s):\n{tail}"
    done = [step for step in DONE.findall(output) if step in STEPS]
    assert done[-len(STEPS):] == STEPS, f"molecule test of role {role} did not run every step (ran {done}):\n{tail}"
    assert left == [], f"molecule's destroy of role {role} left the namespaces {left}"
    print(f"molecule test {role}: {took:.1f} s")
