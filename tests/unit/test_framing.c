/* SPDX-License-Identifier: BSD-2-Clause */
/* test_framing.c: the strict RFC 9112 framing reader (src/http/http_framing.c), whole and byte by byte. */
#include "http/http_framing.h"
#include "tap.h"

#define GOOD "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
#define POST "POST /i HTTP/1.1\r\nHost: x\r\n"

typedef struct {
	const char *label;
	const char *raw;
	size_t len;        /* 0: strlen(raw) */
	const char *error; /* a word of the reason, or NULL when accepted */
	size_t cut;        /* refused: where the refused unit begins; accepted: bytes left pending */
} framing_case_t;

static const framing_case_t CASES[] = {
    {"a whole GET", GOOD, 0, NULL, 0},
    {"half a head is pending", "GET / HTTP/1.1\r\nHo", 0, NULL, 18},
    {"a sized body, then half a head", POST "Content-Length: 3\r\n\r\nabcGET /", 0, NULL, 5},
    {"a chunked body", POST "Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" GOOD, 0, NULL, 0},
    {"chunk data whole, its CRLF pending", POST "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r", 0, NULL, 1},
    {"the last chunk is pending until its CRLF", POST "Transfer-Encoding: chunked\r\n\r\n0\r\n", 0, NULL, 3},
    {"Content-Length: 007 with OWS", POST "Content-Length:\t007 \r\n\r\n1234567", 0, NULL, 0},
    {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, NULL, 0},
    {"a NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 35, "control", 0},
    {"two Content-Length", GOOD POST "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, "twice", 34},
    {"a space before the colon", POST "Transfer-Encoding : chunked\r\n\r\n", 0, "colon", 0},
    {"Content-Length: +1", POST "Content-Length: +1\r\n\r\n", 0, "digits", 0},
    {"Content-Length: 1 2", POST "Content-Length: 1 2\r\n\r\n", 0, "more than one", 0},
    {"an empty Content-Length", POST "Content-Length: \r\n\r\n", 0, "empty", 0},
    {"chunk size 0x5", POST "Transfer-Encoding: chunked\r\n\r\n0x5\r\n", 0, "hexadecimal", 57},
    {"a refused chunk line after data", POST "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\nz\r\n", 0,
     "hexadecimal", 61},
    {"a chunk extension", POST "Transfer-Encoding: chunked\r\n\r\n1;a\r\n", 0, "extension", 57},
    {"a trailer", POST "Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n\r\n", 0, "trailer", 57},
    {"TE gzip, chunked", POST "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, "chunked", 0},
    {"TE chunked twice in one value", POST "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, "chunked", 0},
    {"CL and TE", POST "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "both", 0},
    {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "1.0", 0},
    {"CONNECT", "CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 0, "CONNECT", 0},
    {"no Host", "GET / HTTP/1.1\r\n\r\n", 0, "Host", 0},
    {"two Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, "twice", 0},
    {"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, "Host", 0},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 0, "version", 0},
    {"HTTP/1.10", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", 0, "version", 0},
    {"http/1.1", "GET / http/1.1\r\nHost: x\r\n\r\n", 0, "version", 0},
    {"HEAD with a body", "HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 0, "body", 0},
    {"an unknown method with a body", "FOO / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 0, "body",
     0},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 0, "folding", 0},
    {"a bare LF", "GET / HTTP/1.1\nHost: x\n\n", 0, "version", 0},
    {"a bare LF after a field", "GET / HTTP/1.1\r\nHost: x\n\n", 0, "LF", 0},
    {"a bare CR", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 0, "CR", 0},
    {"an empty line first", "\r\n" GOOD, 0, "empty line", 0},
    {"a control byte in the target", "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 0, "control", 0},
    {"the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, "version", 0},
};

static size_t case_len(const framing_case_t *c)
{
	return c->len != 0 ? c->len : strlen(c->raw);
}

/* Feeds raw in pieces of `step` bytes; returns the index of the refused byte, or len. */
static size_t feed_in_steps(http_framing_t *f, const char *raw, size_t len, size_t step)
{
	size_t at = 0;

	http_framing_init(f, 65536);
	while (at < len) {
		size_t n = len - at < step ? len - at : step;
		size_t took = http_framing_feed(f, (const unsigned char *)raw + at, n);

		at += took;
		if (took < n)
			break;
	}
	return at;
}

static void check_case(const framing_case_t *c)
{
	size_t len = case_len(c);
	http_framing_t whole, bytes;
	size_t at = feed_in_steps(&whole, c->raw, len, len);
	size_t at1 = feed_in_steps(&bytes, c->raw, len, 1);

	if (c->error == NULL) {
		ok(at == len && whole.error == NULL, "%s: accepted", c->label);
		is_int((long long)http_framing_pending(&whole), (long long)c->cut, "%s: bytes pending",
		       c->label);
	} else {
		ok(whole.error != NULL && strstr(whole.error, c->error) != NULL, "%s: refused (%s)", c->label,
		   whole.error != NULL ? whole.error : "accepted");
		is_int((long long)(at - whole.unit_len), (long long)c->cut,
		       "%s: the refused unit begins there", c->label);
	}
	ok(at1 == at && bytes.unit_len == whole.unit_len && bytes.error == whole.error,
	   "%s: the same byte by byte", c->label);
}

static void test_saturation(void)
{
	http_framing_t f;
	const char *huge = POST "Content-Length: 99999999999999999999999999999\r\n\r\nabc";
	const char *chunk =
	    POST "Transfer-Encoding: chunked\r\n\r\n0000000000000000000000000000003\r\nabc\r\n0\r\n\r\n";

	is_int((long long)feed_in_steps(&f, huge, strlen(huge), 7), (long long)strlen(huge),
	       "a Content-Length past 2^64 is a body without end, as libevent's 413 ends it");
	is_int((long long)feed_in_steps(&f, chunk, strlen(chunk), 5), (long long)strlen(chunk),
	       "a chunk size with 28 leading zeros is 3, as libevent reads it");
	is_int((long long)http_framing_pending(&f), 0, "and the request ends after it");
}

static void test_head_max(void)
{
	char raw[300];
	http_framing_t f;

	memset(raw, 'a', sizeof(raw));
	memcpy(raw, "GET /", 5);
	http_framing_init(&f, 200);
	is_int((long long)http_framing_feed(&f, (const unsigned char *)raw, sizeof(raw)), 200,
	       "a head longer than unit_max is refused at its first byte past it");
	ok(f.error != NULL && f.unit_len == 200, "with the whole head as the refused unit");
	is_int((long long)http_framing_feed(&f, (const unsigned char *)"GET", 3), 0,
	       "and nothing is read after");
}

int main(void)
{
	size_t n = sizeof(CASES) / sizeof(CASES[0]);

	plan((int)(n * 3 + 6));
	for (size_t i = 0; i < n; i++)
		check_case(&CASES[i]);
	test_saturation();
	test_head_max();
	return done_testing();
}
