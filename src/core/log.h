/* SPDX-License-Identifier: BSD-2-Clause */
/* log.h: one line per event, text or JSON, to stderr, syslog or a file. */
#ifndef COUPONSD_LOG_H
#define COUPONSD_LOG_H

#include "core/config.h"

/*
 * The log sink is per process: the master configures it from the config and
 * every child inherits it, then names its own role. A reload calls
 * log_configure() again with the new config; nothing else keeps log state.
 */
void log_set_role(const char *role);
int log_configure(const config_t *cfg);
int log_reopen(void);

/*
 * The log settings as one line, so the master can hand them to a child that
 * outlives a reload (the embedded Kafka child is never re-forked).
 */
int log_settings_encode(const config_t *cfg, char *buf, size_t size);
int log_settings_apply(const char *text);
void log_close(void);

void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
