/* SPDX-License-Identifier: BSD-2-Clause */
/* json_scan.c: walks a JSON text without building it, calling back for the scalar members it holds. */
#include "core/json_scan.h"

#include <string.h>

typedef struct {
	const char *p, *end;
	json_scan_path_t path;
	int nesting;
	int in_array; /* the value being read is inside an array, somewhere above: not reported */
	json_scan_fn fn;
	void *arg;
} scan_t;

static int value(scan_t *s);

static void skip_ws(scan_t *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At the opening quote: moves past the closing one; *start and *len get the contents. */
static int string(scan_t *s, const char **start, size_t *len)
{
	const char *q = ++s->p;

	while (q < s->end && *q != '"') {
		if ((unsigned char)*q < 0x20 || (*q == '\\' && s->end - q < 2))
			return -1;
		q += *q == '\\' ? 2 : 1;
	}
	if (q >= s->end)
		return -1;
	*start = s->p;
	*len = (size_t)(q - s->p);
	s->p = q + 1;
	return 0;
}

/* A byte of a number, true, false or null. */
static int scalar_byte(char c)
{
	switch (c) {
	case '+':
	case '-':
	case '.':
	case 'e':
	case 'E':
	case 't':
	case 'r':
	case 'u':
	case 'f':
	case 'a':
	case 'l':
	case 's':
	case 'n':
		return 1;
	default:
		return c >= '0' && c <= '9';
	}
}

/* A number, true, false or null: the characters they are made of (structure is checked, not numerals). */
static int scalar(scan_t *s, const char **start, size_t *len)
{
	const char *q = s->p;

	while (q < s->end && scalar_byte(*q))
		q++;
	if (q == s->p)
		return -1;
	*start = s->p;
	*len = (size_t)(q - s->p);
	s->p = q;
	return 0;
}

static void report(scan_t *s, const char *v, size_t n)
{
	if (!s->in_array && s->path.depth > 0 && s->path.depth <= JSON_SCAN_DEPTH)
		s->fn(&s->path, v, n, s->arg);
}

/* One member: key, colon, value; the key goes on the path while its value is read. */
static int member(scan_t *s)
{
	const char *k;
	size_t n;
	int d = s->path.depth;
	int rc;

	if (s->p >= s->end || *s->p != '"' || string(s, &k, &n) != 0)
		return -1;
	skip_ws(s);
	if (s->p >= s->end || *s->p++ != ':')
		return -1;
	if (d < JSON_SCAN_DEPTH) {
		s->path.key[d] = k;
		s->path.len[d] = n;
	}
	s->path.depth = d + 1;
	rc = value(s);
	s->path.depth = d;
	return rc;
}

/* An object or an array, at its opening bracket. */
static int container(scan_t *s, char close)
{
	int was_in_array = s->in_array;

	if (++s->nesting > JSON_SCAN_NESTING)
		return -1;
	s->p++;
	s->in_array |= close == ']';
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
	} else {
		for (;;) {
			skip_ws(s);
			if ((close == '}' ? member(s) : value(s)) != 0)
				return -1;
			skip_ws(s);
			if (s->p < s->end && *s->p == ',') {
				s->p++;
				continue;
			}
			if (s->p < s->end && *s->p == close) {
				s->p++;
				break;
			}
			return -1;
		}
	}
	s->in_array = was_in_array;
	s->nesting--;
	return 0;
}

static int value(scan_t *s)
{
	const char *v;
	size_t n;

	skip_ws(s);
	if (s->p >= s->end)
		return -1;
	if (*s->p == '{')
		return container(s, '}');
	if (*s->p == '[')
		return container(s, ']');
	if ((*s->p == '"' ? string(s, &v, &n) : scalar(s, &v, &n)) != 0)
		return -1;
	report(s, v, n);
	return 0;
}

int json_scan(const char *text, size_t len, json_scan_fn fn, void *arg)
{
	scan_t s = {.fn = fn, .arg = arg};

	if (text == NULL)
		return -1;
	s.p = text;
	s.end = text + len;
	if (value(&s) != 0)
		return -1;
	skip_ws(&s);
	return s.p == s.end ? 0 : -1;
}
