# SPDX-License-Identifier: BSD-2-Clause
"""test_admin_ops.py: the operator's API (issue 15) against the real daemon during running flash sales:
list, PATCH (ordered on the coupon's partition), the live figures stream and the audit trail."""
import http.client
import json
import threading
import time
import traceback
import uuid

from harness import (Budget, Daemon, check_survivors, expect, kafka_consume, kafka_produce, murmur2, wait_for)
from tap import Tap

TOKEN = "ops-admin-token-51c2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARTITIONS = 2
BUDGET = Budget(150)


def daemon():
    return Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=2, partitions=PARTITIONS)


def patch(d, coupon, body, headers=AUTH, timeout=15):
    return d.json("PATCH", f"/api/admin/coupons/{coupon}", body, headers, timeout=timeout)


def admin_get(d, path):
    return d.json("GET", path, headers=AUTH)


def partition_of(coupon):
    return (murmur2(str(coupon).encode()) & 0x7FFFFFFF) % PARTITIONS


class Flood:
    """Client threads issuing to one coupon for fresh users, one request at a time each, until stopped."""

    def __init__(self, d, coupon, threads=3, first_user=1):
        self.d, self.coupon, self.stop_flag = d, coupon, threading.Event()
        self.lock, self.next_user, self.accepted = threading.Lock(), first_user, []  # [(rid, user, t_202)]
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop_flag.is_set():
            with self.lock:
                user, self.next_user = self.next_user, self.next_user + 1
            try:
                st, body, _ = self.d.issue(self.coupon, user)
            except OSError:
                continue
            if st == 202:
                with self.lock:
                    self.accepted.append((body["requestId"], user, time.monotonic()))
            elif st in (409, 429):
                time.sleep(0.005)

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for th in self.threads:
            th.join(20)


def finals(d, accepted, timeout=40):
    """requestId -> final status body, for every accepted request (None where none came)."""
    out = {}
    for rid, _, _ in accepted:
        out[rid] = d.wait_final(rid, timeout=timeout)
    return out


def log_of(d, coupon):
    """The coupon's events in its partition's log order: ("req", requestId) or ("admin", event dict)."""
    msgs = kafka_consume(d.kafka_bootstrap(), d.topic(), partition=partition_of(coupon))
    out, seen = [], set()
    for m in msgs:
        try:
            ev = json.loads(m["value"])
        except ValueError:
            continue
        if ev.get("couponId") != coupon:
            continue
        if "admin" in ev:
            if ev["changeId"] not in seen:
                seen.add(ev["changeId"])
                out.append(("admin", ev))
        elif ev.get("requestId") not in seen:
            seen.add(ev["requestId"])
            out.append(("req", ev["requestId"]))
    return out


# ---- the parts ------------------------------------------------------------------------------------------

def part_auth_and_errors(t, d):
    c = d.create_coupon(5, name="auth")
    for method, path, body in (("GET", "/api/admin/coupons", None), ("PATCH", f"/api/admin/coupons/{c}", {"name": "x"}),
                               ("GET", f"/api/admin/coupons/{c}/history", None),
                               ("GET", f"/api/admin/coupons/{c}/events", None)):
        st, b, _ = d.json(method, path, body, {"Authorization": "Bearer wrong"})
        t.ok(st == 401 and isinstance(b, dict) and b.get("error") == "UNAUTHORIZED", f"{method} {path}: 401 without the token", (st, b))
    expect(t, d.json("DELETE", f"/api/admin/coupons/{c}", None, AUTH)[0], 405, "DELETE on a coupon: 405")
    expect(t, d.json("POST", f"/api/admin/coupons/{c}/history", None, AUTH)[0], 405, "POST on history: 405")
    for body, what in (({}, "an empty change"), ({"totalQuantity": 0}, "totalQuantity 0"),
                       ({"totalQuantity": 5, "addQuantity": 1}, "both totalQuantity and addQuantity"),
                       ({"color": "red"}, "an unknown member"), ({"endsAt": "yesterday"}, "a bad time"),
                       ({"startsAt": "2030-01-02T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}, "endsAt before startsAt"),
                       ([1], "not an object")):
        st, b, _ = patch(d, c, body)
        t.ok(st == 400 and b.get("error") == "INVALID_ARGUMENT", f"PATCH with {what}: 400 INVALID_ARGUMENT", (st, b))
    st, b, _ = patch(d, 987654321, {"name": "ghost"})
    t.ok(st == 404 and b.get("error") == "COUPON_NOT_FOUND", "PATCH of an unknown coupon: 404", (st, b))
    st, b, _ = admin_get(d, "/api/admin/coupons/987654321/history")
    t.ok(st == 404 and b.get("error") == "COUPON_NOT_FOUND", "history of an unknown coupon: 404", (st, b))
    for q in ("status=GONE", "limit=0", "limit=501", "cursor=-1", "cursor=x"):
        st, b, _ = admin_get(d, f"/api/admin/coupons?{q}")
        t.ok(st == 400 and b.get("error") == "INVALID_ARGUMENT", f"list ?{q}: 400", (st, b))


def part_list(t, d):
    ids = [d.create_coupon(n, name=f"list {n}") for n in (2, 3, 4)]
    for user in (1, 2, 3):  # sells coupon ids[0] out and rejects one
        st, b, _ = d.issue(ids[0], user)
        if st == 202:
            d.wait_final(b["requestId"])
    st, body, _ = admin_get(d, f"/api/admin/coupons?cursor={ids[0] - 1}&limit=2")
    t.eq(st, 200, "list: 200")
    got = body.get("coupons", [])
    t.eq([c["couponId"] for c in got], ids[:2], "list: the first page in id order from the cursor")
    t.eq(body.get("nextCursor"), ids[1], "list: nextCursor is the last id of a full page")
    first = got[0] if got else {}
    keys = {"couponId", "name", "totalQuantity", "remaining", "issued", "rejected", "pending", "status", "startsAt", "endsAt"}
    t.eq(set(first), keys, "list: each coupon's keys")
    t.eq((first.get("totalQuantity"), first.get("remaining"), first.get("issued")), (2, 0, 2), "list: total, remaining, issued from PostgreSQL")
    t.ok(first.get("rejected", {}).get("SOLD_OUT", 0) >= 0 and first.get("status") == "SOLD_OUT", "list: SOLD_OUT with rejections by reason", first)
    t.ok(isinstance(first.get("pending"), int), "list: pending is a number (the partition's backlog)", first)
    st, body, _ = admin_get(d, f"/api/admin/coupons?cursor={ids[1]}")
    t.ok(any(c["couponId"] == ids[2] for c in body.get("coupons", [])), "list: the next page goes on from nextCursor")
    st, body, _ = admin_get(d, "/api/admin/coupons?status=SOLD_OUT&limit=500")
    t.ok(ids[0] in [c["couponId"] for c in body["coupons"]] and all(c["status"] == "SOLD_OUT" for c in body["coupons"]),
         "list ?status=SOLD_OUT: only sold-out coupons, this one among them")


def part_rename_move_history(t, d):
    c = d.create_coupon(10, name="before")
    st, b, _ = patch(d, c, {"name": "after", "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z"})
    t.eq(st, 200, "PATCH rename and window: 200 once decided")
    t.eq((b.get("after") or {}).get("name"), "after", "PATCH answers the coupon after the change")
    t.ok(wait_for(lambda: d.get_json(f"/api/coupons/{c}")[1].get("name") == "after", 3),
         "GET /api/coupons follows within the documented second")
    st, h, _ = admin_get(d, f"/api/admin/coupons/{c}/history")
    ch = (h.get("changes") or [{}])[0]
    t.eq((st, len(h.get("changes", [])), ch.get("outcome")), (200, 1, "APPLIED"), "history: one APPLIED change")
    t.eq((ch.get("before", {}).get("name"), ch.get("after", {}).get("name")), ("before", "after"), "history: before and after")
    t.ok(ch.get("tokenId") and TOKEN not in json.dumps(h), "history: a token id, never the token", ch.get("tokenId"))
    t.ok(ch.get("changeId") == b.get("changeId") and ch.get("requestedAt") and ch.get("decidedAt"), "history: changeId and times", ch)


def part_reject_lower_total(t, d):
    c = d.create_coupon(5, name="lower")
    for user in (1, 2, 3):
        d.wait_final(d.issue(c, user)[1]["requestId"])
    st, b, _ = patch(d, c, {"totalQuantity": 2})
    t.ok(st == 409 and b.get("error") == "TOTAL_BELOW_ISSUED", "PATCH totalQuantity below issued: 409 TOTAL_BELOW_ISSUED", (st, b))
    t.eq(d.get_json(f"/api/coupons/{c}")[1].get("totalQuantity"), 5, "the total is unchanged")
    st, b, _ = patch(d, c, {"totalQuantity": 3})
    t.eq((st, (b.get("after") or {}).get("remaining")), (200, 0), "lowering to exactly what is issued: 200, remaining 0")
    h = admin_get(d, f"/api/admin/coupons/{c}/history")[1]["changes"]
    t.eq([x["outcome"] for x in h], ["REJECTED", "APPLIED"], "history: the refusal is recorded too, in order")


def part_add_stock_sold_out(t, d):
    """A running flash sale sells out; stock is added while clients keep coming: exactly the new units are
    issued, to the earliest requests after the change in the partition's log; the ones before stay rejected."""
    c = d.create_coupon(3, name="restock")
    with Flood(d, c) as flood:
        wait_for(lambda: d.get_json(f"/api/coupons/{c}")[1].get("remaining") == 0, 15)
        time.sleep(0.3)
        st, b, _ = patch(d, c, {"addQuantity": 4})
        t.eq(st, 200, "PATCH addQuantity 4 on a sold-out coupon during the sale: 200")
        time.sleep(2.0)
    res = finals(d, flood.accepted)
    t.ok(all(v and v.get("status") in ("ISSUED", "REJECTED") for v in res.values()), "every 202 is final")
    issued = {rid for rid, v in res.items() if v and v["status"] == "ISSUED"}
    t.eq(len(issued), 7, "exactly 3 + 4 units issued")
    t.eq(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}"), "7", "7 rows in PostgreSQL")
    stock, want, order = 3, set(), log_of(d, c)
    for kind, x in order:
        if kind == "admin":
            stock += x["admin"].get("addQuantity", 0)
        elif x in res and stock > 0:
            stock, _ = stock - 1, want.add(x)
    expect(t, issued, want, "the issued requests are the earliest in log order around the change (FCFS replay)")
    t.ok(wait_for(lambda: d.redis_stock(c) == 0, 5), "Redis stock converged to remaining 0", d.redis_stock(c))
    h = admin_get(d, f"/api/admin/coupons/{c}/history")[1]["changes"]
    t.eq([(x["before"]["totalQuantity"], x["after"]["totalQuantity"]) for x in h], [(3, 7)], "history: 3 -> 7, once")


def part_add_stock_log_order(t, d):
    """The same, exactly: requests and an admin event written straight into the partition in a known order."""
    c = d.create_coupon(1, name="exact")
    boot, topic, at = d.kafka_bootstrap(), d.topic(), time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    reqs = [str(uuid.uuid4()) for _ in range(6)]

    def req(i):
        kafka_produce(boot, topic, json.dumps({"v": 1, "requestId": reqs[i], "couponId": c, "userId": 100 + i,
                                               "acceptedAt": at}), key=c)
    for i in range(3):
        req(i)
    change = str(uuid.uuid4())
    admin = json.dumps({"v": 1, "changeId": change, "couponId": c, "tokenId": "0badcafe", "acceptedAt": at,
                        "admin": {"addQuantity": 2}})
    kafka_produce(boot, topic, admin, key=c)
    kafka_produce(boot, topic, admin, key=c)  # a producer retry: applied once
    for i in range(3, 6):
        req(i)
    got = [(d.wait_final(r) or {}).get("status") for r in reqs]
    expect(t, got, ["ISSUED", "REJECTED", "REJECTED", "ISSUED", "ISSUED", "REJECTED"],
           "in log order: 1 unit, two sold out, the change (+2), two issued, one sold out")
    t.eq(d.sql_scalar(f"SELECT total_quantity || '/' || remaining FROM coupons WHERE id = {c}"), "3/0",
         "the change applied once although it is twice in the log")
    t.eq(d.sql_scalar(f"SELECT count(*) FROM coupon_changes WHERE change_id = '{change}'"), "1", "one audit row")


def part_close_early(t, d):
    c = d.create_coupon(100000, name="close")
    with Flood(d, c) as flood:
        time.sleep(1.0)
        st, b, _ = patch(d, c, {"endsAt": "now"})
        t.eq(st, 200, "PATCH endsAt now during the sale: 200 once decided")
        t_close = time.monotonic()
        time.sleep(1.5)
    res = finals(d, flood.accepted)
    t.ok(all(v and v.get("status") in ("ISSUED", "REJECTED") for v in res.values()), "every 202 is final")
    late = d.sql_scalar(f"SELECT count(*) FROM issued_coupons i, coupon_changes ch WHERE i.coupon_id = {c} AND "
                        f"ch.coupon_id = {c} AND i.issued_at > ch.decided_at")
    t.eq(late, "0", "no issue decided after the close is ISSUED")
    after = [res[rid] for rid, _, t202 in flood.accepted if t202 > t_close]
    t.ok(all(v["status"] == "REJECTED" and v["reason"] == "NOT_OPEN" for v in after),
         f"the {len(after)} requests accepted after the close are REJECTED NOT_OPEN")
    seen_admin, bad = False, []
    for kind, x in log_of(d, c):
        seen_admin |= kind == "admin"
        if kind == "req" and seen_admin and x in res and res[x]["status"] == "ISSUED":
            bad.append(x)
    t.eq(bad, [], "nothing after the close in log order is ISSUED")
    t.eq(d.get_json(f"/api/coupons/{c}")[1].get("status"), "CLOSED", "the coupon is CLOSED")
    st, b, _ = d.issue(c, 10 ** 9)
    t.ok(st == 409 and b.get("error") == "NOT_OPEN", "a new request: 409 NOT_OPEN at the edge", (st, b))


def part_concurrent_patches(t, d):
    c = d.create_coupon(4, name="concurrent")
    out = {}

    def go(name):
        out[name] = patch(d, c, {"addQuantity": 5, "name": name})
    ths = [threading.Thread(target=go, args=(n,)) for n in ("left", "right")]
    for th in ths:
        th.start()
    for th in ths:
        th.join(30)
    t.eq(sorted(v[0] for v in out.values()), [200, 200], "two concurrent PATCHes: both 200")
    h = admin_get(d, f"/api/admin/coupons/{c}/history")[1]["changes"]
    t.eq([x["outcome"] for x in h], ["APPLIED", "APPLIED"], "history: both applied, once each")
    t.eq([(x["before"]["totalQuantity"], x["after"]["totalQuantity"]) for x in h], [(4, 9), (9, 14)],
         "history: one after the other, each on the other's result")
    t.eq(d.get_json(f"/api/coupons/{c}")[1].get("name"), h[-1]["after"]["name"] if h else None,
         "the name is the one of the change the history shows last")
    t.ok(wait_for(lambda: d.redis_stock(c) == 14, 5), "Redis stock converged to 14", d.redis_stock(c))


def part_events_stream(t, d):
    c = d.create_coupon(3, name="watch")
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=20)
    conn.request("GET", f"/api/admin/coupons/{c}/events", headers=AUTH)
    resp = conn.getresponse()
    t.eq((resp.status, resp.getheader("Content-Type")), (200, "text/event-stream; charset=utf-8"), "events: 200 text/event-stream")
    for user in range(1, 6):
        st, b, _ = d.issue(c, user)
        if st == 202:
            d.wait_final(b["requestId"])
    events, name = [], None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = resp.readline().decode().rstrip("\n")
        if not line and resp.isclosed():
            break
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            if name == "final":
                break
    conn.close()
    t.ok(events and events[0][0] == "figures" and events[0][1].get("remaining") == 3, "events: the figures at once", events[:1])
    t.ok(events and events[-1][0] == "final" and events[-1][1].get("status") == "SOLD_OUT" and events[-1][1].get("issued") == 3,
         "events: a final event once SOLD_OUT", events[-1:])


PARTS = (part_auth_and_errors, part_list, part_rename_move_history, part_reject_lower_total, part_add_stock_log_order,
         part_add_stock_sold_out, part_close_early, part_concurrent_patches, part_events_stream)


def test_admin_ops(t):
    with daemon() as d:
        d.start()
        workers, consumers = sorted(d.http_workers()), d.consumers()
        for part in PARTS:
            try:
                part(t, d)
            except Exception:  # noqa: BLE001
                t.ok(False, f"{part.__name__} raised", traceback.format_exc())
        check_survivors(t, d, workers, consumers)


if __name__ == "__main__":
    Tap().run(test_admin_ops)
