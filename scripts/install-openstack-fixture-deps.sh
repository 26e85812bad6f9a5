#!/usr/bin/env bash
# Debian packages of the local OpenStack control plane the integration tests start
# (tests/support/openstack/openstack_fixture.py): Debian bookworm's OpenStack Zed.
#
#   keystone, placement-api               identity and placement (run under uwsgi)
#   python3-nova nova-api nova-conductor  compute API and control services; nova-compute's code is in
#   nova-scheduler                        python3-nova (the nova-compute .deb would pull in libvirt/qemu)
#   glance                                images (file store)
#   neutron-server                        networks (ML2, no agents)
#   python3-cinder                        volumes (fake driver; the cinder-* .debs would pull in lvm2, tgt)
#   mariadb-server rabbitmq-server        database and message queue
#   uwsgi uwsgi-plugin-python3            WSGI server of keystone and placement
#   python3-pymysql curl                  database driver; endpoint probes
#
# Nothing is started here: maintainer scripts are kept from starting daemons (policy-rc.d answers 101,
# debconf declines every database, endpoint and queue set-up); the tests start and stop what they need.
# Re-runnable: exits at once when everything is installed. About 2.5 minutes on a fresh machine.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "$0")/lib/debian-packages.sh"
packages=(
  keystone placement-api
  python3-nova nova-api nova-conductor nova-scheduler
  glance neutron-server python3-cinder
  mariadb-server rabbitmq-server
  uwsgi uwsgi-plugin-python3
  python3-pymysql curl
)
debian_packages_missing "${packages[@]}"
if [ "${#DEBIAN_PACKAGES_MISSING[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  # Every "configure a database / register an endpoint / set up RabbitMQ for me?" question: no.
  {
    for q in keystone/configure_db keystone/create-admin-tenant keystone/register-endpoint \
      placement/configure_db placement/configure_ksat placement/configure_api-endpoint \
      nova/configure_db novaapi/configure_db nova/configure_ksat nova/configure_rabbit \
      nova/configure_api-endpoint glance/configure_db glance/configure_ksat glance/configure_api-endpoint \
      neutron/configure_db neutron/configure_ksat neutron/configure_api-endpoint neutron/configure_rabbit; do
      echo "${q%%/*} $q boolean false"
    done
  } | debconf-set-selections
fi
debian_packages_install install-openstack-fixture-deps --no-daemons --keep-config -- "${packages[@]}"
