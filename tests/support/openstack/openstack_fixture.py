"""A real OpenStack Zed control plane on 127.0.0.1, started and stopped by the integration tests.

Debian bookworm's packages (scripts/install-openstack-fixture-deps.sh installs them): Keystone and
Placement under uwsgi, Nova (api, conductor, scheduler and two nova-compute processes whose fake driver
reports four A100 PCI devices 10de:20b5 each, PCI alias ``a100``), Glance (file store), Neutron (ML2,
no agents: one fake Open vSwitch agent per compute host is registered so ports bind), Cinder (its fake
volume driver), MariaDB and RabbitMQ. Nothing listens beyond 127.0.0.1.

Every process is started here with Popen in its own session (so its workers share its process group),
logs to ``<state>/log/<name>.log``, and its pid is recorded in ``<state>/pids/``; ``down()`` signals
exactly those process groups (TERM, then KILL after a grace period), newest first. The state directory
(databases, Fernet keys, images) survives ``down()``, so the next start is warm (about 35 s instead of
76 s); ``down(purge=True)`` deletes it.

Command line (as root): ``python tests/support/openstack/openstack_fixture.py up|down|purge``;
then ``OS_CLIENT_CONFIG_FILE=<state>/clouds.yaml`` gives the cloud ``aiinfn-fixture-admin``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PASSWORD = "fixture-secret"
REGION = "RegionOne"
ADMIN_CLOUD = "aiinfn-fixture-admin"
KEYSTONE = f"http://{HOST}:5000/v3"
DB_URL = f"mysql+pymysql://openstack:{PASSWORD}@{HOST}:3306"
RABBIT_URL = f"rabbit://guest:guest@{HOST}:5672/"
#: Compute hosts, each a nova-compute process with the fake GPU driver.
COMPUTES = ("gpu-host-1", "gpu-host-2")
GPUS_PER_HOST = 4
#: The PCI alias nova.conf defines for the fake A100s (vendor 10de, product 20b5).
PCI_ALIAS = "a100"
#: Neutron: tenant networks are VLANs on physnet1; the flat physical network for external ones.
EXTERNAL_PHYSNET = "public"
PORTS = {
    "mariadb": 3306,
    "epmd": 4369,
    "rabbitmq": 5672,
    "keystone": 5000,
    "placement": 8778,
    "nova-api": 8774,
    "glance-api": 9292,
    "neutron-server": 9696,
    "cinder-api": 8776,
}
#: What the control plane runs on; a missing one means the Debian packages are not installed.
NEEDED = [
    "/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/bin/epmd",
    "/usr/bin/uwsgi", "/usr/bin/keystone-manage", "/usr/bin/keystone-wsgi-public", "/usr/bin/placement-api",
    "/usr/bin/placement-manage", "/usr/bin/nova-api", "/usr/bin/nova-conductor", "/usr/bin/nova-scheduler",
    "/usr/bin/nova-manage", "/usr/bin/glance-api", "/usr/bin/glance-manage", "/usr/bin/neutron-server",
    "/usr/bin/neutron-db-manage", "/usr/lib/python3/dist-packages/cinder/cmd/volume.py",
]
SYSTEM_PYTHON = "/usr/bin/python3"
#: Nova scheduler filters: the PCI one places GPU flavors on hosts with free devices.
FILTERS = [
    "ComputeFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter", "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter", "PciPassthroughFilter",
]
UWSGI = [
    "/usr/bin/uwsgi", "--plugins", "python3", "--master", "--die-on-term", "--enable-threads", "--lazy-apps",
    "--processes", "1", "--threads", "8", "--buffer-size", "65535",
]


#: Held while a test session or a benchmark uses the control plane: one user at a time per machine.
LOCK = Path("/var/tmp/aiinfn-openstack.lock")


class FixtureError(RuntimeError):
    """The control plane could not be started: says which part, and where its log is."""


@contextlib.contextmanager
def exclusive(wait: float = 45 * 60, path: Path = LOCK) -> Iterator[None]:
    """Hold the control plane's lock, waiting up to ``wait`` seconds for another user to finish."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise FixtureError(f"another test session or benchmark holds {path} for more than {wait:g} s") \
                        from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class ControlPlane:
    state: Path = field(default_factory=lambda: Path(os.environ.get("AIINFN_OS_FIXTURE", "/var/tmp/aiinfn-openstack")))
    #: Seconds each phase of the last ``up()`` took.
    timings: dict[str, float] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: How each service was started, to start one again after ``stop_service``.
    _commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)
    #: What the current wait still misses (set by readiness checks that can say).
    _waiting_on: str = ""

    # ------------------------------------------------------------------ layout

    @property
    def etc(self) -> Path:
        return self.state / "etc"

    @property
    def logs(self) -> Path:
        return self.state / "log"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def clouds_yaml(self) -> Path:
        return self.state / "clouds.yaml"

    @property
    def initialised(self) -> Path:
        return self.state / ".initialised"

    # ------------------------------------------------------------------ public

    def up(self) -> None:
        """Start everything (idempotent); returns once every compute host and cinder-volume report up."""
        missing = [p for p in NEEDED if not Path(p).exists()]
        if missing:
            raise FixtureError(
                f"OpenStack packages are not installed ({missing[0]} is missing): run "
                "scripts/install-openstack-fixture-deps.sh as root (make test does)"
            )
        if os.geteuid() != 0:
            raise FixtureError("the OpenStack control plane runs its services as root: run the tests as root")
        self.down()  # leftovers of a session that died before its teardown
        for port_name, port in PORTS.items():
            if _port_open(port):
                raise FixtureError(f"port {HOST}:{port} ({port_name}) is taken by a program this fixture did not start")
        if not self.initialised.exists() and self.data.exists():
            shutil.rmtree(self.data)  # a first start that died half-way: begin again from nothing
        for d in (self.etc, self.logs, self.pids, self.data / "locks"):
            d.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self._phase("configs"):
            self._write_configs()
        with self._phase("infra"):
            self._start_mariadb()
            self._start("epmd", ["/usr/bin/epmd", "-address", HOST, "-port", "4369"])
            self._wait("epmd", 10, lambda: _port_open(4369))
            self._start_rabbitmq()
            self._wait("mariadb", 60, lambda: self._mysql("SELECT 1").returncode == 0)
        fresh = not self.initialised.exists()
        if fresh:
            with self._phase("databases"):
                self._init_databases()
        with self._phase("identity"):
            self._start("keystone", [*UWSGI, "--http11-socket", f"{HOST}:5000", "--wsgi-file",
                                     "/usr/bin/keystone-wsgi-public", "--env",
                                     f"OS_KEYSTONE_CONFIG_FILES={self.etc / 'keystone.conf'}"])
            self._start("placement", [*UWSGI, "--http11-socket", f"{HOST}:8778", "--wsgi-file",
                                      "/usr/bin/placement-api"], env={"OS_PLACEMENT_CONFIG_DIR": str(self.etc)})
            self._wait("keystone", 60, lambda: _http_ok(f"http://{HOST}:5000/v3"))
            if fresh:
                self._init_catalog()
            self._wait("rabbitmq", 90, lambda: _port_open(5672))
        with self._phase("services"):
            self._start_services()
        with self._phase("computes"):
            self._run("register-agents", [SYSTEM_PYTHON, str(HERE / "register_agents.py"),
                                          str(self.etc / "neutron.conf"), *COMPUTES], timeout=120)
            self.initialised.touch()
            self._wait("compute hosts and cinder-volume", 180, self._computes_up)
        self.timings["total"] = time.monotonic() - t0
        self.timings["fresh"] = float(fresh)

    def down(self, purge: bool = False) -> None:
        """Stop every process this fixture recorded, newest first; with ``purge``, delete the state."""
        if self.pids.is_dir():
            names = sorted(self.pids.glob("*.pid"), key=lambda p: p.stat().st_mtime, reverse=True)
            services = [p.stem for p in names if p.stem not in ("rabbitmq", "epmd", "mariadb")]
            self._stop(services, grace=20)
            self._stop(["rabbitmq"], grace=30)
            self._stop(["epmd"], grace=5)
            self._stop(["mariadb"], grace=60)
        if purge and self.state.exists():
            shutil.rmtree(self.state)

    def admin_auth(self) -> dict[str, str]:
        return {
            "auth_url": KEYSTONE, "username": "admin", "password": PASSWORD, "project_name": "admin",
            "user_domain_name": "Default", "project_domain_name": "Default",
        }

    # ------------------------------------------------------------------ processes

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - start

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Debian's python and a clean environment: nothing of the test's virtualenv or OS_* leaks in
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.data), "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    def stop_service(self, name: str) -> None:
        """Stop one service (e.g. ``cinder-api``), as if it had died."""
        self._stop([name], grace=20)

    def start_service(self, name: str) -> None:
        """Start a service stopped by ``stop_service`` again, and wait until its API answers."""
        argv, env = self._commands[name]
        self._start(name, argv, env)
        self._wait(name, 120, lambda: _http_ok(f"http://{HOST}:{PORTS[name]}"))

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._commands[name] = (argv, env)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.state,
                env=self._env(env), start_new_session=True,
            )
        self._procs[name] = proc
        (self.pids / f"{name}.pid").write_text(f"{proc.pid}\n")

    def _run(self, name: str, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
        """Run a one-off command to completion, its output in the log; FixtureError if it fails."""
        with open(self.logs / f"{name}.log", "ab") as log:
            try:
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.state, env=self._env(env), timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                raise FixtureError(f"{name} took longer than {timeout:g} s; see {self.logs / name}.log") from None
        if rc != 0:
            raise FixtureError(f"{name} failed (exit {rc}); see {self.logs / name}.log")

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _wait(self, what: str, timeout: float, ready: Callable[[], bool]) -> None:
        end = time.monotonic() + timeout
        self._waiting_on = ""
        while True:
            try:
                if ready():
                    return
            except Exception as e:  # a service half up answers with anything; keep polling until the deadline
                self._waiting_on = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead:
                raise FixtureError(f"{dead[0]} exited (code {self._procs[dead[0]].returncode}) while waiting for "
                                   f"{what}; see {self.logs / dead[0]}.log")
            if time.monotonic() > end:
                missing = f" (still missing {self._waiting_on})" if self._waiting_on else ""
                raise FixtureError(f"{what} not ready after {timeout:g} s{missing}; logs in {self.logs}")
            time.sleep(0.2)

    def _stop(self, names: list[str], grace: float) -> None:
        """TERM the processes of ``names`` together, wait up to ``grace`` seconds, then KILL what is left.

        A service's processes are its process group (it leads one) and every descendant: RabbitMQ's
        Erlang VM puts its port helpers in sessions of their own.
        """
        families: dict[str, set[int]] = {}
        for name in names:
            f = self.pids / f"{name}.pid"
            if not f.exists():
                continue
            pid = int(f.read_text().strip() or 0)
            family = _family(pid) if pid > 0 else set()
            if family:
                families[name] = family
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            else:
                f.unlink()
        end = time.monotonic() + grace
        for name, family in families.items():
            proc = self._procs.pop(name, None)
            while time.monotonic() < end:
                if proc is not None:
                    proc.poll()  # reap our own child, or it stays a zombie
                if not _running(family):
                    break
                time.sleep(0.1)
            for pid in _running(family):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            (self.pids / f"{name}.pid").unlink(missing_ok=True)

    # ------------------------------------------------------------------ infrastructure

    def _start_mariadb(self) -> None:
        datadir = self.data / "mysql"
        if not (datadir / "mysql").is_dir():
            self._run("mariadb-install-db", ["/usr/bin/mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                                             "--user=root", "--auth-root-authentication-method=normal",
                                             "--skip-test-db"], timeout=120)
        self._start("mariadb", [
            "/usr/sbin/mariadbd", "--no-defaults", "--user=root", f"--datadir={datadir}",
            f"--socket={self.data / 'mysql.sock'}", f"--pid-file={self.data / 'mysql.pid'}",
            f"--bind-address={HOST}", "--port=3306", "--skip-name-resolve", "--skip-log-bin",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci", "--max-connections=1000",
            "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            f"--log-error={self.logs / 'mariadb.err'}",
        ])

    def _mysql(self, sql: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["/usr/bin/mariadb", "--no-defaults", "-uroot", f"--socket={self.data / 'mysql.sock'}",
                               "-e", sql], capture_output=True, timeout=30, env=self._env())

    def _start_rabbitmq(self) -> None:
        rabbit = self.data / "rabbit"
        (rabbit / "mnesia").mkdir(parents=True, exist_ok=True)
        (rabbit / "log").mkdir(parents=True, exist_ok=True)
        self._start("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env={
            "HOME": str(rabbit),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": "5672",
            "RABBITMQ_DIST_PORT": "25672",
            "RABBITMQ_CONFIG_FILE": str(self.etc / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.etc / "rabbitmq-enabled-plugins"),
            "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"),
            "RABBITMQ_LOG_BASE": str(rabbit / "log"),
            "RABBITMQ_SERVER_START_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })

    def _init_databases(self) -> None:
        sql = f"CREATE USER IF NOT EXISTS 'openstack'@'{HOST}' IDENTIFIED BY '{PASSWORD}';"
        for db in ("keystone", "placement", "nova_api", "nova", "nova_cell0", "glance", "neutron", "cinder"):
            sql += f" CREATE DATABASE IF NOT EXISTS {db}; GRANT ALL PRIVILEGES ON {db}.* TO 'openstack'@'{HOST}';"
        res = self._mysql(sql + " FLUSH PRIVILEGES;")
        if res.returncode != 0:
            raise FixtureError(f"creating the databases failed: {res.stderr.decode(errors='replace').strip()}")
        etc = self.etc
        keystone = ["/usr/bin/keystone-manage", "--config-file", str(etc / "keystone.conf")]
        nova = ["/usr/bin/nova-manage", "--config-file", str(etc / "nova.conf")]
        chains: dict[str, list[list[str]]] = {
            "keystone-manage": [
                [*keystone, "db_sync"],
                [*keystone, "fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
                [*keystone, "credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
                [*keystone, "bootstrap", "--bootstrap-password", PASSWORD, "--bootstrap-admin-url", KEYSTONE,
                 "--bootstrap-internal-url", KEYSTONE, "--bootstrap-public-url", KEYSTONE,
                 "--bootstrap-region-id", REGION],
            ],
            "placement-manage": [["/usr/bin/placement-manage", "--config-file", str(etc / "placement.conf"),
                                  "db", "sync"]],
            "glance-manage": [["/usr/bin/glance-manage", "--config-file", str(etc / "glance-api.conf"), "db_sync"]],
            "neutron-db-manage": [["/usr/bin/neutron-db-manage", "--config-file", str(etc / "neutron.conf"),
                                   "--config-file", str(etc / "ml2_conf.ini"), "upgrade", "heads"]],
            "nova-manage": [
                [*nova, "api_db", "sync"],
                [*nova, "cell_v2", "map_cell0", "--database_connection", f"{DB_URL}/nova_cell0"],
                [*nova, "cell_v2", "create_cell", "--name", "cell1"],
                [*nova, "db", "sync"],
            ],
            "cinder-manage": [[SYSTEM_PYTHON, str(HERE / "cinder_service.py"), "manage", "--config-file",
                               str(etc / "cinder.conf"), "db", "sync"]],
        }
        # the six chains are independent: run them side by side, each step after the previous one
        running: dict[str, tuple[subprocess.Popen[bytes], list[list[str]]]] = {}
        logs = {name: open(self.logs / f"{name}.log", "ab") for name in chains}  # noqa: SIM115 - closed below
        try:
            def launch(name: str, steps: list[list[str]]) -> None:
                proc = subprocess.Popen(steps[0], stdin=subprocess.DEVNULL, stdout=logs[name],
                                        stderr=subprocess.STDOUT, cwd=self.state, env=self._env())
                running[name] = (proc, steps[1:])

            for name, steps in chains.items():
                launch(name, steps)
            end = time.monotonic() + 600
            while running:
                for name, (proc, rest) in list(running.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    del running[name]
                    if rc != 0:
                        raise FixtureError(f"{name} failed (exit {rc}); see {self.logs / name}.log")
                    if rest:
                        launch(name, rest)
                if time.monotonic() > end:
                    raise FixtureError(f"database set-up took longer than 600 s; logs in {self.logs}")
                time.sleep(0.2)
        finally:
            for proc, _ in running.values():
                proc.kill()
                proc.wait()
            for f in logs.values():
                f.close()

    def _init_catalog(self) -> None:
        """Service project and users, the demo roles, and the endpoints of every service."""
        import openstack

        conn = openstack.connect(**self.admin_auth(), region_name=REGION, identity_api_version="3",
                                 load_yaml_config=False, load_envvars=False)
        ident = conn.identity
        domain = ident.get_domain("default")
        service = _find(ident.find_project, "service") or ident.create_project(name="service", domain_id=domain.id)
        roles = {r.name: r for r in ident.roles()}
        for name in ("service", "member", "reader"):
            if name not in roles:
                roles[name] = ident.create_role(name=name)
        for user_name in ("nova", "neutron", "glance", "placement", "cinder"):
            user = _find(ident.find_user, user_name, domain_id=domain.id) or ident.create_user(
                name=user_name, password=PASSWORD, domain_id=domain.id)
            for role in ("admin", "service"):
                ident.assign_project_role_to_user(service, user, roles[role])
        endpoints = {
            ("nova", "compute"): f"http://{HOST}:8774/v2.1",
            ("placement", "placement"): f"http://{HOST}:8778",
            ("glance", "image"): f"http://{HOST}:9292",
            ("neutron", "network"): f"http://{HOST}:9696",
            ("cinderv3", "volumev3"): f"http://{HOST}:8776/v3/%(project_id)s",
        }
        for (name, kind), url in endpoints.items():
            svc = next(iter(ident.services(type=kind)), None) or ident.create_service(name=name, type=kind)
            have = {e.interface for e in ident.endpoints(service_id=svc.id)}
            for interface in ("public", "internal", "admin"):
                if interface not in have:
                    ident.create_endpoint(service_id=svc.id, interface=interface, url=url, region_id=REGION)
        conn.close()

    def _start_services(self) -> None:
        etc, logs = self.etc, self.logs
        self._start("glance-api", ["/usr/bin/glance-api", "--config-file", str(etc / "glance-api.conf")])
        self._start("neutron-server", ["/usr/bin/neutron-server", "--config-file", str(etc / "neutron.conf"),
                                       "--config-file", str(etc / "ml2_conf.ini")])
        for svc in ("nova-api", "nova-conductor", "nova-scheduler"):
            self._start(svc, [f"/usr/bin/{svc}", "--config-file", str(etc / "nova.conf"),
                              "--log-file", str(logs / f"{svc}.service.log")])
        for svc in ("api", "scheduler", "volume"):
            self._start(f"cinder-{svc}", [SYSTEM_PYTHON, str(HERE / "cinder_service.py"), svc,
                                          "--config-file", str(etc / "cinder.conf"),
                                          "--log-file", str(logs / f"cinder-{svc}.service.log")])
        self._wait("placement", 60, lambda: _http_ok(f"http://{HOST}:8778"))
        for host in COMPUTES:
            self._start(f"nova-compute-{host}", [
                SYSTEM_PYTHON, str(HERE / "nova_compute.py"), "--config-file", str(etc / "nova.conf"),
                "--config-file", str(etc / f"nova-compute-{host}.conf"),
            ], env={"AIINFN_FAKE_GPUS": str(GPUS_PER_HOST)})
        for name, port in (("glance-api", 9292), ("neutron-server", 9696), ("nova-api", 8774), ("cinder-api", 8776)):
            self._wait(name, 120, lambda port=port: _http_ok(f"http://{HOST}:{port}"))

    def _computes_up(self) -> bool:
        """Every compute host up, a hypervisor, a resource provider and mapped to the cell; cinder-volume up.

        Sets ``_waiting_on`` to what is still missing, for the timeout message.
        """
        import openstack

        conn = openstack.connect(**self.admin_auth(), region_name=REGION, identity_api_version="3",
                                 load_yaml_config=False, load_envvars=False, api_timeout=5)
        try:
            want = set(COMPUTES)
            up = {s.host for s in conn.compute.services() if s.binary == "nova-compute" and s.state == "up"}
            hypervisors = {h.name for h in conn.compute.hypervisors()}
            providers = {p.name for p in conn.placement.resource_providers()}
            volume = any(s.binary == "cinder-volume" and s.state == "up" for s in conn.block_storage.services())
            # nova-scheduler maps new hosts to the cell (discover_hosts_in_cells_interval)
            mapped = set(self._mysql("SELECT host FROM nova_api.host_mappings").stdout.decode().split())
            missing = {
                "nova-compute up": want - up, "hypervisors": want - hypervisors,
                "resource providers": want - providers, "cell host mappings": want - mapped,
            }
            reasons = [f"{k}: {', '.join(sorted(v))}" for k, v in missing.items() if v]
            if not volume:
                reasons.append("cinder-volume up")
            self._waiting_on = "; ".join(reasons)
            return not reasons
        finally:
            conn.close()

    # ------------------------------------------------------------------ configuration files

    def _write_configs(self) -> None:
        etc, data, logs = self.etc, self.data, self.logs
        for d in ("keystone/fernet-keys", "keystone/credential-keys", "glance/images", "glance/staging",
                  "glance/tasks", "nova", "neutron", "cinder"):
            (data / d).mkdir(parents=True, exist_ok=True)

        def authtoken(user: str) -> str:
            return f"""[keystone_authtoken]
www_authenticate_uri = http://{HOST}:5000
auth_url = http://{HOST}:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {user}
password = {PASSWORD}
service_token_roles_required = true
"""

        def service_auth(user: str) -> str:
            return f"""auth_type = password
auth_url = {KEYSTONE}
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {user}
password = {PASSWORD}
region_name = {REGION}
"""

        locks = f"[oslo_concurrency]\nlock_path = {data / 'locks'}\n[oslo_messaging_notifications]\ndriver = noop\n"
        files = {
            "keystone.conf": f"""[DEFAULT]
log_file = {logs / 'keystone.service.log'}
[database]
connection = {DB_URL}/keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = {data / 'keystone/fernet-keys'}
[fernet_receipts]
key_repository = {data / 'keystone/fernet-keys'}
[credential]
key_repository = {data / 'keystone/credential-keys'}
[cache]
# without a cache Keystone runs hundreds of SQL queries per authenticated request
enabled = true
backend = dogpile.cache.memory
[identity]
# bcrypt cost 4 instead of 12: each password authentication about 0.2 s cheaper
password_hash_rounds = 4
""",
            "placement.conf": f"""[DEFAULT]
log_file = {logs / 'placement.service.log'}
[api]
auth_strategy = keystone
[placement_database]
connection = {DB_URL}/placement
{authtoken('placement')}""",
            "nova.conf": f"""[DEFAULT]
my_ip = {HOST}
state_path = {data / 'nova'}
transport_url = {RABBIT_URL}
compute_driver = aiinfn_fake_gpu.FakeGPUDriver
enabled_apis = osapi_compute
osapi_compute_listen = {HOST}
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
metadata_workers = 1
# no agent plugs ports: do not wait for Neutron's vif-plugged event
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
heal_instance_info_cache_interval = -1
periodic_fuzzy_delay = 0
cpu_allocation_ratio = 16.0
ram_allocation_ratio = 4.0
disk_allocation_ratio = 4.0
reserved_host_memory_mb = 0
instance_usage_audit = false
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api_database]
connection = {DB_URL}/nova_api
[database]
connection = {DB_URL}/nova
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 2
[filter_scheduler]
enabled_filters = {",".join(FILTERS)}
available_filters = nova.scheduler.filters.all_filters
[pci]
device_spec = {{"vendor_id": "10de", "product_id": "20b5"}}
alias = {{"name": "{PCI_ALIAS}", "vendor_id": "10de", "product_id": "20b5", "device_type": "type-PCI"}}
{locks}[glance]
region_name = {REGION}
[cinder]
os_region_name = {REGION}
{service_auth('nova')}[placement]
{service_auth('placement')}[neutron]
{service_auth('neutron')}service_metadata_proxy = false
[service_user]
# Cinder only lets Nova delete attachments with a service token (CVE-2023-2088)
send_service_user_token = true
{service_auth('nova')}{authtoken('nova')}""",
            "neutron.conf": f"""[DEFAULT]
bind_host = {HOST}
bind_port = 9696
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {RABBIT_URL}
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
api_paste_config = /etc/neutron/api-paste.ini
state_path = {data / 'neutron'}
log_file = {logs / 'neutron-server.service.log'}
dhcp_agent_notification = false
allow_overlapping_ips = true
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
# the fake Open vSwitch agents report once: keep them alive
agent_down_time = 2147483
[database]
connection = {DB_URL}/neutron
{locks}[nova]
{service_auth('nova')}{authtoken('neutron')}""",
            "ml2_conf.ini": f"""[ml2]
type_drivers = flat,vlan
tenant_network_types = vlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = {EXTERNAL_PHYSNET}
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199
""",
            "glance-api.conf": f"""[DEFAULT]
bind_host = {HOST}
bind_port = 9292
workers = 1
log_file = {logs / 'glance-api.service.log'}
enabled_backends = fs:file
[database]
connection = {DB_URL}/glance
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {data / 'glance/images'}
[os_glance_staging_store]
filesystem_store_datadir = {data / 'glance/staging'}
[os_glance_tasks_store]
filesystem_store_datadir = {data / 'glance/tasks'}
{locks}{authtoken('glance')}""",
            "cinder.conf": f"""[DEFAULT]
my_ip = {HOST}
host = cinder-1
state_path = {data / 'cinder'}
transport_url = {RABBIT_URL}
auth_strategy = keystone
osapi_volume_listen = {HOST}
osapi_volume_listen_port = 8776
osapi_volume_workers = 1
api_paste_config = {etc / 'cinder-api-paste.ini'}
enabled_backends = fake
periodic_fuzzy_delay = 0
[fake]
# Cinder's own test driver: the LVM driver with fake LVM and command execution
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
[database]
connection = {DB_URL}/cinder
{locks}[nova]
{service_auth('nova')}{authtoken('cinder')}""",
            "cinder-api-paste.ini": CINDER_PASTE,
            "rabbitmq.conf": f"""listeners.tcp.default = {HOST}:5672
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.file.level = warning
""",
            "rabbitmq-enabled-plugins": "[].\n",
        }
        for host in COMPUTES:
            files[f"nova-compute-{host}.conf"] = f"""[DEFAULT]
host = {host}
log_file = {logs / f'nova-compute-{host}.service.log'}
instances_path = {data / 'nova' / f'instances-{host}'}
"""
        for name, text in files.items():
            (etc / name).write_text(text)
        admin = self.admin_auth()
        self.clouds_yaml.write_text(
            "clouds:\n"
            f"  {ADMIN_CLOUD}:\n"
            "    auth:\n" + "".join(f"      {k}: {v}\n" for k, v in admin.items())
            + f"    region_name: {REGION}\n    identity_api_version: 3\n"
        )


#: Cinder's API pipeline without the bits python3-cinder lacks (its cinder-api package ships the original).
CINDER_PASTE = """[composite:osapi_volume]
use = call:cinder.api:root_app_factory
/: apiversions
/v3: openstack_volume_api_v3
[composite:openstack_volume_api_v3]
use = call:cinder.api.middleware.auth:pipeline_factory
keystone = request_id cors http_proxy_to_wsgi faultwrap sizelimit authtoken keystonecontext apiv3
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = cinder
[filter:faultwrap]
paste.filter_factory = cinder.api.middleware.fault:FaultWrapper.factory
[filter:sizelimit]
paste.filter_factory = oslo_middleware.sizelimit:RequestBodySizeLimiter.factory
[app:apiv3]
paste.app_factory = cinder.api.v3.router:APIRouter.factory
[pipeline:apiversions]
pipeline = request_id cors http_proxy_to_wsgi faultwrap osvolumeversionapp
[app:osvolumeversionapp]
paste.app_factory = cinder.api.versions:Versions.factory
[filter:keystonecontext]
paste.filter_factory = cinder.api.middleware.auth:CinderKeystoneContext.factory
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
[filter:request_id]
paste.filter_factory = cinder.api.middleware.request_id:RequestId.factory
"""


def _find(method: Callable[..., Any], name: str, **query: Any) -> Any:
    from openstack import exceptions

    try:
        return method(name, ignore_missing=False, **query)
    except exceptions.NotFoundException:
        return None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status in (200, 300))
    except urllib.error.HTTPError as e:
        return e.code in (300, 401)
    except (OSError, ValueError):
        return False


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every process: pid -> (parent pid, process group, state)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(d.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def _family(leader: int) -> set[int]:
    """The live processes of ``leader``'s process group and all their descendants."""
    procs = _processes()
    family = {p for p, (_, group, state) in procs.items() if group == leader and state != "Z"}
    if leader in procs:
        family.add(leader)
    grew = True
    while grew:
        kids = {p for p, (parent, _, state) in procs.items() if parent in family and state != "Z"}
        grew = not kids <= family
        family |= kids
    return family


def _running(pids: set[int]) -> set[int]:
    procs = _processes()
    return {p for p in pids if p in procs and procs[p][2] != "Z"}


def main(argv: list[str]) -> int:
    cp = ControlPlane()
    command = argv[1] if len(argv) > 1 else ""
    if command not in ("up", "down", "purge"):
        print("usage: openstack_fixture.py up|down|purge", file=sys.stderr)
        return 2
    try:
        with exclusive(wait=0):  # never under a running test session or benchmark
            if command == "up":
                cp.up()
                # started from the command line: the services outlive this process
                cp._procs.clear()
                print(f"up in {cp.timings['total']:.1f} s: OS_CLIENT_CONFIG_FILE={cp.clouds_yaml} cloud {ADMIN_CLOUD}")
                print("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in cp.timings.items()
                                             if k not in ("total", "fresh")))
            else:
                cp.down(purge=command == "purge")
    except FixtureError as e:
        print(f"openstack fixture: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
