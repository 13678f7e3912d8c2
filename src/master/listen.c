/* SPDX-License-Identifier: BSD-2-Clause */
/* listen.c: the HTTP listen sockets, opened once by the master and inherited by HTTP workers. */
#include "master/listen.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Splits "host:port", "[v6]:port" or "*:port" into getaddrinfo() arguments. */
static int split_address(const char *addr, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon = strrchr(addr, ':');
	size_t hlen;

	if (colon == NULL)
		return -1;
	hlen = (size_t)(colon - addr);
	if (addr[0] == '[' && hlen >= 2 && addr[hlen - 1] == ']') {
		addr++;
		hlen -= 2;
	}
	if (hlen >= hsize || strlen(colon + 1) >= psize)
		return -1;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	snprintf(port, psize, "%s", colon + 1);
	if (strcmp(host, "*") == 0)
		host[0] = '\0';
	return 0;
}

static int bind_one(const struct addrinfo *ai, const char *addr)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);

	if (fd < 0) {
		log_error("listen %s: socket: %s", addr, strerror(errno));
		return -1;
	}
	/* SO_REUSEADDR lets a restarted daemon bind while old connections sit in TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
		log_error("listen %s: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int open_address(const char *addr)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int rc, fd;

	if (split_address(addr, host, sizeof(host), port, sizeof(port)) != 0) {
		log_error("listen %s: not a host:port address", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		log_error("listen %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = bind_one(res, addr);
	freeaddrinfo(res);
	return fd;
}

int listeners_open(const config_t *cfg, listeners_t *out)
{
	out->count = 0;
	for (int i = 0; i < cfg->http_listen_count; i++) {
		int fd = open_address(cfg->http_listen[i]);

		if (fd < 0) {
			listeners_close(out);
			return -1;
		}
		out->fds[out->count++] = fd;
		log_info("listening on %s", cfg->http_listen[i]);
	}
	return 0;
}

void listeners_close(listeners_t *l)
{
	for (int i = 0; i < l->count; i++)
		close(l->fds[i]);
	l->count = 0;
}
