# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_multihost.py: three hosts, each a network namespace with an address of its own and its own couponsd
(kafka.owned_partitions "all": every host a hot standby of every partition), on one real 3-node Kafka cluster,
one PostgreSQL and one Redis listening on a bridge (198.18.0.0/15, RFC 2544's benchmarking range). The driver
spreads a flash sale over the hosts like a load balancer with a /readyz health check (tests/lib/multihost.py).
During the sale (issue 13):

    host-kill        SIGKILL of the whole process tree of the host that owns the most partitions; it is started
                     again later and must come back as a standby
    host-link-cut    the owner's link cut (eth0 down in its namespace) for longer than the dead-session bound
                     (postgres.dead_session_timeout), then restored: the cut-off host writes no decision after
                     the cut (a test-only trigger notes the address of the session that wrote each decision) and
                     rejoins as a standby
    rolling-restart  every host in turn: reload (SIGHUP), then stop (SIGTERM) and start; no 503 at all and no
                     connection reset (each host drains for daemon.stop_drain before it stops accepting)

Each prints the usual figures (accepted, decided, lost, oversold, duplicates, drift), the answers by host, and
the takeover time of every partition a fault moved (partition_owners.since minus the moment of the fault where
the product has that table, else the moment pg_locks showed another session holding the partition's lock), and
asserts lost = oversold = duplicates = drift = 0 and every takeover <= 5 s.

The file starts its own cluster on the bridge's address, whatever Kafka the run uses, and removes the
namespaces, links, servers and cluster in a finally; a run killed before that is cleaned up by the next one
(netns.sweep_leftovers). It skips only when this machine cannot create a network namespace."""
import sys
import time
import traceback

import chaos
import multihost
import netns
from harness import wait_for
from multihost import Scenario, writes_by
from tap import Tap

SITE = multihost.Site(hosts=3)
DEAD_SESSION = 3.0  # postgres.dead_session_timeout
CUT_MARGIN = 3.0


def overrides():
    return {"postgres": {"dead_session_timeout": f"{DEAD_SESSION:g}s"}}


def standby_evidence(s, d, since, what):
    """d holds no partition lock, is in service again (/readyz 200, and the balancer sent it requests after
    since), and, where the product has the metric, reports itself owner of nothing."""
    out = []
    owned = s.owners.owned_by(d.host)
    out.append((not owned, f"{d.node} {what} owns no partition (a standby)", f"owns {owned}"))
    served = [(at, n, st) for at, n, st in s.load.served if n == d.node and at > since]
    back = wait_for(lambda: s.balancer.up.get(d.node), 5, 0.1)
    out.append((back, f"{d.node} {what} is back in the balancer's rotation (/readyz 200); it answered "
                      f"{len(served)} requests of the sale after", f"its answers: {dict(s.load.by_host.get(d.node, {}))}"))
    lines = d.metric_lines("couponsd_partition_owner")
    if lines:
        ones = [ln for ln in lines if ln.rstrip().endswith(" 1")]
        out.append((not ones, f"{d.node} {what}: couponsd_partition_owner is 0 for every partition", "\n".join(lines)))
    return out


def test_host_kill(t):
    seen = {}

    def fault(f):
        f.load.wait_until(0.3)
        d = seen["victim"] = f.busiest()
        seen["owned"] = f.owners.owned_by(d.host)
        f.kill_host(d)
        moved = f.wait_moved(d, 15)
        f.note(f"{d.node}'s partitions {seen['owned']} {'owned by the other hosts now' if moved else 'NOT moved'}")
        f.sleep(1.0)
        seen["restarted"] = f.load.elapsed()
        f.start_host(d)

    def evidence(s):
        d = seen["victim"]
        yield bool(seen["owned"]), f"{d.node} owned partitions {seen['owned']} when it was killed", s.owners_text()
        yield from standby_evidence(s, d, seen["restarted"], "started again after the kill")
    Scenario(t, SITE, "host-kill", duration=12.0, allow_errors=True, overrides=overrides()).run(fault, evidence)


def test_link_cut(t):
    seen = {}
    cut_for = DEAD_SESSION + CUT_MARGIN

    def fault(f):
        f.load.wait_until(0.2)
        d = seen["victim"] = f.busiest()
        seen["owned"] = f.owners.owned_by(d.host)
        seen["at"] = f.cut(d)
        moved = f.wait_moved(d, cut_for)
        f.note(f"{d.node}'s partitions {seen['owned']} {'owned by the other hosts now' if moved else 'NOT moved'}")
        f.sleep(max(0.0, seen["at"] + cut_for - time.time()))
        f.restore(d)
        seen["restored"] = f.load.elapsed()
        back = wait_for(lambda: d.readyz() == 200, 15, 0.2)
        f.note(f"{d.node}: /readyz {'200 again' if back else d.readyz()}")
        f.sleep(2.0)  # its consumers meet the sessions PostgreSQL ended, and must stand by

    def evidence(s):
        d = seen["victim"]
        yield bool(seen["owned"]), f"{d.node} owned partitions {seen['owned']} when its link was cut", s.owners_text()
        after = writes_by(s.fleet, d.host, seen["at"])
        lost = s.lost_at(d.node, "link cut")
        late = [w for w in after if w[2] not in lost or w[3] >= lost[w[2]]]
        s.t.diag(f"chaos host-link-cut: {d.node} lost partitions {sorted(lost)} "
                 f"{sorted(round(v - seen['at'], 2) for v in lost.values())}s after the cut; it wrote {len(after)} "
                 f"decisions after the cut (requests already on the wire), the last "
                 f"{(max(w[3] for w in after) - seen['at']) if after else 0:.3f}s after it")
        yield not late, f"{d.node} wrote no decision after it lost ownership (link cut for {cut_for:g}s, " \
                        f"dead-session bound {DEAD_SESSION:g}s; a test trigger notes each decision's writer)", \
            f"{len(late)} rows (table, requestId, partition, time - cut): " \
            f"{[(tb, r, p, round(at - seen['at'], 3)) for tb, r, p, at in late[:10]]}; lost at {lost}"
        yield from standby_evidence(s, d, seen["restored"], "after its link came back")
    Scenario(t, SITE, "host-link-cut", duration=18.0, allow_errors=True, overrides=overrides()).run(fault, evidence)


def test_rolling_restart(t):
    def fault(f):
        f.load.wait_until(0.05)
        for d in f.fleet.daemons:
            f.reload(d)
            f.sleep(1.0)
            f.stop_host(d)
            moved = f.wait_moved(d, 10)
            f.note(f"{d.node}'s partitions {'owned by the other hosts' if moved else 'NOT moved'}")
            f.start_host(d)
            f.sleep(2.0)  # each host's turn amid the sale, not all at its start

    def evidence(s):
        n = s.v.answers.get("503", 0)
        yield n == 0, f"no 503 ({n}): reloads and stops behind a /readyz health check refuse nothing", \
            f"503s (time sent, host, message): {s.load.refused_503[:30]}"
        broken = s.load.cut_short
        yield not broken, f"no connection reset or cut short ({len(broken)}): each stop drains for " \
                          f"{multihost.STOP_DRAIN:g}s (daemon.stop_drain) while the balancer moves away", \
            f"(time sent, host, error): {broken[:30]}"
    Scenario(t, SITE, "rolling-restart", users=3000, duration=20.0, overrides=overrides()).run(fault, evidence)


def main():
    chaos.skip_under_distcheck()
    ok, why = netns.available()
    if not ok:
        print(f"1..0 # SKIP {why}")
        return 0
    t = Tap()
    began = time.monotonic()
    try:
        try:
            SITE.up()
        except Exception:  # noqa: BLE001 - reported as a failure, and torn down below
            t.ok(False, "the site came up: namespaces, PostgreSQL, Redis and a 3-node Kafka on the bridge",
                 traceback.format_exc())
            print(f"1..{t.count}")
            return 0
        t.diag(f"site: bridge {SITE.topology.bridge} {SITE.addr} ({SITE.topology.subnet}), hosts {SITE.hosts}, "
               f"kafka {SITE.kafka.bootstrap}; up in {time.monotonic() - began:.1f}s; dead-session bound "
               f"{DEAD_SESSION:g}s"
               + (f"; removed leftovers {SITE.topology.swept}" if SITE.topology.swept else ""))
        t.run(test_host_kill, test_link_cut, test_rolling_restart)
    finally:
        errors = SITE.down()
        print(f"# teardown{': ' + str(errors) if errors else ' complete'}; the file took "
              f"{time.monotonic() - began:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
