/* SPDX-License-Identifier: BSD-2-Clause */
/* log.c: one line per event, text or JSON, to stderr, syslog or a file. */
#include "core/log.h"

#include "core/clock.h"
#include "core/json_escape.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

typedef enum { SINK_STDERR, SINK_SYSLOG, SINK_FILE } log_sink_t;

/*
 * Process-wide by nature (stderr is too). Written only from the main thread;
 * librdkafka's threads only read it, and a reopen swaps the file with dup2()
 * so a concurrent writer never sees a closed descriptor.
 */
static struct {
	log_level_t level;
	log_format_t format;
	log_sink_t sink;
	int fd;
	char path[4096];
	char role[64];
} log_state = {LOG_LEVEL_INFO, LOG_FORMAT_TEXT, SINK_STDERR, STDERR_FILENO, "", "couponsd"};

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_role(const char *role)
{
	snprintf(log_state.role, sizeof(log_state.role), "%s", role);
}

static int open_log_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (fd < 0)
		fprintf(stderr, "couponsd: cannot open log file %s: %s\n", path, strerror(errno));
	return fd;
}

/* Points log_state.fd at a freshly opened file, keeping the descriptor number stable. */
static int install_file(const char *path)
{
	int fd = open_log_file(path);

	if (fd < 0)
		return -1;
	if (log_state.sink == SINK_FILE && log_state.fd > STDERR_FILENO) {
		if (dup2(fd, log_state.fd) < 0) {
			close(fd);
			return -1;
		}
		close(fd);
	} else {
		log_state.fd = fd;
	}
	return 0;
}

static void release_sink(void)
{
	if (log_state.sink == SINK_FILE && log_state.fd > STDERR_FILENO)
		close(log_state.fd);
	if (log_state.sink == SINK_SYSLOG)
		closelog();
	log_state.fd = STDERR_FILENO;
	log_state.sink = SINK_STDERR;
}

static int log_apply(log_level_t level, log_format_t format, const char *file)
{
	log_state.level = level;
	log_state.format = format;
	if (strcmp(file, "stderr") == 0) {
		release_sink();
		return 0;
	}
	if (strcmp(file, "syslog") == 0) {
		release_sink();
		openlog("couponsd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_state.sink = SINK_SYSLOG;
		return 0;
	}
	if (log_state.sink != SINK_FILE)
		release_sink();
	if (install_file(file) < 0)
		return -1;
	log_state.sink = SINK_FILE;
	snprintf(log_state.path, sizeof(log_state.path), "%s", file);
	return 0;
}

int log_configure(const config_t *cfg)
{
	return log_apply(cfg->log_level, cfg->log_format, cfg->log_file);
}

int log_settings_encode(const config_t *cfg, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%d %d %s", (int)cfg->log_level, (int)cfg->log_format, cfg->log_file);

	return n < 0 || (size_t)n >= size ? -1 : 0;
}

int log_settings_apply(const char *text)
{
	int level, format, used = 0;

	if (sscanf(text, "%d %d %n", &level, &format, &used) != 2 || used == 0 || level < LOG_LEVEL_DEBUG ||
	    level > LOG_LEVEL_ERROR || format < LOG_FORMAT_TEXT || format > LOG_FORMAT_JSON)
		return -1;
	return log_apply((log_level_t)level, (log_format_t)format, text + used);
}

int log_reopen(void)
{
	if (log_state.sink != SINK_FILE)
		return 0;
	return install_file(log_state.path);
}

void log_close(void)
{
	release_sink();
}

/* A message is cut at this length; its line fits whole even when every byte is escaped in JSON. */
#define LOG_MSG_MAX 2048
#define LOG_ROLE_MAX sizeof(log_state.role)
#define LOG_LINE_MAX (JSON_ESCAPE_SIZE(LOG_MSG_MAX) + JSON_ESCAPE_SIZE(LOG_ROLE_MAX) + 128)

static size_t format_json(char *line, size_t size, const char *stamp, log_level_t level, const char *msg)
{
	char role[JSON_ESCAPE_SIZE(LOG_ROLE_MAX)], text[JSON_ESCAPE_SIZE(LOG_MSG_MAX)];
	int n;

	/* Both fit by the sizes above; the fallbacks keep the line valid JSON all the same. */
	if (json_escape(log_state.role, role, sizeof(role)) < 0)
		snprintf(role, sizeof(role), "couponsd");
	if (json_escape(msg, text, sizeof(text)) < 0)
		snprintf(text, sizeof(text), "(unprintable message)");
	n = snprintf(line, size,
	             "{\"time\":\"%s\",\"level\":\"%s\",\"role\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}\n", stamp,
	             level_names[level], role, (int)getpid(), text);
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static size_t format_line(char *line, size_t size, log_level_t level, const char *msg)
{
	char stamp[32];
	size_t n;

	clock_format_iso(clock_real_ms(), stamp, sizeof(stamp));
	if (log_state.format == LOG_FORMAT_JSON)
		return format_json(line, size, stamp, level, msg);
	n = (size_t)snprintf(line, size, "%s %-5s %s[%d]: %s\n", stamp, level_names[level], log_state.role,
	                     (int)getpid(), msg);
	return n < size ? n : size - 1;
}

/* One event, one line: libpq and librdkafka messages may carry newlines (and a trailing one). */
static void flatten(char *msg)
{
	size_t n = strlen(msg);

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	for (char *p = msg; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
}

void log_msg(log_level_t level, const char *fmt, ...)
{
	static const int syslog_prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
	char msg[LOG_MSG_MAX], line[LOG_LINE_MAX];
	int saved_errno = errno;
	va_list ap;
	size_t n;

	if (level < log_state.level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	flatten(msg);
	if (log_state.sink == SINK_SYSLOG) {
		syslog(syslog_prio[level], "%s: %s", log_state.role, msg);
	} else {
		n = format_line(line, sizeof(line), level, msg);
		/* One write() per line keeps lines from different processes whole in an O_APPEND file. */
		if (write(log_state.fd, line, n) < 0) {
			/* Nowhere left to report a failing log sink. */
		}
	}
	errno = saved_errno;
}
