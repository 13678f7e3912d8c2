/* SPDX-License-Identifier: BSD-2-Clause */
/* config_keys.h: the declarative table of configuration keys that drives parsing, checks, docs and the
 * example. */
#ifndef COUPONSD_CONFIG_KEYS_H
#define COUPONSD_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

typedef enum {
	CONFIG_TYPE_STRING,      /* char * */
	CONFIG_TYPE_BOOL,        /* int, 0 or 1 */
	CONFIG_TYPE_INT,         /* int within [min, max] */
	CONFIG_TYPE_DURATION,    /* int64_t milliseconds within [min, max] */
	CONFIG_TYPE_SIZE,        /* int64_t bytes within [min, max] */
	CONFIG_TYPE_ENUM,        /* int (an enum), the index into choices */
	CONFIG_TYPE_LISTEN_LIST, /* char *[CONFIG_MAX_LISTEN] of "host:port", count at count_offset */
	CONFIG_TYPE_WORKERS,     /* int: "auto" (number of CPUs, capped at max) or [min, max] */
	CONFIG_TYPE_PARTITIONS,  /* int[CONFIG_MAX_PARTITIONS], sorted, count at count_offset */
	CONFIG_TYPE_PASSTHROUGH, /* config_property_t[CONFIG_MAX_PASSTHROUGH], count at count_offset */
} config_type_t;

/*
 * One configuration key. The default is the text a user would write in the
 * file and goes through the same parser as the file's values, so a bad
 * default fails the unit tests instead of hiding in a second code path.
 */
typedef struct {
	const char *name; /* "section.key" */
	config_type_t type;
	const char *default_text;    /* YAML, e.g. 30s, "", ["0.0.0.0:8080"], {} */
	int reloadable;              /* 0: a running daemon keeps its value until restarted */
	const char *help;            /* one line, used by --list-keys, the docs and the example file */
	size_t offset;               /* of the value in config_t */
	size_t count_offset;         /* lists and maps: of their int count in config_t */
	int64_t min, max;            /* INT, DURATION, SIZE, WORKERS */
	const char *const *choices;  /* ENUM: names indexed by value, NULL-terminated */
	int nonempty;                /* STRING: "" is an error */
	const char *const *reserved; /* PASSTHROUGH: properties couponsd sets itself, NULL-terminated */
} config_key_t;

extern const config_key_t config_keys[];
extern const int config_keys_total;

/* Index of the key named "section.key", or -1. */
int config_key_index(const char *name);

/* Whether some key lives in this section. */
int config_section_known(const char *section);

/* Describes the accepted values of key ("integer 1..65535", "duration 1ms..1h"). */
void config_key_type_text(const config_key_t *key, char *buf, size_t len);

#endif
