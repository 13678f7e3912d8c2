/* SPDX-License-Identifier: BSD-2-Clause */
/* role.h: the process roles, one row each: every fact about a role in one place (relayd's procs[]). */
#ifndef COUPONSD_ROLE_H
#define COUPONSD_ROLE_H

#include "core/metrics.h"

#include <stddef.h>

/* The children first: a zeroed slot is never taken for the master. */
typedef enum { ROLE_KAFKA, ROLE_HTTP, ROLE_CONSUMER, ROLE_MASTER } role_t;

/* What a child keeps of the master's across fork(): the listen sockets, the Kafka bootstrap list. */
#define ROLE_INHERITS_LISTENERS 0x1u
#define ROLE_INHERITS_BOOTSTRAP 0x2u

struct worker;

/*
 * A role's names are printf formats that take the process's index (HTTP
 * worker number, or partition) and generation, in that order; each may use
 * neither, one or both. One spelling of each role everywhere: the title in
 * ps is "couponsd: " and the log name; the master's slot name adds what
 * tells two processes of one slot apart (an HTTP worker's generation).
 */
typedef struct {
	const char *name;              /* the role itself: "consumer" */
	const char *title;             /* ps: "couponsd: consumer partition %d" */
	const char *log_name;          /* before each log line's pid: "consumer partition %d" */
	const char *slot_name;         /* the master's lines about the process: "consumer partition %d" */
	int (*main)(struct worker *w); /* NULL for the master, whose main is master_main() */
	unsigned inherits;             /* ROLE_INHERITS_* */
	unsigned sent; /* channel messages beyond STOP, REOPEN and LOG it takes: bit 1 << channel_type_t */
	metric_t restarts; /* couponsd_worker_restarts_total's counter */
	const char
	    *crash_fault;    /* test builds: the fault switch that makes the process numbered by it crash */
	int ignores_sigterm; /* only the master's STOP (or its death) ends it, never a group SIGTERM */
} role_info_t;

const role_info_t *role_info(role_t role);

/* The role's title, log name or slot name (one of the row's formats) for one process, in buf. */
const char *role_format(const char *format, int index, unsigned generation, char *buf, size_t size);

#endif
