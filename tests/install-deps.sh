#!/bin/sh
# Install everything the demo, the test suite and the benchmarks need on a fresh Debian 12 machine
# (the system test builds its Debian 12 and 13 containers with mmdebstrap; make repo needs apt-utils, gpg).
# Idempotent: re-running it installs nothing new. Run as root.
set -eu
PACKAGES="
  python3 python3-systemd python3-sdnotify python3-cheroot python3-configobj python3-zeroconf
  rsync openssh-client openssh-server sqlite3 iproute2 procps psmisc curl restic
  python3-pytest python3-flake8 mypy
  systemd systemd-container mmdebstrap debian-archive-keyring
  debhelper dh-python python3-all python3-setuptools fakeroot build-essential lintian
  apt-utils gpg
  nginx-light prometheus chromium wrk python3-cherrypy3
"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
# The simulated ethoscopes log in as this user (as real ethoscopes do).
id ethoscope >/dev/null 2>&1 || useradd --system --create-home --shell /bin/sh ethoscope
usermod -p '*' ethoscope
mkdir -p /run/sshd /ethoscope_data
