/* SPDX-License-Identifier: BSD-2-Clause */
/* config_value.c: parses and formats durations, sizes, integers, booleans, addresses and partition sets. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "core/config_value.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct {
	const char *suffix;
	int64_t factor;
} unit_t;

/* Largest first, so that formatting picks the shortest exact spelling. */
static const unit_t duration_units[] = {
    {"h", 3600000},
    {"m", 60000},
    {"s", 1000},
    {"ms", 1},
};

static const unit_t size_units[] = {
    {"g", 1024 * 1024 * 1024},
    {"G", 1024 * 1024 * 1024},
    {"m", 1024 * 1024},
    {"M", 1024 * 1024},
    {"k", 1024},
    {"K", 1024},
    {"", 1},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Reads a run of decimal digits. Unlike strtoll() it accepts no sign and no
 * leading blanks, and it refuses overflow instead of clamping, so "-5s",
 * " 5s" and "99999999999999999999s" are errors rather than surprises.
 * Returns the number of digits read (0 when there are none) or -1 on overflow.
 */
static int read_digits(const char *text, int64_t *value)
{
	int64_t v = 0;
	int n = 0;

	while (text[n] >= '0' && text[n] <= '9') {
		int digit = text[n] - '0';

		if (v > (INT64_MAX - digit) / 10)
			return -1;
		v = v * 10 + digit;
		n++;
	}
	*value = v;
	return n;
}

/* Parses "<digits><suffix>" where the suffix must be one of units, exactly. */
static int parse_scaled(const char *text, const unit_t *units, size_t count, int64_t *out)
{
	int64_t v;
	int n;

	if (text == NULL)
		return -1;
	n = read_digits(text, &v);
	if (n <= 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(text + n, units[i].suffix) != 0)
			continue;
		if (v > INT64_MAX / units[i].factor)
			return -1;
		*out = v * units[i].factor;
		return 0;
	}
	return -1;
}

/* A unit is always required: a bare "30" could mean seconds to one reader and milliseconds to another. */
int config_parse_duration(const char *text, int64_t *ms)
{
	return parse_scaled(text, duration_units, COUNT(duration_units), ms);
}

int config_parse_size(const char *text, int64_t *bytes)
{
	return parse_scaled(text, size_units, COUNT(size_units), bytes);
}

int config_parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
	int negative;
	int64_t v;
	int n;

	if (text == NULL)
		return -1;
	negative = text[0] == '-';
	n = read_digits(text + negative, &v);
	if (n <= 0 || text[negative + n] != '\0')
		return -1;
	if (negative)
		v = -v;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int config_parse_bool(const char *text, int *out)
{
	static const char *const truths[] = {"true", "yes", "on"};
	static const char *const lies[] = {"false", "no", "off"};

	if (text == NULL)
		return -1;
	for (size_t i = 0; i < COUNT(truths); i++) {
		if (strcasecmp(text, truths[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(text, lies[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

int config_parse_enum(const char *text, const char *const *names, int *out)
{
	if (text == NULL || names == NULL)
		return -1;
	for (int i = 0; names[i] != NULL; i++) {
		if (strcasecmp(text, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -1;
}

/* Whether host (brackets already removed when bracketed) names something we can bind. */
static int listen_host_valid(const char *host, int bracketed)
{
	unsigned char addr[sizeof(struct in6_addr)];

	if (bracketed)
		return inet_pton(AF_INET6, host, addr) == 1;
	if (strcmp(host, "*") == 0 || strcmp(host, "localhost") == 0)
		return 1;
	/* inet_pton refuses "1.2.3" and "010.1.1.1", which inet_aton would read surprisingly. */
	return inet_pton(AF_INET, host, addr) == 1;
}

int config_parse_listen(const char *text, char *host, size_t host_len, int *port)
{
	char buf[INET6_ADDRSTRLEN + 1];
	const char *colon, *start;
	size_t len;
	int bracketed;
	int64_t p;

	if (text == NULL || (colon = strrchr(text, ':')) == NULL)
		return -1;
	start = text;
	len = (size_t)(colon - text);
	/* Unbracketed IPv6 ("::1:80") is refused: the port would be ambiguous. */
	bracketed = len >= 2 && text[0] == '[' && text[len - 1] == ']';
	if (bracketed) {
		start++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, start, len);
	buf[len] = '\0';
	if (!listen_host_valid(buf, bracketed) || config_parse_int(colon + 1, 1, 65535, &p) < 0)
		return -1;
	if (host != NULL) {
		if (host_len <= len)
			return -1;
		memcpy(host, buf, len + 1);
	}
	if (port != NULL)
		*port = (int)p;
	return 0;
}

int config_parse_partition_item(const char *text, config_partition_set_t *set)
{
	int64_t low, high;
	int n, m;

	if (text == NULL)
		return -1;
	n = read_digits(text, &low);
	if (n <= 0)
		return -1;
	high = low;
	if (text[n] == '-') {
		m = read_digits(text + n + 1, &high);
		if (m <= 0)
			return -1;
		n += 1 + m;
	}
	if (text[n] != '\0' || low > high || high >= CONFIG_MAX_PARTITIONS)
		return -1;
	for (int64_t p = low; p <= high; p++)
		set->member[p] = 1;
	return 0;
}

/* Copies text[0..len) without surrounding blanks into buf and parses it as one item. */
static int parse_trimmed_item(const char *text, size_t len, config_partition_set_t *set)
{
	char buf[32];

	while (len > 0 && (text[0] == ' ' || text[0] == '\t')) {
		text++;
		len--;
	}
	while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	return config_parse_partition_item(buf, set);
}

int config_parse_partition_set(const char *text, config_partition_set_t *set)
{
	config_partition_set_t tmp;

	if (text == NULL)
		return -1;
	if (strcmp(text, "all") == 0) {
		set->all = 1;
		return 0;
	}
	/* Work on a copy so that a bad item late in the list leaves set untouched. */
	tmp = *set;
	for (;;) {
		const char *comma = strchr(text, ',');
		size_t len = comma != NULL ? (size_t)(comma - text) : strlen(text);

		if (parse_trimmed_item(text, len, &tmp) < 0)
			return -1;
		if (comma == NULL)
			break;
		text = comma + 1;
	}
	*set = tmp;
	return 0;
}

/* Writes value with the first (largest) unit that divides it exactly; units must end with factor 1. */
static void format_scaled(int64_t value, const unit_t *units, size_t count, char *buf, size_t len)
{
	for (size_t i = 0; i < count; i++) {
		if (units[i].factor == 1 || (value != 0 && value % units[i].factor == 0)) {
			snprintf(buf, len, "%" PRId64 "%s", value / units[i].factor, units[i].suffix);
			return;
		}
	}
}

void config_format_duration(int64_t ms, char *buf, size_t len)
{
	format_scaled(ms, duration_units, COUNT(duration_units), buf, len);
}

void config_format_size(int64_t bytes, char *buf, size_t len)
{
	/* Only the lower-case spellings: the upper-case twins are there to be read, not written. */
	static const unit_t canonical[] = {
	    {"g", 1024 * 1024 * 1024}, {"m", 1024 * 1024}, {"k", 1024}, {"", 1}};

	format_scaled(bytes, canonical, COUNT(canonical), buf, len);
}
