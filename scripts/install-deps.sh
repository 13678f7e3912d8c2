#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs every Debian 12 package couponsd needs to build, test and run its
# demo. Idempotent: packages already present are left alone and apt is only
# asked when something is missing.
set -eu

PACKAGES="
build-essential autoconf automake libtool pkg-config
librdkafka-dev libevent-dev libjansson-dev libhiredis-dev libpq-dev libyaml-dev
redis-server postgresql postgresql-contrib
python3 curl procps ca-certificates iproute2
openjdk-17-jdk-headless maven
gnuplot-nox valgrind linux-perf
clang-format cppcheck clang libclang-rt-14-dev
debhelper lintian rpm systemd logrotate
systemd-container debootstrap
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing:$missing (run as root to install)" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' own redis and postgresql services from
# starting: couponsd's scripts start their own on loopback ports.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ "$had_policy" -eq 0 ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi
trap '[ "$had_policy" -eq 0 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
