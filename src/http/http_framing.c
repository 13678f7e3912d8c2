/* SPDX-License-Identifier: BSD-2-Clause */
/* http_framing.c: a strict RFC 9112 reader of request framing, fed the raw bytes of one connection. */
#include "http/http_framing.h"

#include "core/hex.h"

#include <string.h>

enum {
	ST_START,        /* before a request line */
	ST_METHOD,       /* in the method */
	ST_TARGET_FIRST, /* after the method's SP */
	ST_TARGET,       /* in the request target */
	ST_VERSION,      /* in "HTTP/1.x" */
	ST_LINE_CR,      /* after the version: CR */
	ST_LINE_LF,      /* after the request line's CR */
	ST_FIELD_START,  /* at the start of a field line, or of the head's last CRLF */
	ST_NAME,         /* in a field name */
	ST_VALUE,        /* after the colon, up to the CR */
	ST_FIELD_LF,     /* after a field line's CR */
	ST_HEAD_LF,      /* after the head's last CR */
	ST_BODY,         /* in a Content-Length body */
	ST_CHUNK_FIRST,  /* at the start of a chunk-size line */
	ST_CHUNK_SIZE,   /* in a chunk size */
	ST_CHUNK_LF,     /* after a chunk-size line's CR */
	ST_CHUNK_DATA,   /* in chunk data */
	ST_DATA_CR,      /* after chunk data: CR */
	ST_DATA_LF,      /* after chunk data: LF */
	ST_LAST_CR,      /* after the last chunk ("0"): the CR of an empty trailer section */
	ST_LAST_LF,      /* and its LF */
	ST_REFUSED,
};

/* Per request. */
#define FR_HTTP11 0x01
#define FR_HOST 0x02
#define FR_CL 0x04
#define FR_TE 0x08
#define FR_SEEN 0x10 /* the current field's value has begun */
#define FR_OWS 0x20  /* and whitespace followed it */

/* What libevent 2.1.12 does with a body (evhttp_method_may_have_body()). */
enum { METHOD_BODY, METHOD_NO_BODY, METHOD_CONNECT };

/* The fields that frame a request; FIELD_OTHER is any other. */
enum { FIELD_OTHER, FIELD_CL, FIELD_TE, FIELD_HOST };
static const char *const FIELD_NAMES[] = {"content-length", "transfer-encoding", "host"};
static const uint8_t FIELD_LENGTHS[] = {14, 17, 4};
#define FIELD_COUNT 3

/* What step() returns for the byte that completes a unit (a head, a chunk-size line, a message). */
#define UNIT_DONE 1

/* Past this a length is only "too large": libevent refuses it (413) long before. */
#define NUMBER_CAP (UINT64_MAX / 16)

/* Byte classes, one bit each, in a table built on first use (the process is single-threaded). */
#define C_TCHAR 0x01  /* of a token: a method or a field name */
#define C_VALUE 0x02  /* of a field value: VCHAR, obs-text, SP, HTAB; not NUL, CR, LF, other controls */
#define C_TARGET 0x04 /* of a request target: VCHAR and obs-text */
#define C_HOST 0x08   /* of Host (RFC 3986 reg-name, IP-literal, port, pct-encoded) */

static uint8_t classes[256];

static void build_classes(void)
{
	for (int c = 0; c < 256; c++) {
		int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		uint8_t k = 0;

		if (alnum || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL))
			k |= C_TCHAR;
		if (c == '\t' || (c >= 0x20 && c != 0x7f))
			k |= C_VALUE;
		if (c > 0x20 && c != 0x7f)
			k |= C_TARGET;
		if (alnum || (c != 0 && strchr("-._~!$&'()*+,;=:[]%", c) != NULL))
			k |= C_HOST;
		classes[c] = k;
	}
	classes[0] |= 0x80; /* built */
}

static int is_tchar(unsigned char c)
{
	return classes[c] & C_TCHAR;
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static int refuse(http_framing_t *f, const char *why)
{
	f->error = why;
	f->state = ST_REFUSED;
	return -1;
}

static void add_digit(uint64_t *n, unsigned base, unsigned digit)
{
	*n = *n > NUMBER_CAP ? UINT64_MAX : *n * base + digit;
}

void http_framing_init(http_framing_t *f, size_t unit_max)
{
	if (classes[0] == 0)
		build_classes();
	memset(f, 0, sizeof(*f));
	f->state = ST_START;
	f->unit_max = unit_max;
}

/* ---- the request line ---- */

static void classify_method(http_framing_t *f)
{
	static const char *const with_body[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

	f->method = METHOD_NO_BODY; /* HEAD, TRACE, and those libevent does not know */
	if (f->pos == 7 && memcmp(f->name, "CONNECT", 7) == 0) {
		f->method = METHOD_CONNECT;
		return;
	}
	for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++) {
		if (strlen(with_body[i]) == f->pos && memcmp(f->name, with_body[i], f->pos) == 0)
			f->method = METHOD_BODY;
	}
}

static int start_byte(http_framing_t *f, unsigned char c)
{
	f->flags = 0;
	f->length = 0;
	f->number = 0;
	if (c == '\r' || c == '\n')
		return refuse(f, "an empty line before the request line");
	if (!is_tchar(c))
		return refuse(f, "a request line that does not begin with a method");
	f->name[0] = (char)c;
	f->pos = 1;
	f->state = ST_METHOD;
	return 0;
}

static int method_byte(http_framing_t *f, unsigned char c)
{
	if (c == ' ') {
		classify_method(f);
		if (f->method == METHOD_CONNECT)
			return refuse(f,
			              "CONNECT (no tunnels here; libevent would answer it without a length)");
		f->state = ST_TARGET_FIRST;
		return 0;
	}
	if (!is_tchar(c))
		return refuse(f, "a method that is not a token");
	if (f->pos < sizeof(f->name))
		f->name[f->pos] = (char)c;
	if (f->pos < UINT8_MAX)
		f->pos++;
	return 0;
}

static int target_byte(http_framing_t *f, unsigned char c)
{
	if (c == ' ') {
		if (f->state == ST_TARGET_FIRST)
			return refuse(f, "a request line with two spaces in a row");
		f->state = ST_VERSION;
		f->pos = 0;
		return 0;
	}
	if (c == '\r' || c == '\n')
		return refuse(f, "a request line without an HTTP version");
	if (c < 0x20 || c == 0x7f)
		return refuse(f, "a control byte in the request target");
	f->state = ST_TARGET;
	return 0;
}

static int version_byte(http_framing_t *f, unsigned char c)
{
	static const char prefix[] = "HTTP/1.";

	if (f->pos < sizeof(prefix) - 1) {
		if (c != (unsigned char)prefix[f->pos])
			return refuse(f, "an HTTP version other than HTTP/1.0 and HTTP/1.1");
		f->pos++;
		return 0;
	}
	if (c != '0' && c != '1')
		return refuse(f, "an HTTP version other than HTTP/1.0 and HTTP/1.1");
	if (c == '1')
		f->flags |= FR_HTTP11;
	f->state = ST_LINE_CR;
	return 0;
}

/* ---- field lines ---- */

static int begin_value(http_framing_t *f);

static int name_byte(http_framing_t *f, unsigned char c)
{
	if (c == ':') {
		f->field = FIELD_OTHER;
		for (int k = 0; k < FIELD_COUNT; k++) {
			if ((f->match & (1u << k)) && FIELD_LENGTHS[k] == f->pos)
				f->field = (uint8_t)(k + 1);
		}
		return begin_value(f);
	}
	if (c == ' ' || c == '\t')
		return refuse(f, "whitespace between a field name and its colon");
	if (!is_tchar(c))
		return refuse(f, "a field name that is not a token");
	for (int k = 0; f->match != 0 && k < FIELD_COUNT; k++) {
		if (f->pos >= FIELD_LENGTHS[k] || FIELD_NAMES[k][f->pos] != (char)lower(c))
			f->match &= (uint8_t) ~(1u << k);
	}
	if (f->pos < UINT8_MAX)
		f->pos++;
	return 0;
}

/* The name ended (at its colon): a framing field may come once only. */
static int begin_value(http_framing_t *f)
{
	static const uint8_t flag[] = {0, FR_CL, FR_TE, FR_HOST};
	static const char *const twice[] = {NULL, "Content-Length given twice",
	                                    "Transfer-Encoding given twice", "Host given twice"};

	if (f->field != FIELD_OTHER && (f->flags & flag[f->field]))
		return refuse(f, twice[f->field]);
	f->flags = (uint8_t)((f->flags | flag[f->field]) & ~(FR_SEEN | FR_OWS));
	f->pos = 0;
	f->number = 0;
	f->state = ST_VALUE;
	return 0;
}

/* One byte of a framing field's value, other than OWS. */
static int framing_value_byte(http_framing_t *f, unsigned char c)
{
	static const char chunked[] = "chunked";

	if (f->flags & FR_OWS)
		return refuse(f, f->field == FIELD_HOST ? "whitespace inside Host"
		                                        : "more than one value in a framing field");
	f->flags |= FR_SEEN;
	switch (f->field) {
	case FIELD_CL:
		if (c < '0' || c > '9')
			return refuse(f, "a Content-Length that is not only digits");
		add_digit(&f->number, 10, (unsigned)(c - '0'));
		return 0;
	case FIELD_TE:
		if (f->pos >= sizeof(chunked) - 1 || lower(c) != (unsigned char)chunked[f->pos])
			return refuse(f, "a Transfer-Encoding other than chunked");
		f->pos++;
		return 0;
	default:
		return (classes[c] & C_HOST) ? 0 : refuse(f, "a byte not allowed in Host");
	}
}

static int value_byte(http_framing_t *f, unsigned char c)
{
	if (c == '\r') {
		f->state = ST_FIELD_LF;
		return 0;
	}
	if (!(classes[c] & C_VALUE))
		return refuse(f,
		              c == '\n' ? "a line ending in a bare LF" : "a control byte in a field value");
	if (f->field == FIELD_OTHER)
		return 0;
	if (c == ' ' || c == '\t') {
		if (f->flags & FR_SEEN)
			f->flags |= FR_OWS;
		return 0;
	}
	return framing_value_byte(f, c);
}

static int end_field(http_framing_t *f)
{
	if (f->field == FIELD_CL && !(f->flags & FR_SEEN))
		return refuse(f, "an empty Content-Length");
	if (f->field == FIELD_TE && f->pos != sizeof("chunked") - 1)
		return refuse(f, "a Transfer-Encoding other than chunked");
	if (f->field == FIELD_CL)
		f->length = f->number;
	f->state = ST_FIELD_START;
	return 0;
}

static int field_start_byte(http_framing_t *f, unsigned char c)
{
	if (c == '\r') {
		f->state = ST_HEAD_LF;
		return 0;
	}
	if (c == ' ' || c == '\t')
		return refuse(f, "an obsolete line folding");
	if (c == '\n')
		return refuse(f, "a line ending in a bare LF");
	f->match = (1u << FIELD_COUNT) - 1;
	f->pos = 0;
	f->state = ST_NAME;
	return name_byte(f, c);
}

/* The head is whole: does it frame one request, the way libevent will read it? */
static int end_head(http_framing_t *f)
{
	if ((f->flags & FR_HTTP11) && !(f->flags & FR_HOST))
		return refuse(f, "HTTP/1.1 without Host");
	if ((f->flags & FR_CL) && (f->flags & FR_TE))
		return refuse(f, "both Content-Length and Transfer-Encoding");
	if ((f->flags & FR_TE) && !(f->flags & FR_HTTP11))
		return refuse(f, "Transfer-Encoding in HTTP/1.0");
	if (f->method == METHOD_NO_BODY && ((f->flags & FR_TE) || f->length > 0))
		return refuse(f, "a body on a method whose body libevent does not read");
	if (f->flags & FR_TE) {
		f->state = ST_CHUNK_FIRST;
	} else if (f->length > 0) {
		f->remaining = f->length;
		f->state = ST_BODY;
	} else {
		f->state = ST_START;
	}
	return UNIT_DONE; /* the head may go to libevent */
}

/* ---- chunked bodies ---- */

static int chunk_size_byte(http_framing_t *f, unsigned char c)
{
	int v = hex_digit(c);

	if (v >= 0) {
		if (f->state == ST_CHUNK_FIRST)
			f->number = 0;
		add_digit(&f->number, 16, (unsigned)v);
		f->state = ST_CHUNK_SIZE;
		return 0;
	}
	if (c == '\r' && f->state == ST_CHUNK_SIZE) {
		f->state = ST_CHUNK_LF;
		return 0;
	}
	if (c == ';')
		return refuse(f, "a chunk extension (libevent refuses them)");
	return refuse(f, "a chunk size that is not only hexadecimal digits");
}

static int chunk_lf_byte(http_framing_t *f, unsigned char c)
{
	if (c != '\n')
		return refuse(f, "a bare CR");
	if (f->number == 0) {
		f->state = ST_LAST_CR;
		return 0;
	}
	f->remaining = f->number;
	f->state = ST_CHUNK_DATA;
	return UNIT_DONE; /* the size line may go to libevent */
}

/* ---- one byte ---- */

static int expect(http_framing_t *f, unsigned char c, unsigned char want, int next, const char *why)
{
	if (c != want)
		return refuse(f, why);
	f->state = (uint8_t)next;
	return 0;
}

static int step(http_framing_t *f, unsigned char c)
{
	switch (f->state) {
	case ST_START:
		return start_byte(f, c);
	case ST_METHOD:
		return method_byte(f, c);
	case ST_TARGET_FIRST:
	case ST_TARGET:
		return target_byte(f, c);
	case ST_VERSION:
		return version_byte(f, c);
	case ST_LINE_CR:
		return expect(f, c, '\r', ST_LINE_LF, "an HTTP version other than HTTP/1.0 and HTTP/1.1");
	case ST_LINE_LF:
		return expect(f, c, '\n', ST_FIELD_START, "a bare CR");
	case ST_FIELD_START:
		return field_start_byte(f, c);
	case ST_NAME:
		return name_byte(f, c);
	case ST_VALUE:
		return value_byte(f, c);
	case ST_FIELD_LF:
		return c == '\n' ? end_field(f) : refuse(f, "a bare CR");
	case ST_HEAD_LF:
		return c == '\n' ? end_head(f) : refuse(f, "a bare CR");
	case ST_CHUNK_FIRST:
	case ST_CHUNK_SIZE:
		return chunk_size_byte(f, c);
	case ST_CHUNK_LF:
		return chunk_lf_byte(f, c);
	case ST_DATA_CR:
		return expect(f, c, '\r', ST_DATA_LF, "chunk data not followed by CRLF");
	case ST_DATA_LF:
		return expect(f, c, '\n', ST_CHUNK_FIRST, "chunk data not followed by CRLF");
	case ST_LAST_CR:
		return expect(f, c, '\r', ST_LAST_LF,
		              "trailer fields (libevent would add them to the headers)");
	case ST_LAST_LF:
		return expect(f, c, '\n', ST_START, "a bare CR") == 0 ? UNIT_DONE
		                                                      : -1; /* the request is whole */
	default:
		return refuse(f, f->error != NULL ? f->error : "an earlier error");
	}
}

/* In a body: skips what is left of it in p[i..len), and returns the new i. */
static size_t skip_body(http_framing_t *f, size_t i, size_t len)
{
	uint64_t take = len - i < f->remaining ? len - i : f->remaining;

	f->remaining -= take;
	if (f->remaining == 0)
		f->state = f->state == ST_BODY ? ST_START : ST_DATA_CR;
	return i + (size_t)take;
}

/*
 * The bytes most of a head is made of (the target, the values of fields
 * that do not frame) need no state: they are skipped in a tight loop up to
 * the next byte step() must see. Returns the new i, or len.
 */
static size_t skip_plain(http_framing_t *f, const unsigned char *p, size_t i, size_t len)
{
	size_t j = i;

	if (f->state == ST_TARGET) {
		while (j < len && (classes[p[j]] & C_TARGET))
			j++;
	} else if (f->state == ST_VALUE && f->field == FIELD_OTHER) {
		while (j < len && (classes[p[j]] & C_VALUE))
			j++;
	} else if (f->state == ST_NAME && f->match == 0) {
		while (j < len && (classes[p[j]] & C_TCHAR))
			j++; /* no candidate left: pos no longer matters */
	}
	f->unit_len += j - i;
	return j;
}

size_t http_framing_feed(http_framing_t *f, const unsigned char *p, size_t len)
{
	size_t i = 0;

	if (f->state == ST_REFUSED)
		return 0;
	while (i < len) {
		int rc;

		if (f->state == ST_BODY || f->state == ST_CHUNK_DATA) {
			i = skip_body(f, i, len);
			continue;
		}
		i = skip_plain(f, p, i, len);
		if (f->unit_len > f->unit_max) {
			i -= f->unit_len - f->unit_max; /* the first byte past the bound is the refused one */
			f->unit_len = f->unit_max;
			refuse(f, "a request head or a chunk-size line too long");
			return i;
		}
		if (i == len)
			break;
		rc = step(f, p[i]);
		if (rc < 0)
			return i;
		if (rc == UNIT_DONE) {
			f->unit_len = 0;
		} else if (++f->unit_len > f->unit_max) {
			refuse(f, "a request head or a chunk-size line too long");
			f->unit_len--; /* the refused byte is not counted */
			return i;
		}
		i++;
	}
	return len;
}
