"""playbooks/monitoring.yml on real hosts: Grafana on the monitoring node (roles/grafana, through the grafana.grafana
collection), node-exporter on the VMs outside the cluster.

The inventory is the one aiinfn renders for a site with a `monitoring` pool (tests/support/hosts/site-env.yaml plus
that pool and `services.monitoring.grafana`), so the datasource, the IAM login and the dashboards are the plan's.
Real: the collection's tasks, apt, systemd, the provisioning files as the collection writes them, Debian's
Prometheus serving its API over TLS with basic auth at the name and port the plan gives Grafana (as the site's
Ingress does), Debian's node-exporter.
Not real (the gap): Grafana itself. No Grafana package installs here (Grafana Labs' repository is unreachable,
Debian has none), so the `grafana` package is the stand-in of tests/support/hosts/grafana_standin.py: it reads the
files Grafana reads and serves its health, datasource, search and data-proxy API, but neither runs Grafana's OAuth
exchange nor evaluates `role_attribute_path`; the test evaluates that JMESPath with the jmespath package, as Grafana
does over IAM's userinfo. The cluster is a stand-in kubectl on the first server answering for the two Secrets the
playbook reads (the overlay makes them on a site).
"""

from __future__ import annotations

import base64
import configparser
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grafana_standin
import hostlib
import jmespath
import pytest
import yaml

from aiinfn.config.loader import load
from aiinfn.planning import Plan, make_plan
from aiinfn.render import ansible_inventory, read_inventory
from aiinfn.services import monitoring

pytestmark = pytest.mark.integration

SITE_ENV = Path(hostlib.__file__).resolve().with_name("site-env.yaml")
MON, SERVER, NFS = "monitoring-01", "k8s-server-01", "nfs-01"
CLIENT_SECRET = "grafana-test-iam-client-secret-0123"
READER_PASSWORD = "prometheus-reader-password-4567"
PROMETHEUS_NAME = "prometheus.ai.hosts.test"
#: A kubectl for the first server: `-n NS get secret NAME --ignore-not-found -o jsonpath={.data.KEY}` prints
#: /srv/cluster/NS/NAME/KEY (base64, as the API holds Secret data), nothing for a Secret not there yet.
KUBECTL = r"""#!/usr/bin/python3
import re, sys
a = sys.argv[1:]
ns = a[a.index("-n") + 1]
name = a[a.index("secret") + 1]
key = re.match(r"jsonpath=\{\.data\.(.+)\}$", a[a.index("-o") + 1]).group(1).replace("\\.", ".")
try:
    sys.stdout.write(open(f"/srv/cluster/{ns}/{name}/{key}").read())
except FileNotFoundError:
    pass
"""


def _plan(tmp_path: Path) -> Plan:
    env = tmp_path / "monitoring-site.yaml"
    env.write_text(
        f"extends: {os.path.relpath(SITE_ENV, tmp_path)}\n"
        "node_pools:\n  monitoring: {role: monitoring, flavor: cpu-2c-4g, nodes: [monitoring-01]}\n"
        "services:\n  monitoring:\n    grafana: {client_id: hosts-grafana, client_secret: grafana-iam-client-secret,"
        " allow: [192.0.2.0/24]}\n"
    )
    return make_plan(load(str(env)))


def _inventory(p: Plan, hosts: hostlib.Hosts) -> tuple[dict[str, Any], str]:
    rendered = ansible_inventory(p, {n: hosts.address(n) for n in hosts.names})
    doc = read_inventory(rendered)  # !unsafe strings stay data: the dashboards' {{label}} legends are not templated
    for name, hv in doc["all"]["hosts"].items():
        if name in hosts.names:
            hv.update(hosts.connection_vars(name))
    doc["all"]["vars"].pop("ansible_user", None)  # the test hosts log in as root
    return doc, rendered


def _prometheus(hosts: hostlib.Hosts) -> str:
    """Debian's Prometheus on the first server at https://PROMETHEUS_NAME (port 443, as the Ingress), basic auth."""
    hosts.exec(SERVER, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus "
                       "apache2-utils openssl", check=True)
    hosts.exec(SERVER, f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={PROMETHEUS_NAME} -addext "
                       f"subjectAltName=DNS:{PROMETHEUS_NAME} -keyout /etc/prometheus/key.pem "
                       "-out /etc/prometheus/cert.pem && chown prometheus /etc/prometheus/key.pem", check=True)
    digest = hosts.exec(SERVER, ["htpasswd", "-nbB", "-C", "10", monitoring.READER_USER, READER_PASSWORD],
                        check=True).stdout.strip().split(":", 1)[1]
    web = {"tls_server_config": {"cert_file": "/etc/prometheus/cert.pem", "key_file": "/etc/prometheus/key.pem"},
           "basic_auth_users": {monitoring.READER_USER: digest}}
    hosts.exec(SERVER, "cat > /etc/prometheus/web.yml", input=yaml.safe_dump(web), check=True)
    # port 443 for Debian's sandboxed unit: the host's own network namespace lets unprivileged users bind it
    hosts.exec(SERVER, "sysctl -qw net.ipv4.ip_unprivileged_port_start=443 && echo 'ARGS=\"--web.listen-address=:443 "
                       "--web.config.file=/etc/prometheus/web.yml\"'"
                       " > /etc/default/prometheus && systemctl daemon-reload && systemctl restart prometheus",
               check=True)
    hosts.exec(SERVER, "for i in $(seq 60); do python3 -c "
                       "'import socket; socket.create_connection((\"127.0.0.1\", 443))'"
                       " 2>/dev/null && exit 0; sleep 1; done; exit 1", check=True)
    return hosts.read(SERVER, "/etc/prometheus/cert.pem").decode()


def _cluster_secrets(hosts: hostlib.Hosts, cert: str) -> None:
    """What the overlay puts in the cluster: the reader's Secret and the Ingress certificate's."""
    b64 = {"aiinfn-prometheus-reader/password": READER_PASSWORD, "aiinfn-prometheus-tls/ca.crt": cert,
           "aiinfn-prometheus-tls/tls.crt": cert}
    for rel, value in b64.items():
        path = f"/srv/cluster/{monitoring.NAMESPACE}/{rel}"
        hosts.exec(SERVER, f"mkdir -p {os.path.dirname(path)} && cat > {path}",
                   input=base64.b64encode(value.encode()).decode(), check=True)


def _grafana_get(hosts: hostlib.Hosts, path: str, auth: bool = True) -> tuple[int, Any]:
    """GET ``path`` of Grafana on the monitoring node (its own HTTPS), as admin (the generated password)."""
    script = (
        "import base64, json, ssl, sys, urllib.request, urllib.error\n"
        f"req = urllib.request.Request('https://127.0.0.1:{monitoring.GRAFANA_PORT}{path}')\n"
        + ("pw = open('/etc/grafana/aiinfn/admin-password').read().strip()\n"
           "req.add_header('Authorization', 'Basic ' + base64.b64encode(('admin:' + pw).encode()).decode())\n"
           if auth else "")
        + "ctx = ssl._create_unverified_context()\n"
        "try:\n    r = urllib.request.urlopen(req, context=ctx, timeout=30)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
    )
    out = hosts.exec(MON, ["python3", "-c", script], check=True).stdout
    code, _, body = out.partition("\n")
    return int(code), json.loads(body) if body.strip().startswith(("{", "[")) else body


def test_grafana_on_the_monitoring_node_with_the_plans_datasource_login_and_dashboards(
        test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    p = _plan(tmp_path)
    settings = monitoring.grafana_settings(p)
    assert settings is not None
    hosts = test_hosts([MON, SERVER, NFS])
    inv, rendered = _inventory(p, hosts)
    # no secret in what aiinfn writes: the client secret is an extra variable, the reader's password is the cluster's
    assert CLIENT_SECRET not in rendered and READER_PASSWORD not in rendered and "client_secret" not in rendered

    cert = _prometheus(hosts)
    hosts.exec(SERVER, "mkdir -p /var/lib/rancher/rke2/bin && cat > /var/lib/rancher/rke2/bin/kubectl && "
                       "chmod 755 /var/lib/rancher/rke2/bin/kubectl", input=KUBECTL, check=True)
    grafana_standin.build(hosts.path(MON, "/srv/aiinfn-standins"))
    hosts.exec(MON, f"echo 'deb [trusted=yes] file:/srv/aiinfn-standins ./' > /etc/apt/sources.list.d/standins.list"
                    f" && apt-get update -q && echo '{hosts.address(SERVER)} {PROMETHEUS_NAME}' >> /etc/hosts",
               check=True)
    extra = {"grafana_iam_client_secret": CLIENT_SECRET, "grafana_upstream_repository": False}
    limit = ",".join([MON, SERVER, NFS])
    play = hostlib.REPO / "playbooks" / "monitoring.yml"

    # before the overlay: no reader Secret yet; node-exporter goes on, Grafana waits (the run succeeds and says so)
    early = hostlib.run_playbook(play, inv, extravars=extra, limit=limit)
    assert early.rc == 0, early.failed
    assert "is not in the cluster yet" in early.stdout
    assert hosts.exec(MON, "dpkg-query -W -f='${db:Status-Status}' grafana").stdout != "installed"

    _cluster_secrets(hosts, cert)
    first = hostlib.run_playbook(play, inv, extravars=extra, limit=limit)
    assert first.rc == 0, first.failed
    assert CLIENT_SECRET not in first.stdout and READER_PASSWORD not in first.stdout

    # node-exporter on the VMs outside the cluster (NFS, monitoring), never on a cluster node (its own DaemonSet)
    for host, wanted in ((MON, "active"), (NFS, "active"), (SERVER, "inactive")):
        assert hosts.exec(host, "systemctl is-active prometheus-node-exporter").stdout.strip() == wanted, host

    # the datasource: this site's Prometheus, over TLS trusting the site's certificate, with the reader's basic auth
    ds_file = yaml.safe_load(hosts.read(MON, "/etc/grafana/provisioning/datasources/ansible.yml"))
    (ds,) = ds_file["datasources"]
    assert (ds["name"], ds["uid"], ds["url"]) == (monitoring.datasource_name("testsite"),
                                                  monitoring.datasource_uid("testsite"), f"https://{PROMETHEUS_NAME}")
    assert ds["type"] == "prometheus" and ds["access"] == "proxy" and ds["isDefault"] is True
    assert ds["basicAuth"] is True and ds["basicAuthUser"] == monitoring.READER_USER
    # the password is named, not written: systemd hands it to Grafana from a root-only environment file
    assert ds["secureJsonData"] == {"basicAuthPassword": "$AIINFN_PROMETHEUS_0_PASSWORD", "tlsCACert": cert}
    environment = hosts.read(MON, "/etc/grafana/aiinfn/environment").decode()
    assert f"AIINFN_PROMETHEUS_0_PASSWORD='{READER_PASSWORD}'" in environment.splitlines()
    assert f"AIINFN_IAM_CLIENT_SECRET='{CLIENT_SECRET}'" in environment.splitlines()
    assert hosts.exec(MON, "stat -c '%U:%G %a' /etc/grafana/aiinfn/environment", check=True).stdout.split() == [
        "root:root", "600"]
    for path in ("/etc/grafana/grafana.ini", "/etc/grafana/provisioning/datasources/ansible.yml"):
        text = hosts.read(MON, path).decode()
        assert CLIENT_SECRET not in text and READER_PASSWORD not in text, path
    assert ds["jsonData"]["tlsAuthWithCACert"] is True and ds["editable"] is False
    assert hosts.exec(MON, "stat -c '%U:%G %a' /etc/grafana/provisioning/datasources/ansible.yml",
                      check=True).stdout.split() == ["root:grafana", "640"]

    # the login: generic OAuth against IAM's endpoints, the form off, the role from the groups claim
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string("[_top]\n" + hosts.read(MON, "/etc/grafana/grafana.ini").decode())  # keys before any section
    oauth = ini["auth.generic_oauth"]
    issuer = p.env.iam.issuer.rstrip("/")
    assert (oauth["auth_url"], oauth["token_url"], oauth["api_url"]) == (
        f"{issuer}/authorize", f"{issuer}/token", f"{issuer}/userinfo")
    assert oauth["client_id"] == "hosts-grafana" and oauth["client_secret"] == "$__env{AIINFN_IAM_CLIENT_SECRET}"
    assert oauth["enabled"] == "true" and oauth["role_attribute_strict"] == "true"
    assert oauth["groups_attribute_path"] == p.env.iam.groups_claim
    assert ini["auth"]["disable_login_form"] == "true" and ini["server"]["protocol"] == "https"
    assert ini["server"]["root_url"] == f"https://{settings['hostname']}:{monitoring.GRAFANA_PORT}/"
    role = jmespath.compile(oauth["role_attribute_path"])
    claim = p.env.iam.groups_claim
    admin, viewer = settings["iam"]["admin_groups"][0], settings["iam"]["viewer_groups"][0]
    assert role.search({claim: [admin]}) == "Admin"
    assert role.search({claim: [viewer, admin]}) == "Admin"
    assert role.search({claim: [viewer]}) == "Viewer"
    assert role.search({claim: ["someone/else"]}) == "" and role.search({claim: []}) == ""  # strict: refused
    iam = settings["iam"]
    assert set(oauth["allowed_groups"].split(",")) == {*iam["admin_groups"], *iam["viewer_groups"]}

    # the dashboards are the plan's, file for file
    on_disk = {f: json.loads(hosts.read(MON, f"/var/lib/grafana/dashboards/{f}"))
               for f in hosts.exec(MON, "ls /var/lib/grafana/dashboards", check=True).stdout.split()}
    assert on_disk == monitoring.dashboards("testsite")

    # Grafana (the stand-in) serves them and reaches the real Prometheus through its data proxy
    code, _ = _grafana_get(hosts, "/api/health", auth=False)
    assert code == 200
    code, found = _grafana_get(hosts, "/api/search")
    assert code == 200 and sorted(d["uid"] for d in found) == sorted(b["uid"] for b in on_disk.values())
    code, answer = _grafana_get(hosts, f"/api/datasources/proxy/uid/{ds['uid']}/api/v1/query?query=up")
    assert code == 200 and answer["status"] == "success", answer
    # ... which refuses a reader without the password (the basic auth is what lets Grafana in)
    denied = hosts.exec(MON, ["python3", "-c", "import ssl, urllib.request, urllib.error\ntry:\n"
                              f"    urllib.request.urlopen('https://{PROMETHEUS_NAME}/api/v1/query?query=up', "
                              "context=ssl._create_unverified_context())\nexcept urllib.error.HTTPError as e:\n"
                              "    print(e.code)"], check=True).stdout.strip()
    assert denied == "401"

    # a second run changes nothing
    again = hostlib.run_playbook(play, inv, extravars=extra, limit=limit)
    assert again.rc == 0, again.failed
    changed = [(e["event_data"].get("host"), e["event_data"].get("task")) for e in again.events
               if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")]
    assert set(again.changed.values()) == {0}, changed


def test_grafana_refuses_a_run_without_its_client_secret(test_hosts: Callable[..., hostlib.Hosts],
                                                         tmp_path: Path) -> None:
    p = _plan(tmp_path)
    hosts = test_hosts([MON])
    inv, _ = _inventory(p, hosts)
    book = tmp_path / "grafana.yml"
    book.write_text("- name: Grafana\n  hosts: role_monitoring\n  gather_facts: false\n  roles:\n    - role: grafana\n"
                    "      vars:\n        grafana_hostname: '{{ aiinfn_monitoring.hostname }}'\n"
                    "        grafana_iam: '{{ aiinfn_monitoring.iam }}'\n"
                    "        grafana_prometheus_sources: [{name: P, uid: p, url: 'https://p.example', user: r,"
                    " password: x}]\n")
    res = hostlib.run_playbook(book, inv, extravars={"grafana_iam_client_secret": ""})
    assert res.rc != 0
    (host, _task, msg), = res.failed
    assert host == MON and "MISSING (extra variable grafana_iam_client_secret)" in msg
    assert hosts.exec(MON, "test -e /etc/grafana/grafana.ini").returncode != 0  # nothing written
