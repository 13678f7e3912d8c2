# SPDX-License-Identifier: BSD-2-Clause
"""test_framing.py: HTTP/1.1 framing as strict as RFC 9112 (issue 11 item 20). Behind a proxy every place where
couponsd and the proxy could read a request's boundaries differently is a request-smuggling vector, so each
ambiguous or malformed head gets 400 BAD_REQUEST (the JSON shape of docs/api.md) and a closed connection,
whether it arrives in one write, byte by byte, or pipelined behind good requests."""
import socket
import time

from harness import Daemon, parse_json
from tap import Tap

TOKEN = "framing-admin-token-7d1e"
JSON_TYPE = "application/json; charset=utf-8"
WINDOW = 3.0  # seconds to wait for the server's close; http.read_timeout is far longer, so a close is the answer's


def parse_responses(data):
    """Every response in data: [(status, headers (lower-case names, every value of a name), body, status line)].
    One without Content-Length runs to the end of data."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out
        lines = data[:end].decode(errors="replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers["content-length"][0]) if "content-length" in headers else len(data) - end - 4
        body = data[end + 4:end + 4 + length]
        parts = lines[0].split(" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        out.append((status, headers, body, lines[0]))
        data = data[end + 4 + length:]


def talk(d, raw, split=False):
    """Sends raw on a fresh keep-alive connection (split: one byte per write, with pauses so that each byte is
    its own TCP segment), then reads until the server closes or WINDOW passes: (responses, closed)."""
    sock = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data, closed = b"", False
    try:
        try:
            if split:
                for i in range(len(raw)):
                    sock.sendall(raw[i:i + 1])
                    time.sleep(0.002)
            else:
                sock.sendall(raw)
        except OSError:
            pass  # the server may have answered and closed already
        deadline = time.monotonic() + WINDOW
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    return parse_responses(data), closed


def refused(t, d, label, raw, before=(), split=False):
    """The answers to raw are those of the good requests before it, then one 400 BAD_REQUEST in JSON with
    Connection: close and a Content-Length, and the server closes: nothing after the bad head is answered."""
    got, closed = talk(d, raw, split)
    statuses = [r[0] for r in got]
    ok = t.eq(statuses, list(before) + [400], f"{label}: " + (f"{list(before)} then " if before else "") + "400")
    if got:
        st, headers, body, line = got[-1]
        parsed = parse_json(body)
        ok &= t.ok(isinstance(parsed, dict) and set(parsed) == {"error", "message"} and
                   parsed.get("error") == "BAD_REQUEST", f"{label}: the body is {{\"error\":\"BAD_REQUEST\",...}}",
                   (line, headers, body[:200]))
        ok &= t.ok(headers.get("content-type") == [JSON_TYPE] and "content-length" in headers and
                   headers.get("connection") == ["close"] and line.startswith("HTTP/1.1 400"),
                   f"{label}: HTTP/1.1 400 with Content-Type, Content-Length and Connection: close", (line, headers))
    ok &= t.ok(closed, f"{label}: the server closes the connection (within {WINDOW:.0f}s)")
    return ok


GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
NEXT = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"  # what a smuggled second request would be


def cases():
    """(label, raw) of each head RFC 9112 says is invalid or ambiguous. Each is answered 400 and closed."""
    post = b"POST /api/coupons/1/issue HTTP/1.1\r\nHost: x\r\n"
    body = b'{"userId":1}'
    return [
        # the six of issue 11 item 20
        ("two different Content-Length fields",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(NEXT) + NEXT),
        ("'Transfer-Encoding : chunked' (a space before the colon)",
         post + b"Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + NEXT),
        ("Content-Length: +12", post + b"Content-Length: +12\r\n\r\n" + body),
        ("a chunk size of 0xc", post + b"Transfer-Encoding: chunked\r\n\r\n0xc\r\n" + body + b"\r\n0\r\n\r\n"),
        ("a NUL inside a header value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("CONNECT", b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n" + GOOD),
        ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n\r\n"),
        ("HTTP/1.2", b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n"),
        # more disagreements of the same kind
        ("HEAD with a body (libevent reads none)", b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
         % len(NEXT) + NEXT),
        ("two identical Content-Length fields",
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"),
        ("Content-Length: 1, 1", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx"),
        ("two Host fields", b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
        ("a space inside Host", b"GET /healthz HTTP/1.1\r\nHost: x y\r\n\r\n"),
        ("a space before a header's colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("an obsolete line folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("a bare LF ending the lines", b"GET /healthz HTTP/1.1\nHost: x\n\n"),
        ("a control byte in the request target", b"GET /healthz\x01 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("two spaces in the request line", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a space after the version", b"GET /healthz HTTP/1.1 \r\nHost: x\r\n\r\n"),
        ("an empty line before the request line", b"\r\n" + GOOD),
        ("a chunk extension", post + b"Transfer-Encoding: chunked\r\n\r\nc;x=1\r\n" + body + b"\r\n0\r\n\r\n"),
        ("chunk data not followed by CRLF", post + b"Transfer-Encoding: chunked\r\n\r\nc\r\n" + body +
         b"XX\r\n0\r\n\r\n"),
        ("a trailer field (libevent adds it to the headers)", post + b"Transfer-Encoding: chunked\r\n\r\nc\r\n" +
         body + b"\r\n0\r\nAuthorization: Bearer x\r\n\r\n"),
        ("Transfer-Encoding in HTTP/1.0", b"POST /api/coupons/1/issue HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"c\r\n" + body + b"\r\n0\r\n\r\n"),
        ("Transfer-Encoding: gzip, chunked", post + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        # what libevent refused already: it stays refused, in the same shape
        ("Content-Length and Transfer-Encoding together",
         post + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("Transfer-Encoding: xchunked", post + b"Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n"),
        ("Content-Length: -1", post + b"Content-Length: -1\r\n\r\n"),
        ("a bare CR inside a header value", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ]


def test_refused(t):
    """Each invalid head, sent in one write: 400, Connection: close, closed, and nothing smuggled after it."""
    with Daemon(workers=1, overrides={"http": {"read_timeout": "20s"}}) as d:
        d.start()
        for label, raw in cases():
            refused(t, d, label, raw)
        got, closed = talk(d, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n")
        t.ok([r[0] for r in got] == [413] and (parse_json(got[0][2]) or {}).get("error") == "REQUEST_TOO_LARGE" and
             closed, "Content-Length of 30 digits: 413 REQUEST_TOO_LARGE as before, and closed", got)
        t.ok(d.titled("couponsd: http worker"), "the worker is still there")


def test_split_and_pipelined(t):
    """The guard sees TCP segments, not requests: heads split byte by byte are judged whole, and a bad head
    pipelined behind good ones gets its 400 after their answers."""
    with Daemon(workers=1, overrides={"http": {"read_timeout": "20s"}}) as d:
        d.start()
        by_label = dict(cases())
        for label in ("two different Content-Length fields", "'Transfer-Encoding : chunked' (a space before the colon)",
                      "a chunk size of 0xc", "HTTP/1.1 without Host", "a trailer field (libevent adds it to the headers)"):
            refused(t, d, f"byte by byte, {label}", by_label[label], split=True)
        got, closed = talk(d, GOOD + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", split=True)
        t.eq([r[0] for r in got], [200, 200], "byte by byte, two good requests: both answered")
        chunked = (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
        with_body = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        for split in (False, True):
            how = "byte by byte" if split else "in one write"
            got, closed = talk(d, GOOD + chunked + with_body + NEXT + GOOD, split)
            t.eq([r[0] for r in got], [200, 405, 405, 404, 200],
                 f"pipelined {how}: a chunked body and a sized body frame their requests exactly")
            t.ok(not closed, f"pipelined {how}: the connection stays open")
        refused(t, d, "a bad head behind two good ones", GOOD + NEXT + by_label["two different Content-Length fields"],
                before=[200, 404])
        refused(t, d, "a bad head behind two good ones, byte by byte", GOOD + NEXT + by_label["HTTP/1.2"],
                before=[200, 404], split=True)
        got, _ = talk(d, b"GET /healthz HTTP/1.0\r\n\r\n")
        t.eq([r[0] for r in got], [200], "HTTP/1.0 without Host is still answered")
        got, _ = talk(d, b"GET /healthz HTTP/1.1\r\nhOsT: x\r\nX-Empty:\r\nX-Tab:\ta\tb\t\r\nX-Utf8: \xc3\xa9\r\n\r\n")
        t.eq([r[0] for r in got], [200], "field names in any case, empty values, tabs and UTF-8 values are accepted")
        got, _ = talk(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 00\r\n\r\n" + GOOD)
        t.eq([r[0] for r in got], [200, 200], "Content-Length: 00 is a length of 0")


def test_authorization_nul(t):
    """A NUL cut the Authorization value where libevent copies it as a C string, so 'Bearer TOKEN<NUL>junk' was
    the token: a proxy that checks, logs or routes on the whole value sees something else."""
    with Daemon(workers=1, admin_token=TOKEN, overrides={"http": {"read_timeout": "20s"}}) as d:
        d.start()
        raw = ("GET /api/admin/coupons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s" % TOKEN).encode()
        got, _ = talk(d, raw + b"junk\r\nConnection: close\r\n\r\n")
        t.eq([r[0] for r in got], [401], "the token with junk after it: 401")
        refused(t, d, "the token, a NUL and junk", raw + b"\x00junk\r\n\r\n")


if __name__ == "__main__":
    Tap().run(test_refused, test_split_and_pipelined, test_authorization_nul)
