#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# kafka.sh: a real Apache Kafka cluster (KRaft, combined broker+controller nodes) on loopback, for the
# tests, the benchmark, the demo and a person. Java is only how the tests get a real broker: couponsd is C.
# KAFKA_HOST=ADDR (default 127.0.0.1) makes `start` listen and advertise on ADDR instead: the multi-host
# test's brokers sit on a bridge that network namespaces reach (tests/lib/netns.py). Only `start` reads it;
# the other commands find the address in DIR.
#
#   kafka.sh start N DIR [PARTITIONS]  format and start N nodes (1 or 3) in DIR, wait until every node is
#                                      in the metadata, create couponsd's three topics (PARTITIONS each,
#                                      default 8; on 3 nodes replication factor 3 and min.insync.replicas=2),
#                                      print the bootstrap list
#   kafka.sh stop DIR                  stop exactly the nodes this script started in DIR (SIGTERM, then
#                                      SIGKILL after 20 s); never by name
#   kafka.sh node DIR I ACTION         one node: start | term | kill | pause (SIGSTOP) | resume (SIGCONT)
#   kafka.sh topics DIR SPEC...        create topics, SPEC = name:partitions[:key=value,...] (the cluster's
#                                      replication factor and min.insync.replicas)
#   kafka.sh admin DIR CMD ARGS...     scripts/kafka/Admin.java: leader TOPIC P | controller | wait-isr S TOPIC...
#   kafka.sh bootstrap DIR             print the bootstrap list
#   kafka.sh fetch                     only fetch the broker (Maven) and build the admin tool; print the cache
#
# The broker comes from Maven Central through scripts/kafka/pom.xml, cached outside the build tree in
# $COUPONSD_KAFKA_CACHE (default ~/.cache/couponsd), so the second run needs no network.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
kdir="$here/kafka"

die() { echo "kafka.sh: $*" >&2; exit 1; }

# ---- the broker's jars -------------------------------------------------------------------------------
cache_dir() {
	key=$(cat "$kdir/pom.xml" "$kdir/Admin.java" | sha256sum | cut -c1-12)
	echo "${COUPONSD_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/couponsd}/kafka-$key"
}

fetch() {
	cache=$(cache_dir)
	[ -f "$cache/ok" ] && return 0
	command -v mvn >/dev/null && command -v javac >/dev/null || die "needs mvn and javac (scripts/install-deps.sh)"
	rm -rf "$cache.tmp" && mkdir -p "$cache.tmp/classes"
	mvn -q -B -f "$kdir/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
		-DoutputDirectory="$cache.tmp/libs" >"$cache.tmp/mvn.log" 2>&1 ||
		{ tail -20 "$cache.tmp/mvn.log" >&2; die "fetching the broker with Maven failed"; }
	javac -nowarn -d "$cache.tmp/classes" -cp "$cache.tmp/libs/*" "$kdir/Admin.java" 2>"$cache.tmp/javac.log" ||
		{ cat "$cache.tmp/javac.log" >&2; die "compiling Admin.java failed"; }
	touch "$cache.tmp/ok"
	rm -rf "$cache" && mv "$cache.tmp" "$cache"
}

java_cp() { echo "$(cache_dir)/libs/*:$(cache_dir)/classes"; }

# Sized for 2 shared cores: a small heap and one GC thread (SerialGC) per node.
JAVA_OPTS="-Xms128m -Xmx384m -XX:+UseSerialGC -XX:CICompilerCount=2 -XX:+ExitOnOutOfMemoryError
 -Djava.awt.headless=true -Dlog4j2.configurationFile=$kdir/log4j2.properties"

admin() { fetch && java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$(java_cp)" Admin "$@"; }

# ---- one cluster in DIR --------------------------------------------------------------------------------
host=${KAFKA_HOST:-127.0.0.1}

free_ports() { # N: ports free on $host
	python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind((sys.argv[2], 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1" "$host"
}

node_props() { # DIR I N BROKER_PORT CONTROLLER_PORT VOTERS
	rf=$3; [ "$rf" -gt 3 ] && rf=3
	isr=$((rf > 1 ? 2 : 1))
	cat <<EOF
# Written by scripts/kafka.sh: node $2 of a $3-node test cluster.
process.roles=broker,controller
node.id=$2
controller.quorum.voters=$6
listeners=PLAINTEXT://$host:$4,CONTROLLER://$host:$5
advertised.listeners=PLAINTEXT://$host:$4
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$1/node-$2/data
# Production-like: couponsd never relies on topics being created for it.
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# Failover fast enough to test: a dead broker is fenced within 2.5 s, a stuck follower leaves the ISR in 3 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2500
replica.lag.time.max.ms=3000
auto.leader.rebalance.enable=false
unclean.leader.election.enable=false
# 2 cores for three brokers, Redis, PostgreSQL and couponsd.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
}

# A live process, not a zombie: a killed node's java is reparented to init, which may reap it late.
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }

node_start() { # DIR I
	nd="$1/node-$2"
	# A node just SIGKILLed may take a moment to be gone (a JVM's teardown): wait up to 10 s for it.
	if [ -f "$nd/pid" ]; then
		for _ in $(seq 1 100); do alive "$(cat "$nd/pid")" || break; sleep 0.1; done
		alive "$(cat "$nd/pid")" && die "node $2 in $1 is running already"
	fi
	# shellcheck disable=SC2086
	LOG_DIR="$nd" java $JAVA_OPTS -Dkafka.logs.dir="$nd" -cp "$(java_cp)" kafka.Kafka "$nd/server.properties" \
		>>"$nd/stdout.log" 2>&1 </dev/null &
	echo $! >"$nd/pid"
}

start() { # N DIR [PARTITIONS]
	n=$1 dir=$2 partitions=${3:-8}
	case "$n" in 1 | 3) ;; *) die "start: N is 1 or 3" ;; esac
	fetch
	mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
	[ -e "$dir/nodes" ] && die "start: $dir holds a cluster already (kafka.sh stop $dir)"
	set -- $(free_ports $((2 * n)))
	voters="" bootstrap="" i=1
	for p in "$@"; do
		[ "$i" -gt "$n" ] && break
		eval "bport=\$$i"; eval "cport=\${$((i + n))}"
		voters="${voters:+$voters,}$i@$host:$cport"
		bootstrap="${bootstrap:+$bootstrap,}$host:$bport"
		i=$((i + 1))
	done
	i=1
	for p in "$@"; do
		[ "$i" -gt "$n" ] && break
		eval "bport=\$$i"; eval "cport=\${$((i + n))}"
		mkdir -p "$dir/node-$i"
		node_props "$dir" "$i" "$n" "$bport" "$cport" "$voters" >"$dir/node-$i/server.properties"
		i=$((i + 1))
	done
	echo "$n" >"$dir/nodes"
	echo "$bootstrap" >"$dir/bootstrap"
	format "$dir" "$n"
	i=1; while [ "$i" -le "$n" ]; do node_start "$dir" "$i"; i=$((i + 1)); done
	if ! admin wait "$bootstrap" "$n" "${COUPONSD_KAFKA_START_TIMEOUT:-90}"; then
		for i in $(seq 1 "$n"); do tail -5 "$dir/node-$i/stdout.log" >&2 || true; done
		stop "$dir"; die "start: the cluster did not come up"
	fi
	topics "$dir" "coupon-issue:$partitions" "coupon-issue-results:$partitions" "coupon-issue-dlq:$partitions"
	echo "$bootstrap"
}

# Every node gets the same cluster id; the formats run at once (one JVM each).
format() { # DIR N
	id=$(java -XX:TieredStopAtLevel=1 -cp "$(java_cp)" kafka.tools.StorageTool random-uuid)
	pids=""
	for i in $(seq 1 "$2"); do
		java -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$kdir/log4j2.properties" \
			-Dkafka.logs.dir="$1/node-$i" -cp "$(java_cp)" kafka.tools.StorageTool format \
			-t "$id" -c "$1/node-$i/server.properties" >"$1/node-$i/format.log" 2>&1 &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || die "formatting the KRaft storage failed (see $1/node-*/format.log)"; done
}

topics() { # DIR SPEC...
	dir=$1; shift
	n=$(cat "$dir/nodes")
	rf=$((n >= 3 ? 3 : 1)) isr=$((n >= 3 ? 2 : 1))
	specs=""
	for s in "$@"; do
		name=${s%%:*} rest=${s#*:}
		parts=${rest%%:*} extra=""
		[ "$rest" != "$parts" ] && extra=",${rest#*:}"
		specs="$specs $name:$parts:$rf:min.insync.replicas=$isr$extra"
	done
	# shellcheck disable=SC2086
	admin create "$(cat "$dir/bootstrap")" $specs
}

node() { # DIR I ACTION
	nd="$1/node-$2"
	[ -f "$nd/server.properties" ] || die "node $2: no such node in $1"
	pid=$(cat "$nd/pid" 2>/dev/null || echo 0)
	case "$3" in
	start) node_start "$1" "$2" ;;
	term) kill -TERM "$pid" ;;
	kill) kill -KILL "$pid" ;;
	pause) kill -STOP "$pid" ;;
	resume) kill -CONT "$pid" ;;
	*) die "node: ACTION is start, term, kill, pause or resume" ;;
	esac
}

stop() { # DIR
	[ -f "$1/nodes" ] || die "stop: no cluster in $1"
	pids=""
	for f in "$1"/node-*/pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		# Only a pid that is still our java on this node's properties (pids are reused).
		if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$(dirname "$f")/server.properties"; then
			kill -CONT "$p" 2>/dev/null || true
			kill -TERM "$p" 2>/dev/null && pids="$pids $p"
		fi
		rm -f "$f"
	done
	live=""
	for _ in $(seq 1 200); do
		live=""
		for p in $pids; do alive "$p" && live="$live $p"; done
		[ -z "$live" ] && break
		sleep 0.1
	done
	for p in $live; do kill -KILL "$p" 2>/dev/null || true; done
	rm -f "$1/nodes"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start) [ $# -ge 2 ] || die "usage: kafka.sh start N DIR [PARTITIONS]"; start "$@" ;;
stop) [ $# -eq 1 ] || die "usage: kafka.sh stop DIR"; stop "$1" ;;
node) [ $# -eq 3 ] || die "usage: kafka.sh node DIR I ACTION"; node "$@" ;;
topics) [ $# -ge 2 ] || die "usage: kafka.sh topics DIR SPEC..."; topics "$@" ;;
admin) [ $# -ge 2 ] || die "usage: kafka.sh admin DIR CMD ARGS..."; d=$1 c=$2; shift 2; admin "$c" "$(cat "$d/bootstrap")" "$@" ;;
bootstrap) [ $# -eq 1 ] || die "usage: kafka.sh bootstrap DIR"; cat "$1/bootstrap" ;;
fetch) fetch; cache_dir ;;
*) sed -n '3,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
