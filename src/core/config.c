/* SPDX-License-Identifier: BSD-2-Clause */
/* config.c: loads a YAML file into an immutable config_t, checks it, and compares two generations. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "core/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/config_keys.h"
#include "core/config_value.h"
#include "core/keys.h"

/* A configuration file is a few kilobytes; this only stops a wrong path (a disk image, /dev/zero). */
#define CONFIG_MAX_FILE (16 * 1024 * 1024)
/* How much of a user's value an error message quotes. */
#define SHOWN_MAX 60

/* The YAML text being read: the file, or one key's built-in default. */
typedef struct {
	const char *name; /* what error messages call it */
	const char *text;
	size_t len;
	yaml_document_t *doc; /* while it is being walked */
} source_t;

/* The state of one load. It lives on config_load_buffer()'s stack: loading touches no global state. */
typedef struct {
	source_t *src;
	config_t *cfg;
	config_errors_t *errs;
	unsigned char bad[CONFIG_MAX_KEYS];    /* the value was refused: checks that read it are skipped */
	yaml_mark_t marks[CONFIG_MAX_KEYS];    /* where the file wrote each key's value */
	const char *sections[CONFIG_MAX_KEYS]; /* sections met so far, pointing into the document */
	int section_count;
	int default_key; /* while defaults are applied: the key whose default is being parsed */
} load_t;

/* A quotable copy of a user's text: one line, bounded, no control characters. */
typedef struct {
	char text[SHOWN_MAX + 4];
} shown_t;

/* ---- error list ---- */

static char *format_va(const char *fmt, va_list ap)
{
	va_list copy;
	char *s;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	if (vsnprintf(s, (size_t)n + 1, fmt, ap) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

/* Takes ownership of item. An error that cannot be stored is still counted, so the load still fails. */
static void errors_push(config_errors_t *errs, char *item)
{
	char **items;
	int capacity;

	if (item == NULL) {
		errs->lost++;
		return;
	}
	if (errs->count == errs->capacity) {
		capacity = errs->capacity > 0 ? errs->capacity * 2 : 8;
		items = realloc(errs->items, (size_t)capacity * sizeof(*items));
		if (items == NULL) {
			free(item);
			errs->lost++;
			return;
		}
		errs->items = items;
		errs->capacity = capacity;
	}
	errs->items[errs->count++] = item;
}

void config_errors_add(config_errors_t *errs, const char *fmt, ...)
{
	va_list ap;

	if (errs == NULL)
		return;
	va_start(ap, fmt);
	errors_push(errs, format_va(fmt, ap));
	va_end(ap);
}

void config_errors_clear(config_errors_t *errs)
{
	if (errs == NULL)
		return;
	for (int i = 0; i < errs->count; i++)
		free(errs->items[i]);
	free(errs->items);
	errs->items = NULL;
	errs->count = 0;
	errs->capacity = 0;
	errs->lost = 0;
}

static int errors_total(const config_errors_t *errs)
{
	return errs->count + errs->lost;
}

/* Appends "FILE:LINE:COLUMN: message"; libyaml's marks count from 0, people count from 1. */
static void report_at(load_t *ld, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_at(load_t *ld, yaml_mark_t mark, const char *fmt, ...)
{
	va_list ap;
	char *message;

	va_start(ap, fmt);
	message = format_va(fmt, ap);
	va_end(ap);
	if (message == NULL) {
		ld->errs->lost++;
		return;
	}
	config_errors_add(ld->errs, "%s:%zu:%zu: %s", ld->src->name, mark.line + 1, mark.column + 1, message);
	free(message);
}

/*
 * Values are quoted in messages that end up in logs and terminals, so a
 * value holding a newline or an escape sequence must not forge log lines.
 */
static const char *shown(const char *text, shown_t *buf)
{
	size_t i;

	for (i = 0; i < SHOWN_MAX && text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)text[i];

		buf->text[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf->text[i] = '\0';
	if (text[i] != '\0')
		memcpy(buf->text + i, "...", 4);
	return buf->text;
}

/* ---- YAML node helpers ---- */

static yaml_node_t *node_at(const load_t *ld, int index)
{
	return yaml_document_get_node(ld->src->doc, index);
}

static const char *scalar(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* YAML's null: a plain empty scalar, "~" or "null". A quoted "" is an empty string, not null. */
static int text_is_null(const char *value, yaml_scalar_style_t style)
{
	if (style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return value[0] == '\0' || strcmp(value, "~") == 0 || strcmp(value, "null") == 0 ||
	       strcmp(value, "Null") == 0 || strcmp(value, "NULL") == 0;
}

static int node_is_null(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE && text_is_null(scalar(node), node->data.scalar.style);
}

/* A "\0" escape would silently cut a C string short; such scalars are refused instead. */
static int scalar_has_nul(const yaml_node_t *node)
{
	return strlen(scalar(node)) != node->data.scalar.length;
}

static const char *node_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a single value";
	}
}

static void *field(const load_t *ld, const config_key_t *key)
{
	return (char *)ld->cfg + key->offset;
}

static int *count_field(const load_t *ld, const config_key_t *key)
{
	return (int *)(void *)((char *)ld->cfg + key->count_offset);
}

/* ---- scalar values ---- */

/* The text of a single-valued key, or NULL after saying why there is none. Null means "" for strings. */
static const char *value_text(load_t *ld, const config_key_t *key, const yaml_node_t *node)
{
	if (node->type != YAML_SCALAR_NODE) {
		report_at(ld, node->start_mark, "%s: expected a single value, not %s", key->name,
		          node_kind(node));
		return NULL;
	}
	if (scalar_has_nul(node)) {
		report_at(ld, node->start_mark, "%s: contains a NUL character", key->name);
		return NULL;
	}
	if (node_is_null(node)) {
		if (key->type == CONFIG_TYPE_STRING)
			return "";
		report_at(ld, node->start_mark, "%s: missing value", key->name);
		return NULL;
	}
	return scalar(node);
}

static int set_string(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text)
{
	char **slot = field(ld, key);
	char *copy;

	if (key->nonempty && text[0] == '\0') {
		report_at(ld, node->start_mark, "%s: must not be empty", key->name);
		return -1;
	}
	if ((copy = strdup(text)) == NULL) {
		report_at(ld, node->start_mark, "%s: out of memory", key->name);
		return -1;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

static int set_bool(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text)
{
	shown_t buf;
	int value;

	if (config_parse_bool(text, &value) < 0) {
		report_at(ld, node->start_mark, "%s: invalid boolean '%s' (use true or false)", key->name,
		          shown(text, &buf));
		return -1;
	}
	*(int *)field(ld, key) = value;
	return 0;
}

static int set_int(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text)
{
	int64_t value;

	if (config_parse_int(text, key->min, key->max, &value) < 0) {
		report_at(ld, node->start_mark, "%s: must be an integer from %" PRId64 " to %" PRId64,
		          key->name, key->min, key->max);
		return -1;
	}
	*(int *)field(ld, key) = (int)value;
	return 0;
}

/* sysconf() may fail or report more CPUs than workers make sense; one worker always serves. */
static int cpu_count(int64_t max)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > max)
		n = (long)max;
	return (int)n;
}

static int set_workers(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text)
{
	int64_t value;

	if (strcmp(text, "auto") == 0) {
		*(int *)field(ld, key) = cpu_count(key->max);
		return 0;
	}
	if (config_parse_int(text, key->min, key->max, &value) < 0) {
		report_at(ld, node->start_mark,
		          "%s: must be 'auto' or an integer from %" PRId64 " to %" PRId64, key->name,
		          key->min, key->max);
		return -1;
	}
	*(int *)field(ld, key) = (int)value;
	return 0;
}

static int set_enum(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text)
{
	char choices[160];
	shown_t buf;
	int value;

	if (config_parse_enum(text, key->choices, &value) < 0) {
		config_key_type_text(key, choices, sizeof(choices));
		report_at(ld, node->start_mark, "%s: invalid value '%s' (use %s)", key->name,
		          shown(text, &buf), choices);
		return -1;
	}
	*(int *)field(ld, key) = value;
	return 0;
}

/* How a duration or a size is read, checked and written back in messages. */
typedef struct {
	int (*parse)(const char *text, int64_t *out);
	void (*format)(int64_t value, char *buf, size_t len);
	const char *what;
	const char *examples;
} scaled_t;

static const scaled_t durations = {config_parse_duration, config_format_duration, "duration",
                                   "250ms, 5s, 1m"};
static const scaled_t sizes = {config_parse_size, config_format_size, "size", "512, 4k, 1m"};

static int set_scaled(load_t *ld, const config_key_t *key, const yaml_node_t *node, const char *text,
                      const scaled_t *how)
{
	char low[32], high[32];
	shown_t buf;
	int64_t value;

	if (how->parse(text, &value) < 0) {
		report_at(ld, node->start_mark, "%s: invalid %s '%s' (use e.g. %s)", key->name, how->what,
		          shown(text, &buf), how->examples);
		return -1;
	}
	if (value < key->min || value > key->max) {
		how->format(key->min, low, sizeof(low));
		how->format(key->max, high, sizeof(high));
		report_at(ld, node->start_mark, "%s: must be from %s to %s", key->name, low, high);
		return -1;
	}
	*(int64_t *)field(ld, key) = value;
	return 0;
}

static int apply_scalar(load_t *ld, const config_key_t *key, const yaml_node_t *node)
{
	const char *text = value_text(ld, key, node);

	if (text == NULL)
		return -1;
	switch (key->type) {
	case CONFIG_TYPE_STRING:
		return set_string(ld, key, node, text);
	case CONFIG_TYPE_BOOL:
		return set_bool(ld, key, node, text);
	case CONFIG_TYPE_INT:
		return set_int(ld, key, node, text);
	case CONFIG_TYPE_WORKERS:
		return set_workers(ld, key, node, text);
	case CONFIG_TYPE_ENUM:
		return set_enum(ld, key, node, text);
	case CONFIG_TYPE_DURATION:
		return set_scaled(ld, key, node, text, &durations);
	case CONFIG_TYPE_SIZE:
		return set_scaled(ld, key, node, text, &sizes);
	default:
		return -1;
	}
}

/* ---- http.listen ---- */

/* Gathers the addresses; one bare "host:port" is accepted as a list of one. */
static int listen_items(load_t *ld, const config_key_t *key, yaml_node_t *node, yaml_node_t **items,
                        int *count)
{
	*count = 0;
	if (node->type == YAML_SCALAR_NODE && !node_is_null(node)) {
		items[(*count)++] = node;
		return 0;
	}
	if (node->type != YAML_SEQUENCE_NODE) {
		report_at(ld, node->start_mark, "%s: expected a list of host:port addresses", key->name);
		return -1;
	}
	for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top;
	     it++) {
		if (*count == CONFIG_MAX_LISTEN) {
			report_at(ld, node->start_mark, "%s: at most %d addresses", key->name,
			          CONFIG_MAX_LISTEN);
			return -1;
		}
		if ((items[*count] = node_at(ld, *it)) == NULL)
			return -1;
		(*count)++;
	}
	if (*count == 0) {
		report_at(ld, node->start_mark, "%s: needs at least one address", key->name);
		return -1;
	}
	return 0;
}

static int check_listen_item(load_t *ld, const config_key_t *key, yaml_node_t **items, int i)
{
	const yaml_node_t *item = items[i];
	shown_t buf;

	if (item->type != YAML_SCALAR_NODE || node_is_null(item) || scalar_has_nul(item)) {
		report_at(ld, item->start_mark, "%s: expected a host:port address, not %s", key->name,
		          node_kind(item));
		return -1;
	}
	if (config_parse_listen(scalar(item), NULL, 0, NULL) < 0) {
		report_at(
		    ld, item->start_mark,
		    "%s: invalid listen address '%s' (use IPv4:port, [IPv6]:port, localhost:port or *:port)",
		    key->name, shown(scalar(item), &buf));
		return -1;
	}
	for (int j = 0; j < i; j++) {
		if (items[j]->type == YAML_SCALAR_NODE && strcmp(scalar(items[j]), scalar(item)) == 0) {
			report_at(ld, item->start_mark, "%s: duplicate address '%s'", key->name,
			          shown(scalar(item), &buf));
			return -1;
		}
	}
	return 0;
}

/* Replaces the stored list only once every copy is made, so a failure leaves it whole. */
static int store_listen(load_t *ld, const config_key_t *key, yaml_node_t **items, int count)
{
	char **slots = field(ld, key);
	int *stored = count_field(ld, key);
	char *copies[CONFIG_MAX_LISTEN] = {NULL};

	for (int i = 0; i < count; i++) {
		if ((copies[i] = strdup(scalar(items[i]))) == NULL) {
			while (i-- > 0)
				free(copies[i]);
			report_at(ld, items[0]->start_mark, "%s: out of memory", key->name);
			return -1;
		}
	}
	for (int i = 0; i < *stored; i++) {
		free(slots[i]);
		slots[i] = NULL;
	}
	memcpy(slots, copies, (size_t)count * sizeof(copies[0]));
	*stored = count;
	return 0;
}

static int apply_listen(load_t *ld, const config_key_t *key, yaml_node_t *node)
{
	yaml_node_t *items[CONFIG_MAX_LISTEN];
	int count, rc = 0;

	if (listen_items(ld, key, node, items, &count) < 0)
		return -1;
	for (int i = 0; i < count; i++) {
		if (check_listen_item(ld, key, items, i) < 0)
			rc = -1;
	}
	if (rc < 0)
		return -1;
	return store_listen(ld, key, items, count);
}

/* ---- kafka.owned_partitions ---- */

static int partition_list(load_t *ld, const config_key_t *key, yaml_node_t *node, config_partition_set_t *set)
{
	yaml_node_item_t *it;
	shown_t buf;

	if (node->data.sequence.items.start == node->data.sequence.items.top) {
		report_at(ld, node->start_mark, "%s: needs at least one partition", key->name);
		return -1;
	}
	for (it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
		yaml_node_t *item = node_at(ld, *it);

		if (item == NULL)
			return -1;
		if (item->type != YAML_SCALAR_NODE || node_is_null(item) || scalar_has_nul(item) ||
		    config_parse_partition_item(scalar(item), set) < 0) {
			report_at(ld, item->start_mark,
			          "%s: invalid partition '%s' (use a number or a range such as 0-3)",
			          key->name, item->type == YAML_SCALAR_NODE ? shown(scalar(item), &buf) : "");
			return -1;
		}
	}
	return 0;
}

/* "all" is stored as count -1 and resolved by check_partitions() once kafka.partitions is known. */
static void store_partitions(load_t *ld, const config_key_t *key, const config_partition_set_t *set)
{
	int *owned = field(ld, key);
	int *count = count_field(ld, key);

	if (set->all) {
		*count = -1;
		return;
	}
	*count = 0;
	for (int p = 0; p < CONFIG_MAX_PARTITIONS; p++) {
		if (set->member[p])
			owned[(*count)++] = p;
	}
}

static int apply_partitions(load_t *ld, const config_key_t *key, yaml_node_t *node)
{
	config_partition_set_t set;
	const char *text;
	shown_t buf;

	memset(&set, 0, sizeof(set));
	if (node->type == YAML_SEQUENCE_NODE) {
		if (partition_list(ld, key, node, &set) < 0)
			return -1;
	} else {
		if ((text = value_text(ld, key, node)) == NULL)
			return -1;
		if (config_parse_partition_set(text, &set) < 0) {
			report_at(ld, node->start_mark,
			          "%s: invalid partition set '%s' (use all, 3, 0-3 or 0-3,6)", key->name,
			          shown(text, &buf));
			return -1;
		}
	}
	store_partitions(ld, key, &set);
	return 0;
}

/* ---- kafka.producer, kafka.consumer ---- */

/* A property found in the document; the strings belong to the document until stored. */
typedef struct {
	const char *name;
	const char *value;
} property_ref_t;

static int is_reserved(const config_key_t *key, const char *name)
{
	for (int i = 0; key->reserved != NULL && key->reserved[i] != NULL; i++) {
		if (strcmp(key->reserved[i], name) == 0)
			return 1;
	}
	return 0;
}

static int check_property(load_t *ld, const config_key_t *key, const yaml_node_t *name_node,
                          const yaml_node_t *value_node, const property_ref_t *props, int count)
{
	shown_t buf;
	const char *name;

	if (name_node->type != YAML_SCALAR_NODE || node_is_null(name_node) || scalar_has_nul(name_node)) {
		report_at(ld, name_node->start_mark, "%s: expected a property name", key->name);
		return -1;
	}
	name = shown(scalar(name_node), &buf);
	if (is_reserved(key, scalar(name_node))) {
		report_at(ld, name_node->start_mark, "%s.%s: set by couponsd itself, it cannot be overridden",
		          key->name, name);
		return -1;
	}
	for (int j = 0; j < count; j++) {
		if (strcmp(props[j].name, scalar(name_node)) == 0) {
			report_at(ld, name_node->start_mark, "duplicate key '%s.%s'", key->name, name);
			return -1;
		}
	}
	if (value_node->type != YAML_SCALAR_NODE || scalar_has_nul(value_node)) {
		report_at(ld, value_node->start_mark, "%s.%s: expected a single value, not %s", key->name,
		          name, node_kind(value_node));
		return -1;
	}
	if (node_is_null(value_node)) {
		report_at(ld, value_node->start_mark, "%s.%s: missing value", key->name, name);
		return -1;
	}
	return 0;
}

static void free_properties(config_property_t *props, int count)
{
	for (int i = 0; i < count; i++) {
		free(props[i].name);
		free(props[i].value);
	}
}

static int store_properties(load_t *ld, const config_key_t *key, const yaml_node_t *node,
                            const property_ref_t *refs, int count)
{
	config_property_t copies[CONFIG_MAX_PASSTHROUGH] = {{NULL, NULL}};
	config_property_t *slots = field(ld, key);
	int *stored = count_field(ld, key);

	for (int i = 0; i < count; i++) {
		copies[i].name = strdup(refs[i].name);
		copies[i].value = strdup(refs[i].value);
		if (copies[i].name == NULL || copies[i].value == NULL) {
			free_properties(copies, i + 1);
			report_at(ld, node->start_mark, "%s: out of memory", key->name);
			return -1;
		}
	}
	free_properties(slots, *stored);
	memcpy(slots, copies, (size_t)count * sizeof(copies[0]));
	*stored = count;
	return 0;
}

static int apply_passthrough(load_t *ld, const config_key_t *key, yaml_node_t *node)
{
	property_ref_t props[CONFIG_MAX_PASSTHROUGH];
	yaml_node_pair_t *pair;
	int count = 0, rc = 0;

	if (node_is_null(node))
		return store_properties(ld, key, node, NULL, 0);
	if (node->type != YAML_MAPPING_NODE) {
		report_at(ld, node->start_mark, "%s: expected a mapping of librdkafka properties", key->name);
		return -1;
	}
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *name = node_at(ld, pair->key), *value = node_at(ld, pair->value);

		if (count == CONFIG_MAX_PASSTHROUGH) {
			report_at(ld, node->start_mark, "%s: at most %d properties", key->name,
			          CONFIG_MAX_PASSTHROUGH);
			return -1;
		}
		if (name == NULL || value == NULL || check_property(ld, key, name, value, props, count) < 0) {
			rc = -1;
			continue;
		}
		props[count].name = scalar(name);
		props[count++].value = scalar(value);
	}
	if (rc < 0)
		return -1;
	return store_properties(ld, key, node, props, count);
}

static int apply_key(load_t *ld, const config_key_t *key, yaml_node_t *node)
{
	switch (key->type) {
	case CONFIG_TYPE_LISTEN_LIST:
		return apply_listen(ld, key, node);
	case CONFIG_TYPE_PARTITIONS:
		return apply_partitions(ld, key, node);
	case CONFIG_TYPE_PASSTHROUGH:
		return apply_passthrough(ld, key, node);
	default:
		return apply_scalar(ld, key, node);
	}
}

/* ---- walking the document ---- */

static void load_key(load_t *ld, const char *section, const yaml_node_pair_t *pair)
{
	yaml_node_t *key_node = node_at(ld, pair->key), *value = node_at(ld, pair->value);
	char name[128];
	shown_t buf;
	int i, n;

	if (key_node == NULL || value == NULL)
		return;
	if (key_node->type != YAML_SCALAR_NODE || scalar_has_nul(key_node)) {
		report_at(ld, key_node->start_mark, "%s: expected a key name, not %s", section,
		          node_kind(key_node));
		return;
	}
	n = snprintf(name, sizeof(name), "%s.%s", section, scalar(key_node));
	i = n > 0 && (size_t)n < sizeof(name) ? config_key_index(name) : -1;
	if (i < 0) {
		snprintf(name, sizeof(name), "%s.%s", section, shown(scalar(key_node), &buf));
		report_at(ld, key_node->start_mark, "unknown key '%s'", name);
		return;
	}
	if (ld->cfg->key_set[i]) {
		report_at(ld, key_node->start_mark, "duplicate key '%s'", name);
		return;
	}
	ld->cfg->key_set[i] = 1;
	ld->marks[i] = value->start_mark;
	if (apply_key(ld, &config_keys[i], value) < 0)
		ld->bad[i] = 1;
}

/* Whether section was met before; records it otherwise. Only known sections get here, so the list is bounded.
 */
static int section_seen(load_t *ld, const char *section)
{
	for (int i = 0; i < ld->section_count; i++) {
		if (strcmp(ld->sections[i], section) == 0)
			return 1;
	}
	if (ld->section_count < CONFIG_MAX_KEYS)
		ld->sections[ld->section_count++] = section;
	return 0;
}

static void load_section(load_t *ld, const yaml_node_pair_t *pair)
{
	yaml_node_t *key_node = node_at(ld, pair->key), *value = node_at(ld, pair->value);
	const char *section;
	shown_t buf;

	if (key_node == NULL || value == NULL)
		return;
	if (key_node->type != YAML_SCALAR_NODE || scalar_has_nul(key_node)) {
		report_at(ld, key_node->start_mark, "expected a section name, not %s", node_kind(key_node));
		return;
	}
	section = scalar(key_node);
	if (!config_section_known(section)) {
		report_at(ld, key_node->start_mark, "unknown section '%s'", shown(section, &buf));
		return;
	}
	if (section_seen(ld, section)) {
		report_at(ld, key_node->start_mark, "duplicate section '%s'", section);
		return;
	}
	/* A section whose keys are all commented out is YAML null: it just means "all defaults". */
	if (node_is_null(value))
		return;
	if (value->type != YAML_MAPPING_NODE) {
		report_at(ld, value->start_mark, "%s: expected a mapping", section);
		return;
	}
	for (yaml_node_pair_t *p = value->data.mapping.pairs.start; p < value->data.mapping.pairs.top; p++)
		load_key(ld, section, p);
}

static void load_document(load_t *ld, yaml_node_t *root)
{
	/* An empty file, or one holding only comments or "~", means every default. */
	if (root == NULL || node_is_null(root))
		return;
	if (root->type != YAML_MAPPING_NODE) {
		report_at(ld, root->start_mark, "expected a mapping of sections (daemon:, log:, ...), not %s",
		          node_kind(root));
		return;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++)
		load_section(ld, p);
}

/* libyaml's reader reports a byte offset, not a mark; count lines to give the usual line:column. */
static yaml_mark_t mark_at_offset(const source_t *src, size_t offset)
{
	yaml_mark_t mark = {0, 0, 0};

	for (size_t i = 0; i < offset && i < src->len; i++) {
		if (src->text[i] == '\n') {
			mark.line++;
			mark.column = 0;
		} else {
			mark.column++;
		}
	}
	mark.index = offset;
	return mark;
}

static void report_syntax(load_t *ld, const yaml_parser_t *parser)
{
	const char *problem = parser->problem != NULL ? parser->problem : "malformed YAML";
	yaml_mark_t mark = parser->problem_mark;

	if (parser->error == YAML_MEMORY_ERROR) {
		report_at(ld, mark, "out of memory while parsing");
		return;
	}
	if (parser->error == YAML_READER_ERROR) {
		report_at(ld, mark_at_offset(ld->src, parser->problem_offset), "syntax error: %s", problem);
		return;
	}
	if (parser->context != NULL)
		report_at(ld, mark, "syntax error: %s (%s at line %zu, column %zu)", problem, parser->context,
		          parser->context_mark.line + 1, parser->context_mark.column + 1);
	else
		report_at(ld, mark, "syntax error: %s", problem);
}

/* A second "---" document would otherwise be ignored without a word. */
static void reject_second_document(load_t *ld, yaml_parser_t *parser)
{
	yaml_document_t extra;
	yaml_node_t *root;

	if (!yaml_parser_load(parser, &extra)) {
		report_syntax(ld, parser);
		return;
	}
	root = yaml_document_get_root_node(&extra);
	if (root != NULL)
		report_at(ld, root->start_mark, "only one YAML document is allowed");
	yaml_document_delete(&extra);
}

/*
 * Parses ld->src and hands its root node to walk. Returns 0 when the YAML was
 * well-formed and walked, -1 after a syntax error (nothing was walked).
 */
static int parse_source(load_t *ld, void (*walk)(load_t *ld, yaml_node_t *root), int single)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = -1;

	if (!yaml_parser_initialize(&parser)) {
		report_at(ld, (yaml_mark_t){0, 0, 0}, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)ld->src->text, ld->src->len);
	if (yaml_parser_load(&parser, &doc)) {
		ld->src->doc = &doc;
		walk(ld, yaml_document_get_root_node(&doc));
		if (single)
			reject_second_document(ld, &parser);
		ld->src->doc = NULL;
		yaml_document_delete(&doc);
		rc = 0;
	} else {
		report_syntax(ld, &parser);
	}
	yaml_parser_delete(&parser);
	return rc;
}

/* ---- defaults ---- */

static void load_default(load_t *ld, yaml_node_t *root)
{
	const config_key_t *key = &config_keys[ld->default_key];

	if (root == NULL) {
		report_at(ld, (yaml_mark_t){0, 0, 0}, "%s: the default is empty", key->name);
		return;
	}
	(void)apply_key(ld, key, root);
}

/*
 * Every key starts at its default, parsed from the table's text exactly like
 * a value in the file. A failure here is a bug in the table, caught by the
 * unit tests' "empty file" case.
 */
static void apply_defaults(load_t *ld)
{
	source_t *file = ld->src;

	for (int i = 0; i < config_keys_total; i++) {
		source_t src = {"built-in default", config_keys[i].default_text,
		                strlen(config_keys[i].default_text), NULL};

		ld->src = &src;
		ld->default_key = i;
		(void)parse_source(ld, load_default, 0);
	}
	ld->src = file;
}

/* ---- checks across keys ---- */

/* Where to point at for key i: its value in the file, or 1:1 when only its default is in play. */
static yaml_mark_t key_mark(const load_t *ld, int i)
{
	yaml_mark_t start = {0, 0, 0};

	return ld->cfg->key_set[i] ? ld->marks[i] : start;
}

/* Index of a key whose value a check may read, or -1 when it was refused (its error is already out). */
static int usable(const load_t *ld, const char *name)
{
	int i = config_key_index(name);

	return i >= 0 && !ld->bad[i] ? i : -1;
}

static void owned_all(config_t *cfg)
{
	for (int p = 0; p < cfg->kafka_partitions; p++)
		cfg->kafka_owned[p] = p;
	cfg->kafka_owned_count = cfg->kafka_partitions;
}

/* Resolves "all" and refuses partitions the topic does not have. */
static void check_partitions(load_t *ld)
{
	int owned = usable(ld, "kafka.owned_partitions"), total = usable(ld, "kafka.partitions");
	config_t *cfg = ld->cfg;

	if (owned < 0 || total < 0)
		return;
	if (cfg->kafka_owned_count < 0) {
		cfg->kafka_owned_all = 1;
		owned_all(cfg);
		return;
	}
	/* Sorted, so the last one is the largest. */
	if (cfg->kafka_owned_count > 0 &&
	    cfg->kafka_owned[cfg->kafka_owned_count - 1] >= cfg->kafka_partitions)
		report_at(ld, key_mark(ld, owned),
		          "kafka.owned_partitions: partition %d does not exist (kafka.partitions is %d, so 0 "
		          "to %d)",
		          cfg->kafka_owned[cfg->kafka_owned_count - 1], cfg->kafka_partitions,
		          cfg->kafka_partitions - 1);
}

static void check_retry(load_t *ld)
{
	int initial = usable(ld, "issue.retry_initial"), max = usable(ld, "issue.retry_max");
	char text[32];

	if (initial < 0 || max < 0 || ld->cfg->issue_retry_initial <= ld->cfg->issue_retry_max)
		return;
	/* Point at the value the file wrote; when it wrote both, at retry_initial. */
	if (ld->cfg->key_set[initial]) {
		config_format_duration(ld->cfg->issue_retry_max, text, sizeof(text));
		report_at(ld, key_mark(ld, initial),
		          "issue.retry_initial: must not exceed issue.retry_max (%s)", text);
	} else {
		config_format_duration(ld->cfg->issue_retry_initial, text, sizeof(text));
		report_at(ld, key_mark(ld, max),
		          "issue.retry_max: must not be less than issue.retry_initial (%s)", text);
	}
}

/* Results or dead letters written into the issue topic would be consumed as requests. */
static void check_topics(load_t *ld)
{
	static const char *const names[] = {"kafka.topic", "kafka.results_topic", "kafka.dlq_topic"};
	const char *values[] = {ld->cfg->kafka_topic, ld->cfg->kafka_results_topic, ld->cfg->kafka_dlq_topic};

	for (int a = 0; a < 3; a++) {
		for (int b = a + 1; b < 3; b++) {
			int ia = usable(ld, names[a]), ib = usable(ld, names[b]);

			if (ia < 0 || ib < 0 || strcmp(values[a], values[b]) != 0)
				continue;
			if (ld->cfg->key_set[ib])
				report_at(ld, key_mark(ld, ib), "%s: must differ from %s", names[b],
				          names[a]);
			else
				report_at(ld, key_mark(ld, ia), "%s: must differ from %s", names[a],
				          names[b]);
		}
	}
}

/*
 * Braces would add a second Redis Cluster hash tag and scatter one coupon's
 * keys over slots; a prefix too long for keys.c's buffers would make keys fail
 * to build (and, before keys were checked, collide).
 */
static void check_key_prefix(load_t *ld)
{
	int i = usable(ld, "redis.key_prefix");

	if (i >= 0 && strpbrk(ld->cfg->redis_key_prefix, "{}") != NULL)
		report_at(ld, key_mark(ld, i),
		          "redis.key_prefix: must not contain '{' or '}' (couponsd adds its own hash tag)");
	else if (i >= 0 && strlen(ld->cfg->redis_key_prefix) > KEYS_PREFIX_MAX)
		report_at(ld, key_mark(ld, i),
		          "redis.key_prefix: at most %d bytes (it starts every Redis key)", KEYS_PREFIX_MAX);
}

/*
 * The node names this host in partition_owners and in a /metrics label: the
 * host name unless set, and only characters that need no quoting in either.
 */
static void check_node(load_t *ld)
{
	int i = usable(ld, "daemon.node");
	char host[CONFIG_NODE_MAX + 1] = "";
	char **node = &ld->cfg->daemon_node;

	if (i < 0 || *node == NULL)
		return;
	if ((*node)[0] == '\0') {
		char *copy;

		if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
			snprintf(host, sizeof(host), "localhost");
		host[CONFIG_NODE_MAX] = '\0';
		if ((copy = strdup(host)) == NULL) {
			report_at(ld, key_mark(ld, i), "daemon.node: out of memory");
			return;
		}
		free(*node);
		*node = copy;
	}
	if (strlen(*node) > CONFIG_NODE_MAX)
		report_at(ld, key_mark(ld, i), "daemon.node: at most %d bytes", CONFIG_NODE_MAX);
	for (const char *c = *node; *c != '\0'; c++) {
		if (*c <= ' ' || *c > '~' || *c == '"' || *c == '\\') {
			report_at(ld, key_mark(ld, i),
			          "daemon.node: printable ASCII without spaces, quotes or backslashes");
			return;
		}
	}
}

/*
 * A consumer blocked on a dead session is freed by tcp_user_timeout
 * (postgres.dead_session_timeout); the watchdog must not kill it first, or
 * its successor, blocked the same way, in a loop. Only a value the file
 * writes is held to it: the 3 s default predates many a short worker_timeout
 * (tests use 2 s), which postgres.timeout's bound did not meet either.
 */
static void check_dead_session(load_t *ld)
{
	int dead = usable(ld, "postgres.dead_session_timeout"), worker = usable(ld, "daemon.worker_timeout");
	char text[32];

	if (dead < 0 || worker < 0 || !ld->cfg->key_set[dead] ||
	    ld->cfg->postgres_dead_session_timeout < ld->cfg->daemon_worker_timeout)
		return;
	config_format_duration(ld->cfg->daemon_worker_timeout, text, sizeof(text));
	report_at(ld, key_mark(ld, dead),
	          "postgres.dead_session_timeout: must be less than daemon.worker_timeout (%s)", text);
}

/*
 * SPEC: a stop ends within daemon.shutdown_timeout, and the unit's
 * TimeoutStopSec is sized from it; the drain is spent inside that bound, and
 * must leave time to finish what is in flight.
 */
static void check_stop_drain(load_t *ld)
{
	int drain = usable(ld, "daemon.stop_drain"), deadline = usable(ld, "daemon.shutdown_timeout");
	char text[32];

	/* Its default (0s) is always below shutdown_timeout's minimum: only a value in the file can fail. */
	if (drain < 0 || deadline < 0 || ld->cfg->daemon_stop_drain < ld->cfg->daemon_shutdown_timeout)
		return;
	config_format_duration(ld->cfg->daemon_shutdown_timeout, text, sizeof(text));
	report_at(
	    ld, key_mark(ld, drain),
	    "daemon.stop_drain: must be less than daemon.shutdown_timeout (%s), which bounds the whole stop",
	    text);
}

static void check_config(load_t *ld)
{
	check_partitions(ld);
	check_node(ld);
	check_dead_session(ld);
	check_retry(ld);
	check_topics(ld);
	check_key_prefix(ld);
	check_stop_drain(ld);
}

/* ---- loading ---- */

config_t *config_load_buffer(const char *name, const char *text, size_t len, config_errors_t *errs)
{
	config_errors_t scratch = {0};
	source_t src = {name != NULL ? name : "(config)", text != NULL ? text : "", text != NULL ? len : 0,
	                NULL};
	load_t ld;
	int before;

	memset(&ld, 0, sizeof(ld));
	ld.errs = errs != NULL ? errs : &scratch;
	ld.src = &src;
	before = errors_total(ld.errs);
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	if (ld.cfg == NULL || (ld.cfg->path = strdup(src.name)) == NULL) {
		config_errors_add(ld.errs, "%s: out of memory", src.name);
		free(ld.cfg);
		config_errors_clear(&scratch);
		return NULL;
	}
	apply_defaults(&ld);
	if (parse_source(&ld, load_document, 1) == 0)
		check_config(&ld);
	if (errors_total(ld.errs) != before) {
		config_free(ld.cfg);
		ld.cfg = NULL;
	}
	config_errors_clear(&scratch);
	return ld.cfg;
}

/* Reads the whole stream into a NUL-terminated buffer. */
static int read_stream(FILE *f, const char *path, char **text, size_t *len, config_errors_t *errs)
{
	size_t capacity = 4096, used = 0, n;
	char *buf = malloc(capacity), *grown;

	if (buf == NULL)
		goto out_of_memory;
	while ((n = fread(buf + used, 1, capacity - used - 1, f)) > 0) {
		used += n;
		if (used + 1 < capacity)
			continue;
		if (capacity >= CONFIG_MAX_FILE) {
			config_errors_add(errs, "%s: larger than %d MiB, not a configuration file", path,
			                  CONFIG_MAX_FILE / (1024 * 1024));
			free(buf);
			return -1;
		}
		if ((grown = realloc(buf, capacity * 2)) == NULL)
			goto out_of_memory;
		buf = grown;
		capacity *= 2;
	}
	if (ferror(f)) {
		config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
		free(buf);
		return -1;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return 0;
out_of_memory:
	free(buf);
	config_errors_add(errs, "%s: out of memory", path);
	return -1;
}

static int read_file(const char *path, char **text, size_t *len, config_errors_t *errs)
{
	FILE *f = fopen(path, "rb");
	int rc;

	if (f == NULL) {
		config_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	rc = read_stream(f, path, text, len, errs);
	if (fclose(f) != 0 && rc == 0) {
		config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
		free(*text);
		rc = -1;
	}
	return rc;
}

config_t *config_load(const char *path, config_errors_t *errs)
{
	config_errors_t scratch = {0};
	config_t *cfg = NULL;
	char *text;
	size_t len;

	if (errs == NULL)
		errs = &scratch;
	if (path != NULL && read_file(path, &text, &len, errs) == 0) {
		cfg = config_load_buffer(path, text, len, errs);
		free(text);
	}
	config_errors_clear(&scratch);
	return cfg;
}

/* ---- config_peek_string ---- */

/* What peek_scan knows about one open collection. */
typedef struct {
	int is_mapping;
	int want_key;  /* in a mapping: the next node is a key */
	char key[128]; /* the mapping's current key; "" when it was not a short scalar */
} peek_frame_t;

/* A node ended inside frames[depth - 1]: in a mapping, keys and values alternate. */
static void peek_node_done(peek_frame_t *frames, int depth, const char *text)
{
	peek_frame_t *f;

	if (depth < 1 || depth > 2)
		return;
	f = &frames[depth - 1];
	if (!f->is_mapping)
		return;
	if (f->want_key) {
		f->key[0] = '\0';
		if (text != NULL && strlen(text) < sizeof(f->key))
			memcpy(f->key, text, strlen(text) + 1);
	}
	f->want_key = !f->want_key;
}

/* Whether a scalar event at this depth is the value of section.name. */
static int peek_matches(const peek_frame_t *frames, int depth, const char *section, const char *name)
{
	return depth == 2 && frames[0].is_mapping && frames[1].is_mapping && !frames[1].want_key &&
	       strcmp(frames[0].key, section) == 0 && strcmp(frames[1].key, name) == 0;
}

/*
 * Follows the parser's events rather than loading a document, so that a
 * syntax error further down the file does not hide a key written above it.
 * Returns 1 with *value set, 0 when not found, -1 when out of memory.
 */
static int peek_events(yaml_parser_t *parser, const char *section, const char *name, char **value)
{
	peek_frame_t frames[2];
	yaml_event_t event;
	int depth = 0, found = 0;

	memset(frames, 0, sizeof(frames));
	while (found == 0 && yaml_parser_parse(parser, &event)) {
		yaml_event_type_t type = event.type;

		if (type == YAML_SCALAR_EVENT) {
			const char *text = (const char *)event.data.scalar.value;

			if (peek_matches(frames, depth, section, name)) {
				*value = strdup(text_is_null(text, event.data.scalar.style) ? "" : text);
				found = *value != NULL ? 1 : -1;
			}
			peek_node_done(frames, depth, text);
		} else if (type == YAML_ALIAS_EVENT) {
			peek_node_done(frames, depth, NULL);
		} else if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) {
			if (depth < 2)
				frames[depth] = (peek_frame_t){type == YAML_MAPPING_START_EVENT, 1, ""};
			depth++;
		} else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) {
			depth--;
			peek_node_done(frames, depth, NULL);
		}
		yaml_event_delete(&event);
		if (type == YAML_DOCUMENT_END_EVENT || type == YAML_STREAM_END_EVENT)
			break;
	}
	return found;
}

static int peek_text(const char *text, size_t len, const char *key, char **value)
{
	char section[128];
	const char *dot = strchr(key, '.');
	yaml_parser_t parser;
	int found;

	if (dot == NULL || (size_t)(dot - key) >= sizeof(section))
		return 0;
	memcpy(section, key, (size_t)(dot - key));
	section[dot - key] = '\0';
	if (!yaml_parser_initialize(&parser))
		return -1;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	found = peek_events(&parser, section, dot + 1, value);
	yaml_parser_delete(&parser);
	return found;
}

/* The default goes through the real loader, so peek can never disagree with config_load about it. */
static char *default_string(const config_key_t *key)
{
	config_t *defaults = config_load_buffer("defaults", "", 0, NULL);
	char *value = NULL;

	if (defaults != NULL) {
		value = strdup(*(char **)((char *)defaults + key->offset));
		config_free(defaults);
	}
	return value;
}

char *config_peek_string(const char *path, const char *key)
{
	config_errors_t ignored = {0};
	char *text, *value = NULL;
	size_t len;
	int i = key != NULL ? config_key_index(key) : -1;
	int found;

	if (path == NULL || i < 0 || config_keys[i].type != CONFIG_TYPE_STRING)
		return NULL;
	if (read_file(path, &text, &len, &ignored) < 0) {
		config_errors_clear(&ignored);
		return NULL;
	}
	found = peek_text(text, len, key, &value);
	free(text);
	config_errors_clear(&ignored);
	if (found < 0)
		return NULL;
	return found ? value : default_string(&config_keys[i]);
}

/* ---- freeing, comparing, inspecting ---- */

static void free_value(config_t *cfg, const config_key_t *key)
{
	void *slot = (char *)cfg + key->offset;
	int count = key->count_offset != 0 ? *(int *)(void *)((char *)cfg + key->count_offset) : 0;

	switch (key->type) {
	case CONFIG_TYPE_STRING:
		free(*(char **)slot);
		break;
	case CONFIG_TYPE_LISTEN_LIST:
		for (int i = 0; i < count; i++)
			free(((char **)slot)[i]);
		break;
	case CONFIG_TYPE_PASSTHROUGH:
		free_properties(slot, count);
		break;
	default:
		break;
	}
}

void config_free(config_t *cfg)
{
	if (cfg == NULL)
		return;
	for (int i = 0; i < config_keys_total; i++)
		free_value(cfg, &config_keys[i]);
	free(cfg->path);
	free(cfg);
}

static int strings_equal(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static const void *value_of(const config_t *cfg, size_t offset)
{
	return (const char *)cfg + offset;
}

static int lists_equal(const config_t *a, const config_t *b, const config_key_t *key)
{
	int count = *(const int *)value_of(a, key->count_offset);

	if (count != *(const int *)value_of(b, key->count_offset))
		return 0;
	for (int i = 0; i < count; i++) {
		if (key->type == CONFIG_TYPE_LISTEN_LIST) {
			const char *const *la = value_of(a, key->offset), *const *lb =
			                                                      value_of(b, key->offset);

			if (!strings_equal(la[i], lb[i]))
				return 0;
		} else if (key->type == CONFIG_TYPE_PARTITIONS) {
			if (((const int *)value_of(a, key->offset))[i] !=
			    ((const int *)value_of(b, key->offset))[i])
				return 0;
		} else {
			const config_property_t *pa = value_of(a, key->offset),
			                        *pb = value_of(b, key->offset);

			if (!strings_equal(pa[i].name, pb[i].name) ||
			    !strings_equal(pa[i].value, pb[i].value))
				return 0;
		}
	}
	return 1;
}

static int values_equal(const config_t *a, const config_t *b, const config_key_t *key)
{
	switch (key->type) {
	case CONFIG_TYPE_STRING:
		return strings_equal(*(char *const *)value_of(a, key->offset),
		                     *(char *const *)value_of(b, key->offset));
	case CONFIG_TYPE_DURATION:
	case CONFIG_TYPE_SIZE:
		return *(const int64_t *)value_of(a, key->offset) ==
		       *(const int64_t *)value_of(b, key->offset);
	case CONFIG_TYPE_LISTEN_LIST:
	case CONFIG_TYPE_PARTITIONS:
	case CONFIG_TYPE_PASSTHROUGH:
		return lists_equal(a, b, key);
	default:
		return *(const int *)value_of(a, key->offset) == *(const int *)value_of(b, key->offset);
	}
}

void config_restart_keys(const config_t *old, const config_t *new_cfg, config_errors_t *out)
{
	if (old == NULL || new_cfg == NULL || out == NULL)
		return;
	for (int i = 0; i < config_keys_total; i++) {
		const config_key_t *key = &config_keys[i];

		if (!key->reloadable && !values_equal(old, new_cfg, key))
			config_errors_add(out, "%s: changing it needs a restart; keeping the running value",
			                  key->name);
	}
}

/* Replaces new_cfg's value of key with a copy of old's. Restart-only keys are strings, lists and scalars. */
static int copy_value(const config_t *old, config_t *new_cfg, const config_key_t *key)
{
	void *to = (char *)new_cfg + key->offset;
	const void *from = value_of(old, key->offset);
	char *copies[CONFIG_MAX_LISTEN] = {0};
	int count = key->type == CONFIG_TYPE_LISTEN_LIST ? *(const int *)value_of(old, key->count_offset) : 1;

	if (key->type == CONFIG_TYPE_PARTITIONS || key->type == CONFIG_TYPE_PASSTHROUGH)
		return -1; /* no restart-only key has these types */
	if (key->type != CONFIG_TYPE_STRING && key->type != CONFIG_TYPE_LISTEN_LIST) {
		memcpy(to, from,
		       key->type == CONFIG_TYPE_DURATION || key->type == CONFIG_TYPE_SIZE ? sizeof(int64_t)
		                                                                          : sizeof(int));
		return 0;
	}
	for (int i = 0; i < count; i++) {
		if ((copies[i] = strdup(((char *const *)from)[i])) == NULL) {
			while (i-- > 0)
				free(copies[i]);
			return -1;
		}
	}
	free_value(new_cfg, key);
	memcpy(to, copies, (size_t)count * sizeof(char *));
	if (key->type == CONFIG_TYPE_LISTEN_LIST)
		*(int *)(void *)((char *)new_cfg + key->count_offset) = count;
	return 0;
}

/*
 * Owned partitions were resolved and checked against the file's
 * kafka.partitions; the running count may differ. "all" follows it; a list
 * that names a partition it does not have refuses the reload.
 */
static int fit_owned_partitions(config_t *cfg, config_errors_t *errs)
{
	if (cfg->kafka_owned_all) {
		owned_all(cfg);
		return 0;
	}
	for (int i = 0; i < cfg->kafka_owned_count; i++) {
		if (cfg->kafka_owned[i] >= cfg->kafka_partitions) {
			config_errors_add(
			    errs,
			    "kafka.owned_partitions: partition %d does not exist in the running "
			    "kafka.partitions (%d); restart to change kafka.partitions",
			    cfg->kafka_owned[i], cfg->kafka_partitions);
			return -1;
		}
	}
	return 0;
}

int config_keep_restart_keys(const config_t *old, config_t *new_cfg, config_errors_t *notes,
                             config_errors_t *errs)
{
	config_restart_keys(old, new_cfg, notes);
	for (int i = 0; old != NULL && new_cfg != NULL && i < config_keys_total; i++) {
		const config_key_t *key = &config_keys[i];

		if (!key->reloadable && !values_equal(old, new_cfg, key) &&
		    copy_value(old, new_cfg, key) != 0) {
			config_errors_add(errs, "%s: cannot keep the running value (out of memory)",
			                  key->name);
			return -1;
		}
	}
	return new_cfg != NULL ? fit_owned_partitions(new_cfg, errs) : 0;
}

int config_key_was_set(const config_t *cfg, int i)
{
	if (cfg == NULL || i < 0 || i >= config_keys_total)
		return 0;
	return cfg->key_set[i] != 0;
}
