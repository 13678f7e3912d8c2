/* SPDX-License-Identifier: BSD-2-Clause */
/* ceiling.c: the benchmark's ceiling: a bare pre-fork evhttp server that answers couponsd's 202. */

/*
 *   ceiling -p PORT [-l ADDRESS] [-w WORKERS] [-r]
 *
 * The master opens the listen socket as couponsd's does (SO_REUSEADDR,
 * backlog 4096, non-blocking) and forks WORKERS processes that share it,
 * each with its own libevent loop and evhttp, configured as couponsd's HTTP
 * worker configures its own (timeouts, body and header limits, every method
 * to the callback). Every request gets what couponsd's accept path answers:
 * 202, Content-Type: application/json; charset=utf-8, a Location header and
 * {"requestId":"<uuid>","status":"PENDING","couponId":C,"userId":U,
 * "statusUrl":"/api/requests/<uuid>"} with a random version-4 UUID from
 * getrandom(), the coupon id from the path and the user id from the query.
 * Nothing else: no Redis, no Kafka, no JSON library. It is what evhttp
 * alone can do on this machine with this build, the number couponsd's HTTP
 * figures are divided by.
 *
 * -r answers the same 202 without evhttp: libevent events on the raw
 * sockets, couponsd's own reader of request framing (src/http/http_framing.c)
 * on each connection's bytes, the whole answer formatted into one buffer and
 * written with one write(). It is the floor of an HTTP front that allocates
 * nothing per request (docs/performance.md, round 2h), for a client that sends
 * one request at a time (bench/loadgen); a pipelined one is answered once per
 * read, and a connection whose answer does not fit the socket is closed.
 *
 * Workers die with the master (PR_SET_PDEATHSIG); SIGTERM or SIGINT to the
 * master stops everything.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "http/http_framing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64

static void usage(void)
{
	fprintf(stderr, "usage: ceiling -p PORT [-l ADDRESS] [-w WORKERS] [-r]\n");
	exit(2);
}

static int open_listener(const char *address, int port)
{
	struct sockaddr_in sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (fd < 0 || inet_pton(AF_INET, address, &sa.sin_addr) != 1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
		fprintf(stderr, "ceiling: listen on %s:%d: %s\n", address, port, strerror(errno));
		exit(1);
	}
	return fd;
}

static long long number_after(const char *s, const char *prefix)
{
	const char *p = s != NULL ? strstr(s, prefix) : NULL;

	return p != NULL ? strtoll(p + strlen(prefix), NULL, 10) : 0;
}

/* The 202's Location (url) and body for a new random version-4 UUID; the body's length, or -1. */
static int accepted_body(long long coupon, long long user, char url[64], char body[256])
{
	char id[37];
	uint8_t b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
	         b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	snprintf(url, 64, "/api/requests/%s", id);
	return snprintf(body, 256,
	                "{\"requestId\":\"%s\",\"status\":\"PENDING\",\"couponId\":%lld,\"userId\":%lld,"
	                "\"statusUrl\":\"%s\"}",
	                id, coupon, user, url);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char url[64], body[256];
	int n = accepted_body(number_after(evhttp_uri_get_path(uri), "/api/coupons/"),
	                      number_after(evhttp_uri_get_query(uri), "userId="), url, body);

	if (n < 0) {
		evhttp_send_error(req, 500, "no randomness");
		return;
	}
	evhttp_add_header(h, "Location", url);
	evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
	evbuffer_add(out, body, (size_t)n);
	evhttp_send_reply(req, 202, "Accepted", NULL);
}

static int worker_main(int listen_fd)
{
	struct event_base *base = event_base_new();
	struct evhttp *http = base != NULL ? evhttp_new(base) : NULL;
	struct timeval tv = {5, 0}; /* couponsd's http.read_timeout default */

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (http == NULL)
		return 1;
	evhttp_set_timeout_tv(http, &tv);
	evhttp_set_max_body_size(http, 4096 + 65536); /* http.max_body + couponsd's slack */
	evhttp_set_max_headers_size(http, 65536);
	evhttp_set_allowed_methods(http, 0xffff);
	evhttp_set_gencb(http, on_request, NULL);
	if (evhttp_accept_socket_with_handle(http, listen_fd) == NULL)
		return 1;
	event_base_dispatch(base);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}

/* ---- -r: no evhttp ---- */

typedef struct {
	int fd;
	struct event *ev;
	http_framing_t framing;
	size_t len;
	char buf[8192];
} raw_conn_t;

static void raw_close(raw_conn_t *c)
{
	event_free(c->ev);
	close(c->fd);
	free(c);
}

/* The numbers after "/api/coupons/" in the request target and after "userId=" in the head. */
static void raw_ids(const char *head, size_t len, long long *coupon, long long *user)
{
	const char *target = memchr(head, ' ', len), *q;

	*coupon = *user = 0;
	if (target == NULL)
		return;
	target++;
	if ((size_t)(target - head) + 13 <= len && memcmp(target, "/api/coupons/", 13) == 0)
		*coupon = strtoll(target + 13, NULL, 10);
	if ((q = memmem(target, len - (size_t)(target - head), "userId=", 7)) != NULL)
		*user = strtoll(q + 7, NULL, 10);
}

/* evhttp's 202 with couponsd's headers, formatted at once and written with one call; 0, or -1. */
static int raw_answer(raw_conn_t *c)
{
	char url[64], body[256], date[64], out[1024];
	long long coupon, user;
	time_t now = time(NULL);
	struct tm tm;
	int n, m;

	raw_ids(c->buf, c->len, &coupon, &user);
	if ((n = accepted_body(coupon, user, url, body)) < 0 || gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		return -1;
	m = snprintf(out, sizeof(out),
	             "HTTP/1.1 202 Accepted\r\nLocation: %s\r\nContent-Type: application/json; charset=utf-8\r\n"
	             "Date: %s\r\nContent-Length: %d\r\n\r\n%s",
	             url, date, n, body);
	return m > 0 && (size_t)m < sizeof(out) && write(c->fd, out, (size_t)m) == m ? 0 : -1;
}

static void on_raw_read(evutil_socket_t fd, short what, void *arg)
{
	raw_conn_t *c = arg;
	ssize_t r = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		raw_close(c);
		return;
	}
	http_framing_feed(&c->framing, (const unsigned char *)c->buf + c->len, (size_t)r);
	c->len += (size_t)r;
	if (c->framing.error != NULL || (http_framing_pending(&c->framing) > 0 && c->len == sizeof(c->buf))) {
		raw_close(c);
		return;
	}
	if (http_framing_pending(&c->framing) > 0)
		return; /* the request goes on in the next read */
	if (raw_answer(c) != 0) {
		raw_close(c);
		return;
	}
	c->len = 0;
}

static void on_raw_accept(evutil_socket_t listen_fd, short what, void *arg)
{
	struct event_base *base = arg;
	int fd;

	while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		raw_conn_t *c = calloc(1, sizeof(*c));

		if (c == NULL || (c->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_raw_read, c)) == NULL ||
		    event_add(c->ev, NULL) != 0) {
			if (c != NULL && c->ev != NULL)
				event_free(c->ev);
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		http_framing_init(&c->framing, 65536);
	}
}

static int raw_worker_main(int listen_fd)
{
	struct event_base *base = event_base_new();
	struct event *ev = base != NULL ? event_new(base, listen_fd, EV_READ | EV_PERSIST, on_raw_accept, base) : NULL;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1 || ev == NULL || event_add(ev, NULL) != 0)
		return 1;
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	event_base_dispatch(base);
	event_free(ev);
	event_base_free(base);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *address = "127.0.0.1";
	int port = 0, workers = 2, raw = 0, ch, fd;
	pid_t pids[MAX_WORKERS];
	struct sigaction sa;

	while ((ch = getopt(argc, argv, "p:l:w:r")) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'l':
			address = optarg;
			break;
		case 'r':
			raw = 1;
			break;
		case 'w':
			workers = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || workers < 1 || workers > MAX_WORKERS)
		usage();
	signal(SIGPIPE, SIG_IGN);
	fd = open_listener(address, port);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (int i = 0; i < workers; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(raw ? raw_worker_main(fd) : worker_main(fd));
		if (pids[i] < 0) {
			fprintf(stderr, "ceiling: fork: %s\n", strerror(errno));
			workers = i;
			stop = 1;
			break;
		}
	}
	fprintf(stderr, "ceiling: %d workers on %s:%d\n", workers, address, port);
	while (!stop) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);

		if (pid > 0) {
			fprintf(stderr, "ceiling: worker %d exited\n", (int)pid);
			break;
		}
		if (pid < 0 && errno != EINTR)
			break;
	}
	for (int i = 0; i < workers; i++)
		kill(pids[i], SIGTERM);
	while (waitpid(-1, NULL, 0) > 0)
		;
	return 0;
}
