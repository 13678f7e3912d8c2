/* SPDX-License-Identifier: BSD-2-Clause */
/* http_framing.h: a strict RFC 9112 reader of request framing, fed the raw bytes of one connection. */
#ifndef COUPONSD_HTTP_FRAMING_H
#define COUPONSD_HTTP_FRAMING_H

#include <stddef.h>
#include <stdint.h>

/*
 * libevent 2.1.12 is lenient where RFC 9112 asks for a 400: it takes the
 * first of two Content-Length fields, ignores "Transfer-Encoding :", reads
 * "+13" and "0xd" as numbers, cuts values at a NUL, accepts any minor
 * version and no Host, and skips the body of HEAD. Behind a proxy each such
 * disagreement about where a request ends is a request-smuggling vector.
 * This reader follows the same bytes (heads, Content-Length and chunked
 * bodies, trailers, pipelined requests) and stops at the first byte that
 * RFC 9112 does not allow or that libevent would frame otherwise.
 *
 * It allocates nothing and looks at each byte once; body bytes are skipped
 * in bulk. "Units" are what must be judged whole before libevent may see
 * them: a request head, the CRLF after chunk data with the next chunk-size
 * line, and the last chunk with its trailers.
 */
typedef struct {
	uint8_t state;
	uint8_t flags;      /* of the request being read (FR_* in http_framing.c) */
	uint8_t method;     /* what libevent does with its body (METHOD_* in http_framing.c) */
	uint8_t field;      /* the field being read, if one that frames (FIELD_*) */
	uint8_t match;      /* candidate field names still matching (a bit each), then value state */
	uint8_t pos;        /* index into the method, the version or a field name/value being matched */
	char name[8];       /* the method, while it is short enough to be one libevent knows */
	uint64_t number;    /* Content-Length or chunk size being read; saturates */
	uint64_t length;    /* the request's Content-Length */
	uint64_t remaining; /* body or chunk-data bytes still to skip */
	size_t unit_len;    /* bytes of the current unit so far (0 between units) */
	size_t unit_max;    /* a unit longer than this is refused */
	const char *error;  /* why the stream was refused, or NULL */
} http_framing_t;

/* Ready for the first request of a connection. unit_max bounds a head (and a trailer section). */
void http_framing_init(http_framing_t *f, size_t unit_max);

/*
 * Reads len more bytes of the stream. Returns len, or the index of the
 * first refused byte (then f->error says why, and every later call returns
 * 0). The unit that byte belongs to began f->unit_len bytes before it.
 */
size_t http_framing_feed(http_framing_t *f, const unsigned char *p, size_t len);

/* Bytes at the end of what was fed that belong to a unit not yet whole (to be held back). */
static inline size_t http_framing_pending(const http_framing_t *f)
{
	return f->unit_len;
}

#endif
