/* SPDX-License-Identifier: BSD-2-Clause */
/* ceiling.c: the benchmark's ceiling: a bare pre-fork evhttp server that answers couponsd's 202. */

/*
 *   ceiling -p PORT [-l ADDRESS] [-w WORKERS]
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
 * Workers die with the master (PR_SET_PDEATHSIG); SIGTERM or SIGINT to the
 * master stops everything.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

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
#include <unistd.h>

#define MAX_WORKERS 64

static void usage(void)
{
	fprintf(stderr, "usage: ceiling -p PORT [-l ADDRESS] [-w WORKERS]\n");
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

static void on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char id[37], url[64], body[256];
	uint8_t b[16];
	int n;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		evhttp_send_error(req, 500, "no randomness");
		return;
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
	         b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	snprintf(url, sizeof(url), "/api/requests/%s", id);
	n = snprintf(body, sizeof(body),
	             "{\"requestId\":\"%s\",\"status\":\"PENDING\",\"couponId\":%lld,\"userId\":%lld,"
	             "\"statusUrl\":\"%s\"}",
	             id, number_after(evhttp_uri_get_path(uri), "/api/coupons/"),
	             number_after(evhttp_uri_get_query(uri), "userId="), url);
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

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *address = "127.0.0.1";
	int port = 0, workers = 2, ch, fd;
	pid_t pids[MAX_WORKERS];
	struct sigaction sa;

	while ((ch = getopt(argc, argv, "p:l:w:")) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'l':
			address = optarg;
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
			_exit(worker_main(fd));
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
