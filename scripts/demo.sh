#!/bin/sh
# Builds couponsd and runs it on the embedded default (embedded Kafka) in ./demo,
# showing its process model, a health check and a live reload; leaves it running.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
port=${COUPONSD_DEMO_PORT:-8080}

./scripts/install-deps.sh
./autogen.sh >/dev/null 2>&1
mkdir -p _build/demo
(cd _build/demo && { [ -f Makefile ] || "$top/configure" -q; } && make -j2 >/dev/null)
bin="$top/_build/demo/src/couponsd"

demo="$top/demo"
mkdir -p "$demo"
conf="$demo/couponsd.yaml"
write_config() {
	cat >"$conf" <<YAML
# Written by scripts/demo.sh: a development setup on loopback with embedded Kafka.
daemon:
  user: ""
  group: ""
  pid_file: $demo/couponsd.pid
  control_socket: $demo/control.sock
  shutdown_timeout: 10s
log:
  level: info
  file: $demo/couponsd.log
http:
  listen: ["127.0.0.1:$port"]
  workers: $1
kafka:
  brokers: embedded
  partitions: 4
YAML
}

# A demo left running from an earlier run is stopped first (it owns the port and the pid file).
if [ -S "$demo/control.sock" ]; then
	"$bin" -c "$conf" -s stop >/dev/null 2>&1 || true
	sleep 1
fi

write_config 2
echo "== couponsd -t -c $conf"
"$bin" -t -c "$conf"
echo "== starting couponsd (log: $demo/couponsd.log)"
nohup "$bin" -c "$conf" >"$demo/stderr.log" 2>&1 &
master=$!
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

show_tree() {
	ps -o pid=,args= -p "$master"
	ps -o pid=,args= --ppid "$master" | sed 's/^/  /'
}
echo "== the process model, as ps shows it"
show_tree
echo "== curl http://127.0.0.1:$port/healthz"
curl -sS "http://127.0.0.1:$port/healthz"
echo
echo "== reload with http.workers: 3 (couponsd -s reload waits for the new generation)"
write_config 3
"$bin" -c "$conf" -s reload && echo "reload: ok"
sleep 1
show_tree
cat <<MSG

couponsd is running as pid $master on 127.0.0.1:$port.
  curl -i http://127.0.0.1:$port/healthz
  $bin -c $conf -s reload     # re-read $conf
  $bin -c $conf -s stop       # graceful stop
  tail -f $demo/couponsd.log
MSG
