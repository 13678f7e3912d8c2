#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Builds couponsd and runs a flash sale in ./demo: a local redis-server and PostgreSQL on loopback ports, the
# daemon on embedded Kafka, a coupon of 100 created through the admin API and a burst of 2,000 distinct users;
# prints the outcome (issued = stock, nothing oversold) and leaves everything running.
#
#   sh scripts/demo.sh                 the embedded Kafka (librdkafka's mock cluster, the zero-setup default)
#   sh scripts/demo.sh --kafka real    a real 3-node Apache Kafka cluster (KRaft) in ./demo/kafka, started
#                                      with scripts/kafka.sh (replication factor 3, min.insync.replicas=2)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
kafka=embedded
case "${1:-} ${2:-}" in
" " | "--kafka embedded") ;;
"--kafka real") kafka=real ;;
*) echo "usage: sh scripts/demo.sh [--kafka embedded|real]" >&2; exit 2 ;;
esac
port=${COUPONSD_DEMO_PORT:-8080}
stock=${COUPONSD_DEMO_STOCK:-100}
users=${COUPONSD_DEMO_USERS:-2000}

./scripts/install-deps.sh
./autogen.sh >/dev/null 2>&1
mkdir -p _build/demo
(cd _build/demo && { [ -f Makefile ] || "$top/configure" -q; } && make -j2 >/dev/null)
bin="$top/_build/demo/src/couponsd"

demo="$top/demo"
mkdir -p "$demo"
conf="$demo/couponsd.yaml"

# A demo left running from an earlier run is stopped first (it owns the port, the pid file and the servers).
if [ -S "$demo/control.sock" ]; then
	"$bin" -c "$conf" -s stop >/dev/null 2>&1 || true
	sleep 1
fi
python3 tests/lib/servers.py --stop "$demo/servers" >/dev/null 2>&1 || true
rm -rf "$demo/servers"
[ -f "$demo/kafka/nodes" ] && sh scripts/kafka.sh stop "$demo/kafka"
rm -rf "$demo/kafka"

echo "== starting redis-server and PostgreSQL in $demo/servers (loopback, free ports)"
eval "$(python3 tests/lib/servers.py --demo "$demo/servers")"
echo "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
echo "postgres     pid $PG_PID on 127.0.0.1:$PG_PORT ($PG_CONNINFO)"

brokers=embedded
if [ "$kafka" = real ]; then
	echo "== starting a real 3-node Kafka cluster in $demo/kafka (scripts/kafka.sh; the first run fetches it with Maven)"
	brokers=$(sh scripts/kafka.sh start 3 "$demo/kafka" 4)
	echo "kafka brokers $brokers (topics coupon-issue, coupon-issue-results, coupon-issue-dlq: 4 partitions, RF 3)"
fi

token=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
cat >"$conf" <<YAML
# Written by scripts/demo.sh: a development setup on loopback with $kafka Kafka.
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
  workers: 2
admin:
  token: "$token"
kafka:
  brokers: "$brokers"
  partitions: 4
redis:
  host: 127.0.0.1
  port: $REDIS_PORT
  key_prefix: "demo:"
postgres:
  conninfo: "$PG_CONNINFO"
YAML

echo "== couponsd -t -c $conf"
"$bin" -t -c "$conf"
echo "== starting couponsd (log: $demo/couponsd.log)"
nohup "$bin" -c "$conf" >"$demo/stderr.log" 2>&1 &
master=$!
for _ in $(seq 1 300); do
	curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done

echo "== the process model, as ps shows it"
ps -o pid=,args= -p "$master"
ps -o pid=,args= --ppid "$master" | sed 's/^/  /'
echo "== curl http://127.0.0.1:$port/readyz"
curl -sS "http://127.0.0.1:$port/readyz"
echo

echo "== POST /api/admin/coupons: a coupon with $stock in stock"
created=$(curl -sS -X POST -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
	-d "{\"name\":\"demo flash sale\",\"totalQuantity\":$stock}" "http://127.0.0.1:$port/api/admin/coupons")
echo "$created"
coupon=$(printf '%s' "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["couponId"])')

echo "== $users distinct users ask for coupon $coupon at once; then every accepted request is followed to its decision"
status=0
PYTHONPATH="$top/tests/lib" python3 - "$port" "$coupon" "$users" "$PG_PORT" "$REDIS_PORT" <<'PY' || status=1
import subprocess, sys, time
from harness import issue_burst, wait_all_final

port, coupon, users, pg_port, redis_port = map(int, sys.argv[1:])
started = time.monotonic()
answers = issue_burst(port, coupon, list(range(1, users + 1)), threads=64, timeout=120)
burst = time.monotonic() - started
accepted = [b["requestId"] for _, st, b in answers if st == 202 and b]
finals = wait_all_final(port, accepted, timeout=120)
decided = time.monotonic() - started
codes = {}
for _, st, b in answers:
    key = f"{st} {b.get('error')}" if isinstance(b, dict) and b.get("error") else str(st)
    codes[key] = codes.get(key, 0) + 1
outcome = {}
for f in finals.values():
    key = f"{f['status']} {f['reason']}" if f and f.get("reason") else (f or {}).get("status", "no answer")
    outcome[key] = outcome.get(key, 0) + 1


def psql(sql):
    return subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-d", "couponsd",
                           "-c", sql], capture_output=True, text=True).stdout.strip()


total = int(psql(f"SELECT total_quantity FROM coupons WHERE id = {coupon}") or 0)
rows = int(psql(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {coupon}") or 0)
dups = int(psql(f"SELECT count(*) - count(DISTINCT user_id) FROM issued_coupons WHERE coupon_id = {coupon}") or 0)
remaining = psql(f"SELECT remaining FROM coupons WHERE id = {coupon}")
stock = subprocess.run(["redis-cli", "-p", str(redis_port), "GET", f"demo:{{{coupon}}}:stock"], capture_output=True,
                       text=True).stdout.strip()
issued = outcome.get("ISSUED", 0)
undecided = sum(n for k, n in outcome.items() if not k.startswith(("ISSUED", "REJECTED")))


def line(label, value):
    print(f"  {label:<24}{value}")


line("requests sent", users)
for k in sorted(codes):
    line(f"answered {k}", codes[k])
line("issued", f"{issued}   (stock {total})")
for k in sorted(outcome):
    if k.startswith("REJECTED"):
        line(f"rejected {k[9:]}", outcome[k])
line("undecided", undecided)
line("oversold", f"{max(0, rows - total)}   (issued rows {rows} for a stock of {total})")
line("duplicate users", dups)
line("PostgreSQL remaining", remaining)
line("Redis stock", stock)
line("time", f"{burst:.2f}s for the burst ({users / burst:.0f} requests/s), "
             f"{decided:.2f}s until every request was decided")
ok = issued == total == rows and dups == 0 and undecided == 0 and remaining == "0" and stock == "0"
print("  => " + ("every coupon issued once, to distinct users, nothing oversold, Redis and PostgreSQL agree" if ok
                 else "PROBLEM: the outcome above breaks an invariant"))
sys.exit(0 if ok else 1)
PY

echo "== PATCH /api/admin/coupons/$coupon {\"endsAt\":\"now\"}: the operator closes the sale"
curl -sS -X PATCH -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
	-d '{"endsAt":"now"}' "http://127.0.0.1:$port/api/admin/coupons/$coupon" || status=1
echo
echo "== GET /api/admin/coupons: the final figures of every sale"
curl -sS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/admin/coupons" | python3 -m json.tool || status=1

cat <<MSG

couponsd is running as pid $master on 127.0.0.1:$port (admin token: $token).
  curl -i -X POST 'http://127.0.0.1:$port/api/coupons/$coupon/issue?userId=$((users + 1))'
  curl -i http://127.0.0.1:$port/api/coupons/$coupon
  curl -i http://127.0.0.1:$port/api/users/1/coupons
  curl -N http://127.0.0.1:$port/api/requests/REQUEST_ID/events      # Server-Sent Events until decided
  curl -i -X POST -H 'Authorization: Bearer $token' -H 'Content-Type: application/json' \\
       -d '{"name":"another","totalQuantity":10}' http://127.0.0.1:$port/api/admin/coupons
  curl -i -X PATCH -H 'Authorization: Bearer $token' -d '{"addQuantity":5,"endsAt":null}' \\
       http://127.0.0.1:$port/api/admin/coupons/$coupon      # reopen it with 5 more
  curl -N -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/admin/coupons/$coupon/events
  curl -s -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/admin/coupons/$coupon/history
  $PG_PSQL -c 'SELECT * FROM coupons'
  redis-cli -p $REDIS_PORT --scan --pattern 'demo:*' | head
  $bin -c $conf -s reload     # re-read $conf
  tail -f $demo/couponsd.log
To stop everything:
  $bin -c $conf -s stop && python3 $top/tests/lib/servers.py --stop $demo/servers
MSG
[ "$kafka" = real ] && echo "  sh $top/scripts/kafka.sh stop $demo/kafka      # the real Kafka cluster"
exit $status
