/* SPDX-License-Identifier: BSD-2-Clause */
/* config_value.h: pure parsers and formatters for configuration values, free of YAML and of config_t. */
#ifndef COUPONSD_CONFIG_VALUE_H
#define COUPONSD_CONFIG_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/*
 * Every parser returns 0 and stores the value, or returns -1 and leaves the
 * output untouched. None of them allocates, so they are safe on any input.
 * config_parse_duration() and config_parse_size() are declared in config.h.
 */

/* A decimal integer (optional leading '-') within [min, max]; no blanks, no '+', no hex. */
int config_parse_int(const char *text, int64_t min, int64_t max, int64_t *out);

/* true/yes/on or false/no/off, in any letter case. */
int config_parse_bool(const char *text, int *out);

/* The index of text in the NULL-terminated names (letter case ignored). */
int config_parse_enum(const char *text, const char *const *names, int *out);

/*
 * A listen address "host:port": host is an IPv4 literal, "[IPv6 literal]",
 * "localhost" or "*"; port is 1..65535. When host is not NULL it receives the
 * host without brackets (host_len must have room for it).
 */
int config_parse_listen(const char *text, char *host, size_t host_len, int *port);

/* Partitions named by a partition set; "all" is kept symbolic until kafka.partitions is known. */
typedef struct {
	int all;
	unsigned char member[CONFIG_MAX_PARTITIONS];
} config_partition_set_t;

/* Adds one item, "3" or "0-3", to set. Partitions are 0..CONFIG_MAX_PARTITIONS-1. */
int config_parse_partition_item(const char *text, config_partition_set_t *set);

/* Adds "all" or a comma-separated list of items ("0-3,6", blanks allowed around items). */
int config_parse_partition_set(const char *text, config_partition_set_t *set);

/* Writes ms with the largest unit that divides it exactly ("1h", "250ms"). */
void config_format_duration(int64_t ms, char *buf, size_t len);

/* Writes bytes with the largest unit that divides it exactly ("4k", "512"). */
void config_format_size(int64_t bytes, char *buf, size_t len);

#endif
