# SPDX-License-Identifier: BSD-2-Clause
"""test_api.py: every route of SPEC section 2 and the bad input it must refuse, with exact codes and bodies."""
import json
import re
import time
import traceback
import urllib.parse
import uuid

from harness import Budget, Daemon, check_survivors, expect, iso_time, kafka_produce, parse_json, wait_for
from tap import Tap

TOKEN = "test-admin-token-7f3a"
JSON_TYPE = "application/json; charset=utf-8"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
STATUS_KEYS = {"requestId", "couponId", "userId", "status", "reason", "acceptedAt", "decidedAt"}
COUPON_KEYS = {"couponId", "name", "totalQuantity", "remaining", "status", "startsAt", "endsAt"}
UNKNOWN_COUPON = 987654321
BUDGET = Budget(75)  # the whole file stays under 90 s even when the pipeline never decides

# Ids that are not positive 64-bit decimals, as they appear in a URL (percent-encoded where needed).
BAD_IDS = {
    "0": "0", "-1": "-1", "1.5": "1.5", "1e3": "1e3",
    "99999999999999999999 (overflow)": "99999999999999999999",
    "9223372036854775808 (INT64_MAX+1)": "9223372036854775808",
    "abc": "abc", "+1": "%2B1", "' 1'": "%201", "'1 '": "1%20", "01 (leading zero)": "01", "0x10": "0x10",
    "1;DROP TABLE coupons": urllib.parse.quote("1;DROP TABLE coupons"),
    "full-width digit": urllib.parse.quote("\uff11"), "u-umlaut": urllib.parse.quote("\u00fc"),
    "1%00": "1%00",
}
# The same, as JSON values of {"userId": ...}.
BAD_JSON_USER_IDS = ["0", "-1", "1.5", "1e3", "99999999999999999999", "9223372036854775808", '"abc"', "null",
                     "true", "[1]", "{}", '"\uff11"', '"1;DROP TABLE coupons"']


def is_error(t, got, status, code, what):
    """Asserts an error answer: the status, the JSON body with exactly error and message, the content type."""
    st, body, hdrs = got
    ok = t.eq(st, status, f"{what}: {status}")
    ok &= t.ok(isinstance(body, dict) and set(body) == {"error", "message"} and (code is None or body["error"] == code)
               and isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"],
               f"{what}: body is exactly {{\"error\":\"{code or 'CODE'}\",\"message\":...}}", body)
    ok &= t.eq(hdrs.get("Content-Type") if hdrs is not None else None, JSON_TYPE, f"{what}: Content-Type")
    return ok


def api_daemon(**kw):
    kw.setdefault("overrides", {}).setdefault("http", {}).update({"max_body": "4k"})
    return Daemon(redis=True, postgres=True, admin_token=kw.pop("admin_token", TOKEN), workers=2, partitions=2,
                  **kw)


# ---- parts run against one daemon ------------------------------------------------------------------------

def part_issue(t, d):
    c = d.create_coupon(10, name="ten")
    st, body, hdrs = d.issue(c, 7)
    t.eq(st, 202, "issue: 202 for a new user")
    body = body or {}
    rid = body.get("requestId")
    t.eq(set(body), {"requestId", "status", "couponId", "userId", "statusUrl"}, "issue: the 202 body's keys")
    t.ok(isinstance(rid, str) and UUID_RE.match(rid), "issue: requestId is a lowercase UUID", rid)
    t.eq((body.get("status"), body.get("couponId"), body.get("userId")), ("PENDING", c, 7),
         "issue: status PENDING, couponId and userId as numbers")
    t.eq(body.get("statusUrl"), f"/api/requests/{rid}", "issue: statusUrl is /api/requests/{requestId}")
    t.eq(hdrs.get("Location"), body.get("statusUrl"), "issue: Location header equals statusUrl")
    t.eq(hdrs.get("Content-Type"), JSON_TYPE, "issue: Content-Type application/json; charset=utf-8")

    st2, body2, hdrs2 = d.issue(c, 8, json_body=True)
    t.eq(st2, 202, 'issue with the JSON body {"userId": 8}: 202')
    t.eq(((body2 or {}).get("userId"), (body2 or {}).get("couponId")), (8, c), "JSON body form: userId read from it")

    st, dup, _ = d.issue(c, 7)
    t.eq(st, 409, "the same user again: 409")
    dup = dup or {}
    t.eq(dup.get("error"), "ALREADY_REQUESTED", "the same user again: ALREADY_REQUESTED")
    t.eq(dup.get("requestId"), rid, "ALREADY_REQUESTED carries the first requestId")
    t.ok(dup.get("status") in ("PENDING", "ISSUED"), "ALREADY_REQUESTED carries the request's status", dup)
    t.ok(isinstance(dup.get("message"), str), "ALREADY_REQUESTED has a message too", dup)
    st, dup2, _ = d.issue(c, 8, json_body=True)
    t.eq((st, (dup2 or {}).get("error")), (409, "ALREADY_REQUESTED"), "the same user again via the JSON body: 409")

    st, s, hdrs = d.request_status(rid)
    t.eq(st, 200, "GET /api/requests/{id}: 200")
    t.eq(set(s or {}), STATUS_KEYS, "request status: exactly the SPEC's fields")
    t.eq(hdrs.get("Content-Type"), JSON_TYPE, "request status: Content-Type")
    final = d.wait_final(rid, BUDGET.left(10))
    expect(t, (final or {}).get("status"), "ISSUED", "the request ends ISSUED", final)
    final = final or {}
    t.eq((final.get("requestId"), final.get("couponId"), final.get("userId"), final.get("reason")),
         (rid, c, 7, None), "final status: requestId, couponId, userId, reason null")
    t.ok(ISO_RE.match(str(final.get("acceptedAt"))) and ISO_RE.match(str(final.get("decidedAt"))),
         "final status: acceptedAt and decidedAt are ISO-8601 times", final)
    st, dup, _ = d.issue(c, 7)
    t.eq((st, (dup or {}).get("status")), (409, "ISSUED"), "a retry after the decision learns ISSUED")
    t.eq((d.wait_final((body2 or {}).get("requestId", "x"), BUDGET.left(10)) or {}).get("status"), "ISSUED",
         "the JSON-body request is decided too (ISSUED)")

    st, cp, hdrs = d.get_json(f"/api/coupons/{c}")
    t.eq(st, 200, "GET /api/coupons/{id}: 200")
    t.eq(set(cp or {}), COUPON_KEYS, "coupon: exactly the SPEC's fields")
    cp = cp or {}
    t.eq((cp.get("couponId"), cp.get("name"), cp.get("totalQuantity"), cp.get("status")), (c, "ten", 10, "OPEN"),
         "coupon: couponId, name, totalQuantity, status OPEN")
    t.ok(wait_for(lambda: d.get_json(f"/api/coupons/{c}")[1].get("remaining") == 8, BUDGET.left(10)),
         "coupon: remaining 8 after two issued", d.get_json(f"/api/coupons/{c}")[1])

    st, mine, hdrs = d.get_json("/api/users/7/coupons")
    t.eq(st, 200, "GET /api/users/{id}/coupons: 200")
    t.ok(c in coupon_ids_in(mine), "the user's coupons list the one just issued", mine)
    st, none, _ = d.get_json("/api/users/424242/coupons")
    t.ok(st == 200 and not coupon_ids_in(none), "a user with no coupon: 200 and an empty list", (st, none))


def coupon_ids_in(tree):
    """Every couponId found anywhere in a JSON value (the list's shape is the implementer's)."""
    out = []
    if isinstance(tree, dict):
        if isinstance(tree.get("couponId"), int):
            out.append(tree["couponId"])
        for v in tree.values():
            if isinstance(v, (dict, list)):
                out += coupon_ids_in(v)
    elif isinstance(tree, list):
        for v in tree:
            out += coupon_ids_in(v)
    return out


def part_coupon_states(t, d):
    is_error(t, d.issue(UNKNOWN_COUPON, 1), 404, "COUPON_NOT_FOUND", "issue for an unknown coupon")
    is_error(t, d.get_json(f"/api/coupons/{UNKNOWN_COUPON}"), 404, "COUPON_NOT_FOUND", "GET an unknown coupon")

    later = d.create_coupon(5, name="later", starts_at=3600)
    is_error(t, d.issue(later, 1), 409, "NOT_OPEN", "issue before startsAt")
    t.eq(d.get_json(f"/api/coupons/{later}")[1].get("status"), "SCHEDULED", "a coupon before startsAt is SCHEDULED")
    over = d.create_coupon(5, name="over", starts_at=-7200, ends_at=-3600)
    is_error(t, d.issue(over, 1), 409, "NOT_OPEN", "issue after endsAt")
    t.eq(d.get_json(f"/api/coupons/{over}")[1].get("status"), "CLOSED", "a coupon after endsAt is CLOSED")

    one = d.create_coupon(1, name="just one")
    st, body, _ = d.issue(one, 1)
    t.eq(st, 202, "the only coupon: 202")
    final = d.wait_final((body or {}).get("requestId", "x"), BUDGET.left(10)) or {}
    t.eq(final.get("status"), "ISSUED", "and it is ISSUED")
    sold = wait_for(lambda: (d.get_json(f"/api/coupons/{one}")[1] or {}).get("status") == "SOLD_OUT", BUDGET.left(5))
    cp = d.get_json(f"/api/coupons/{one}")[1] or {}
    t.ok(sold and cp.get("remaining") == 0, "the coupon says remaining 0, SOLD_OUT", cp)
    time.sleep(0.15)  # each worker's stock reading may be up to 100 ms old (docs/api.md)
    is_error(t, d.issue(one, 2), 409, "SOLD_OUT", "issue once the stock is known to be fully issued")

    is_error(t, d.request_status(str(uuid.uuid4())), 404, None, "GET an unknown request id")
    for bad in ("not-a-uuid", "1", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", str(uuid.uuid4()) + "0",
                str(uuid.uuid4())[:-1], urllib.parse.quote("1;DROP TABLE coupons")):
        is_error(t, d.request_status(bad), 400, "INVALID_ARGUMENT", f"GET /api/requests/{bad}")


def write_pending(d, rid, coupon, user, accepted):
    """Overwrites a request's Redis status hash with PENDING accepted `accepted` seconds from now: what the edge's
    late PENDING write leaves when Redis was flushed after the consumer decided (http_issue.c, HSETNX)."""
    key = f"{d.redis_prefix}req:{{{rid}}}"
    d.redis.cli("DEL", key)
    d.redis.cli("HSET", key, "status", "PENDING", "reason", "", "couponId", coupon, "userId", user,
                "acceptedAt", iso_time(accepted), "decidedAt", "")
    d.redis.cli("EXPIRE", key, 600)
    return key


def status_of(d, rid):
    st, body, _ = d.request_status(rid)
    body = body or {}
    return st, body.get("status"), body.get("reason"), body.get("couponId"), body.get("userId")


def part_stale_pending(t, d):
    """GET /api/requests/{id}: a Redis PENDING older than 2 s is checked against PostgreSQL, whose decision wins
    (issued row or rejected row); a PENDING that is fresh, or that PostgreSQL has no decision for, stays."""
    c = d.create_coupon(1, name="stale pending")
    st, body, _ = d.issue(c, 31)
    rid = (body or {}).get("requestId", "x")
    t.eq((d.wait_final(rid, BUDGET.left(10)) or {}).get("status"), "ISSUED", "stale PENDING: the request is ISSUED")
    key = write_pending(d, rid, c, 31, -10)
    t.eq(d.redis.cli("HGET", key, "status"), "PENDING", "stale PENDING: Redis now says PENDING, accepted 10 s ago")
    expect(t, status_of(d, rid), (200, "ISSUED", None, c, 31),
           "stale PENDING over an issued request: GET answers PostgreSQL's ISSUED")
    events = d.sse(f"/api/requests/{rid}/events", timeout=BUDGET.left(5))
    first = parse_json(events[0][1]) if events else None
    t.ok(events.ended and (first or {}).get("status") == "ISSUED",
         "stale PENDING over an issued request: the event stream says ISSUED at once and ends", list(events))
    t.diag(f"stale PENDING: Redis status after the lookups: {d.redis.cli('HGET', key, 'status')} "
           "(the lookup reads Redis, it does not rewrite it)")

    # A rejection that lives in PostgreSQL: an event for the sold-out coupon straight into Kafka (the edge would
    # refuse it with 409 and no decision).
    ev = {"v": 1, "requestId": str(uuid.uuid4()), "couponId": c, "userId": 32, "acceptedAt": iso_time(0)}
    kafka_produce(d.kafka_bootstrap(), d.topic(), json.dumps(ev), key=c)
    got = d.wait_final(ev["requestId"], BUDGET.left(10)) or {}
    t.eq((got.get("status"), got.get("reason")), ("REJECTED", "SOLD_OUT"), "stale PENDING: a second user is SOLD_OUT")
    t.eq(d.sql_scalar(f"SELECT reason FROM rejected_requests WHERE request_id = '{ev['requestId']}'"), "SOLD_OUT",
         "stale PENDING: the rejection is in PostgreSQL")
    write_pending(d, ev["requestId"], c, 32, -10)
    expect(t, status_of(d, ev["requestId"]), (200, "REJECTED", "SOLD_OUT", c, 32),
           "stale PENDING over a rejected request: GET answers PostgreSQL's REJECTED SOLD_OUT")

    undecided = str(uuid.uuid4())  # never produced: no decision anywhere
    write_pending(d, undecided, c, 33, 0)
    expect(t, status_of(d, undecided), (200, "PENDING", None, c, 33),
           "control: a fresh PENDING with no decision in PostgreSQL stays PENDING")
    write_pending(d, undecided, c, 33, -10)
    expect(t, status_of(d, undecided), (200, "PENDING", None, c, 33),
           "control: an old PENDING with no decision in PostgreSQL stays PENDING (not 404)")


def part_admin(t, d):
    st, body, hdrs = d.admin_create("explicit id", 3, coupon_id=424242)
    t.eq(st, 201, "admin create with a valid token: 201")
    expect(t, (body or {}).get("couponId"), 424242, "admin create: the couponId asked for", body)
    t.eq(hdrs.get("Content-Type"), JSON_TYPE, "admin create: Content-Type")
    t.eq(hdrs.get("Location"), "/api/coupons/424242", "admin create: Location /api/coupons/{id} (docs/api.md)")
    t.eq(d.get_json("/api/coupons/424242")[1].get("totalQuantity"), 3, "the created coupon is readable")
    is_error(t, d.admin_create("again", 3, coupon_id=424242), 409, "COUPON_EXISTS",
             "admin create with an existing couponId (docs/api.md)")
    is_error(t, d.admin_create("x", 3, token="wrong"), 401, None, "admin create with a wrong token")
    is_error(t, d.json("POST", "/api/admin/coupons", {"name": "x", "totalQuantity": 3}), 401, None,
             "admin create without a token")
    is_error(t, d.json("POST", "/api/admin/coupons", {"name": "x", "totalQuantity": 3},
                       {"Authorization": TOKEN}), 401, None, "admin create with the token but no Bearer")
    for label, extra in (("totalQuantity 0", {"totalQuantity": 0}), ("totalQuantity -5", {"totalQuantity": -5}),
                         ("totalQuantity as text", {"totalQuantity": "ten"}),
                         ("couponId 0", {"couponId": 0}), ("couponId 1.5", {"couponId": 1.5})):
        is_error(t, d.admin_create("bad", 3, extra=extra), 400, "INVALID_ARGUMENT", f"admin create with {label}")
    is_error(t, d.json("POST", "/api/admin/coupons", {"totalQuantity": 3}, {"Authorization": f"Bearer {TOKEN}"}),
             400, "INVALID_ARGUMENT", "admin create without a name")
    is_error(t, d.json("POST", "/api/admin/coupons", "{not json", {"Authorization": f"Bearer {TOKEN}"}),
             400, "INVALID_ARGUMENT", "admin create with a body that is not JSON")


def part_admin_sequence(t, d):
    """An explicit couponId moves the id sequence past it: a later create without one must not be handed it."""
    first = d.create_coupon(3)
    st, body, _ = d.admin_create("explicit next id", 3, coupon_id=first + 1)
    t.ok(st == 201, "admin create with the couponId the sequence would hand out next", body)
    st, body, _ = d.admin_create("after an explicit id", 3)
    t.ok(st == 201 and (body or {}).get("couponId", 0) > first + 1,
         "a later create without couponId gets an id past it (no 409 COUPON_EXISTS)", [st, body])


def part_bad_ids(t, d):
    c = d.create_coupon(100, name="bad ids target")
    for label, bad in BAD_IDS.items():
        is_error(t, d.json("POST", f"/api/coupons/{bad}/issue?userId=1"), 400, "INVALID_ARGUMENT",
                 f"issue with couponId {label}")
        is_error(t, d.json("POST", f"/api/coupons/{c}/issue?userId={bad}"), 400, "INVALID_ARGUMENT",
                 f"issue with userId {label}")
        is_error(t, d.get_json(f"/api/coupons/{bad}"), 400, "INVALID_ARGUMENT", f"GET coupon {label}")
        is_error(t, d.get_json(f"/api/users/{bad}/coupons"), 400, "INVALID_ARGUMENT", f"GET user {label}'s coupons")
    for value in BAD_JSON_USER_IDS:
        is_error(t, d.json("POST", f"/api/coupons/{c}/issue", '{"userId": %s}' % value,
                           {"Content-Type": "application/json"}), 400, "INVALID_ARGUMENT",
                 f'issue with the body {{"userId": {value}}}')
    for label, path, body in (("no userId at all", f"/api/coupons/{c}/issue", None),
                              ("an empty userId", f"/api/coupons/{c}/issue?userId=", None),
                              ("the body {}", f"/api/coupons/{c}/issue", "{}"),
                              ("a body that is not JSON", f"/api/coupons/{c}/issue", "userId=5"),
                              ("a JSON array body", f"/api/coupons/{c}/issue", "[5]"),
                              ("query and body disagreeing", f"/api/coupons/{c}/issue?userId=5", '{"userId": 6}')):
        is_error(t, d.json("POST", path, body), 400, "INVALID_ARGUMENT", f"issue with {label}")
    n = d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}")
    t.eq(n, "0", "none of the bad requests issued anything")


def part_limits(t, d):
    c = d.create_coupon(100, name="limits")
    big = '{"userId": 1, "pad": "%s"}' % ("x" * 5000)
    is_error(t, d.json("POST", f"/api/coupons/{c}/issue", big), 413, None, "a body over http.max_body (4k)")
    t.ok(parse_json(d.post(f"/api/coupons/{c}/issue", big)[1]) is not None, "the 413 body is JSON")
    huge = "x" * (256 << 10)
    status, _, _ = d.raw((f"POST /api/coupons/{c}/issue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(huge)}\r\n\r\n{huge}").encode(), 10)
    t.eq(status, 413, "a 256 KB body: 413 (the client reads the answer, no reset)")
    status, head, body = d.raw(("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + "y" * 20000 + "\r\n\r\n").encode())
    t.ok(status is not None and 400 <= status < 500, f"a 20 KB header: a 4xx answer (got {status}; 431 preferred)",
         head[:300])
    t.diag(f"a 20 KB request header is answered {status}")
    status, _, _ = d.raw(b"GARBAGE\r\n\r\n")
    t.ok(status is None or 400 <= status < 500, f"a malformed request line: 4xx or closed (got {status})")
    t.eq(d.get("/healthz")[0], 200, "the workers keep serving after oversized and malformed requests")


def part_ready_at_once(t, d):
    """Right after READY=1, before any worker's first statistics tick (1 s), /readyz already says ready: a new
    worker waits for Kafka's first answer before it reports ready, so /readyz does not flap after a start."""
    answers = [d.get_json("/readyz") for _ in range(6)]
    t.ok(all(st == 200 for st, _, _ in answers), "/readyz right after READY=1: 200 from every worker",
         [(st, body) for st, body, _ in answers])


def part_routes(t, d):
    st, body, hdrs = d.get_json("/healthz")
    t.eq(st, 200, "/healthz: 200")
    st, body, hdrs = d.get_json("/readyz")
    expect(t, st, 200, "/readyz: 200 with Kafka, Redis and PostgreSQL up", body)
    for path in ("/", "/api", "/api/nope", "/api/coupons", "/api/coupons/1/issue/extra", "/healthz/x"):
        is_error(t, d.get_json(path), 404, None, f"unknown route GET {path}")
    c = d.create_coupon(5, name="routes")
    for method, path in (("GET", f"/api/coupons/{c}/issue"), ("DELETE", f"/api/coupons/{c}"),
                         ("PUT", "/api/admin/coupons"), ("POST", f"/api/requests/{uuid.uuid4()}"),
                         ("POST", "/healthz"), ("DELETE", "/api/users/7/coupons")):
        got = d.json(method, path)
        is_error(t, got, 405, None, f"wrong method {method} {path}")
        t.ok(got[2].get("Allow"), f"{method} {path}: 405 names the allowed methods (Allow header)", dict(got[2]))


def part_readyz_redis_down(t, d):
    d.redis.stop()
    try:
        got = wait_for(lambda: d.get_json("/readyz") if d.get_json("/readyz")[0] == 503 else None, 10)
        st, body, hdrs = got or d.get_json("/readyz")
        t.eq(st, 503, "/readyz: 503 while Redis is stopped")
        t.ok("redis" in str(body).lower(), "/readyz names redis as the failing dependency", body)
        t.eq(d.get("/healthz")[0], 200, "/healthz stays 200 (the worker's loop runs)")
    finally:
        d.redis.start()
    t.ok(wait_for(lambda: d.get_json("/readyz")[0] == 200, 20), "/readyz: 200 again once Redis is back")


def with_daemon(*parts, **kw):
    """One test: one daemon, the parts run in turn against it; a part that raises fails and the next runs.
    At the end the same worker processes must still be alive (no crash along the way)."""
    def test(t):
        with api_daemon(**kw) as d:
            d.start()
            workers, consumers = sorted(d.http_workers()), d.consumers()
            for part in parts:
                try:
                    part(t, d)
                except Exception:  # noqa: BLE001
                    t.ok(False, f"{part.__name__} raised", traceback.format_exc())
            check_survivors(t, d, workers, consumers)
    test.__name__ = "test_" + "_".join(p.__name__.replace("part_", "") for p in parts)
    return test


def test_admin_off(t):
    with api_daemon(admin_token="") as d:
        d.start()
        is_error(t, d.json("POST", "/api/admin/coupons", {"name": "x", "totalQuantity": 3},
                           {"Authorization": "Bearer "}), 404, None, "admin.token \"\": the admin API is off (404)")
        is_error(t, d.admin_create("x", 3, token="anything"), 404, None, "admin.token \"\": 404 with any token")


if __name__ == "__main__":
    Tap().run(with_daemon(part_ready_at_once, part_issue, part_coupon_states, part_stale_pending, part_admin, part_admin_sequence, part_bad_ids, part_limits,
                          part_routes, part_readyz_redis_down),
              test_admin_off)
