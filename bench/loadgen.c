/* SPDX-License-Identifier: BSD-2-Clause */
/* loadgen.c: the benchmark's HTTP/1.1 load generator: keep-alive connections, latency histograms. */

/*
 * One thread, one libevent loop, raw non-blocking sockets (no evhttp client:
 * its per-request allocations would make the generator the bottleneck on a
 * 2-core machine). Every connection carries one request at a time (no
 * pipelining), like a browser or a mobile client would.
 *
 *   loadgen -p PORT -c CONNS (-n REQUESTS | -d SECONDS) [options]
 *
 *   -H HOST        server address (127.0.0.1)
 *   -p PORT        server port
 *   -c CONNS       keep-alive connections
 *   -n REQUESTS    send exactly this many requests (request k has index k = 0..N-1)
 *   -d SECONDS     or send for this long
 *   -m METHOD      GET or POST (POST)
 *   -u TEMPLATE    request target; {c} is replaced by the coupon of request k, {u} by its user id
 *                  (/api/coupons/{c}/issue?userId={u})
 *   -C LIST        coupon ids, comma separated; request k gets coupon LIST[k % count] (1)
 *   -U BASE        user id of request k is BASE + k (1): every request is a distinct user
 *   -r RATE        paced: request k is due at start + k / RATE seconds and its latency is measured
 *                  from that due time, not from when a connection got free to send it (so a server
 *                  that stalls is charged for the requests it delayed: no coordinated omission)
 *   -w SECONDS     warm-up: responses before this are left out of the summary (not of the timeline)
 *   -t FILE        timeline: one line every -I ms: t_ms responses status_2xx status_409 other p50_us p99_us
 *   -I MS          timeline interval (250)
 *   -i FILE        for every 202 with a requestId: "requestId k t_realtime_us latency_us"
 *   -D FILE        the summary's latency histogram: "latency_us count" per non-empty bucket
 *   -o SECONDS     a request unanswered this long is a timeout; its connection is replaced (10)
 *   -T SECONDS     hard limit on the whole run (600)
 *   -P             progress lines on stderr: "progress elapsed_ms planned_ms done planned rps p99_us 2xx"
 *   -h SECONDS     hold mode: open CONNS connections, send one request on each, and once all have
 *                  answered print "held N" on stderr and keep them open (idle) for SECONDS
 *
 * The summary is one JSON object on stdout.
 */
#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- latency histogram: exact below 1024 us, then 512 buckets per power of two (0.2% precision) ---- */

#define SUB 512
#define OCTAVES 28 /* up to 2^37 us: far beyond any run */
#define NBUCKETS (2 * SUB + OCTAVES * SUB)

typedef struct {
	uint64_t count[NBUCKETS];
	uint64_t total;
	uint64_t max;
	double sum;
} histogram_t;

static int bucket_of(uint64_t v)
{
	int e;

	if (v < 2 * SUB)
		return (int)v;
	e = 63 - __builtin_clzll(v) - 9; /* v >> e is in [512, 1023] */
	if (e > OCTAVES)
		return NBUCKETS - 1;
	return 2 * SUB + (e - 1) * SUB + (int)((v >> e) - SUB);
}

/* The middle of a bucket's range. */
static uint64_t bucket_value(int i)
{
	int e;
	uint64_t m;

	if (i < 2 * SUB)
		return (uint64_t)i;
	e = (i - 2 * SUB) / SUB + 1;
	m = (uint64_t)((i - 2 * SUB) % SUB + SUB);
	return (m << e) + ((uint64_t)1 << (e - 1));
}

static void hist_add(histogram_t *h, uint64_t v)
{
	h->count[bucket_of(v)]++;
	h->total++;
	h->sum += (double)v;
	if (v > h->max)
		h->max = v;
}

static uint64_t hist_quantile(const histogram_t *h, double q)
{
	uint64_t want, seen = 0;

	if (h->total == 0)
		return 0;
	want = (uint64_t)(q * (double)h->total + 0.999999);
	if (want == 0)
		want = 1;
	for (int i = 0; i < NBUCKETS; i++) {
		seen += h->count[i];
		if (seen >= want)
			return bucket_value(i) < h->max ? bucket_value(i) : h->max;
	}
	return h->max;
}

static void hist_reset(histogram_t *h)
{
	memset(h, 0, sizeof(*h));
}

/* ---- options and state ---- */

typedef struct {
	const char *host;
	int port;
	int conns;
	long long requests; /* 0: by duration */
	double duration;
	const char *method;
	const char *templ;
	long long coupons[256];
	int ncoupons;
	long long user_base;
	double rate;
	double warmup;
	const char *timeline_path;
	int interval_ms;
	const char *ids_path;
	const char *hist_path;
	double timeout;
	double hard_limit;
	int progress;
	double hold;
} options_t;

enum { C_CONNECTING, C_IDLE, C_PACED, C_SENDING, C_READING, C_HELD, C_CLOSED };

typedef struct conn {
	int fd;
	int state;
	struct event *io;
	struct event *timer; /* pacing, request timeout and reconnect delay */
	char req[512];
	size_t req_len, req_off;
	char *buf;
	size_t len, cap;
	uint64_t t_due; /* monotonic us the latency is measured from */
	long long k;
	int answered_once; /* hold mode */
} conn_t;

typedef struct {
	char id[37];
	long long k;
	int64_t t_real_us;
	uint64_t latency_us;
} accepted_t;

static options_t opt;
static struct event_base *base;
static struct sockaddr_in addr;
static conn_t *conns;
static uint64_t t0;         /* monotonic us at start */
static uint64_t t_deadline; /* stop sending at (duration mode), 0: none */
static long long next_k;
static long long sent, done_total, errors, timeouts, reconnects, in_flight;
static long long status_count[600];
static long long window_done, window_status[600];
static uint64_t t_window_start, t_last_done;
static histogram_t hist;  /* the summary: after the warm-up */
static histogram_t ihist; /* the current timeline interval */
static long long idone, i2xx, i409, iother;
static long long total_2xx; /* since the start, warm-up included: the progress line's last field */
static FILE *timeline;
static accepted_t *accepted;
static long long naccepted, accepted_cap;
static int stopping;
static long long held, held_closed;
static int hold_reported;
static struct event *tick_ev, *sig_ev;
static int connecting_now, paced_now;
static int exit_code;

#define MAX_CONNECTING 256

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: loadgen -p PORT -c CONNS (-n REQUESTS | -d SECONDS | -h HOLD_SECONDS) [-H HOST] "
	        "[-m METHOD] [-u TEMPLATE] [-C COUPONS] [-U USER_BASE] [-r RATE] [-w WARMUP] "
	        "[-t TIMELINE] [-I MS] [-i IDS] [-D HISTOGRAM] [-o TIMEOUT] [-T LIMIT] [-P]\n");
	exit(2);
}

static void conn_start(conn_t *c);
static void conn_next(conn_t *c);
static void on_io(evutil_socket_t fd, short what, void *arg);

static int all_sent(void)
{
	if (stopping)
		return 1;
	if (opt.hold > 0)
		return 0;
	if (opt.requests > 0)
		return next_k >= opt.requests;
	return now_us() >= t_deadline;
}

static void maybe_finish(void)
{
	if (opt.hold > 0)
		return;
	if (in_flight == 0 && paced_now == 0 && all_sent())
		event_base_loopexit(base, NULL);
}

static void add_timer(conn_t *c, uint64_t us)
{
	struct timeval tv = {(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};

	evtimer_add(c->timer, &tv);
}

/* Builds request k into c->req. */
static void build_request(conn_t *c, long long k)
{
	char target[384], *o = target, *end = target + sizeof(target) - 1;
	long long coupon = opt.coupons[k % opt.ncoupons], user = opt.user_base + k;
	int n;

	for (const char *p = opt.templ; *p != '\0' && o < end; p++) {
		if (p[0] == '{' && (p[1] == 'c' || p[1] == 'u') && p[2] == '}') {
			o += snprintf(o, (size_t)(end - o), "%lld", p[1] == 'c' ? coupon : user);
			if (o > end)
				o = end;
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	n = snprintf(c->req, sizeof(c->req), "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", opt.method, target,
	             opt.host, opt.port, strcmp(opt.method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
	c->req_len = n > 0 && (size_t)n < sizeof(c->req) ? (size_t)n : 0;
	c->req_off = 0;
}

static void conn_close(conn_t *c)
{
	if (c->io != NULL) {
		event_free(c->io);
		c->io = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->state == C_CONNECTING)
		connecting_now--;
	c->state = C_CLOSED;
	c->len = 0;
}

/* The request in flight on c (if any) failed; the connection is replaced after a short pause. */
static void conn_fail(conn_t *c, int timed_out)
{
	int had_request = c->state == C_SENDING || c->state == C_READING;

	if (had_request) {
		in_flight--;
		if (timed_out)
			timeouts++;
		else
			errors++;
	} else if (c->state == C_PACED) {
		paced_now--; /* the server closed an idle connection: that request is lost */
		errors++;
	} else if (c->state == C_CONNECTING || c->state == C_HELD) {
		if (c->state == C_HELD)
			held_closed++;
		else
			errors++;
	}
	conn_close(c);
	evtimer_del(c->timer);
	reconnects++;
	if (!all_sent() && opt.hold == 0)
		add_timer(c, 10000); /* 10 ms: a server that refuses is not hammered in a busy loop */
	maybe_finish();
}

static void send_now(conn_t *c)
{
	ssize_t w;

	c->state = C_SENDING;
	while (c->req_off < c->req_len) {
		w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
		if (w > 0) {
			c->req_off += (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_del(c->io);
			event_assign(c->io, base, c->fd, EV_READ | EV_WRITE | EV_PERSIST, on_io, c);
			event_add(c->io, NULL);
			return;
		}
		conn_fail(c, 0);
		return;
	}
	c->state = C_READING;
	if (opt.timeout > 0)
		add_timer(c, (uint64_t)(opt.timeout * 1e6));
}

/* Takes the next request for an idle connection: now, later (paced), or none (the run is over). */
static void conn_next(conn_t *c)
{
	long long k;
	uint64_t now, due;

	c->state = C_IDLE;
	if (all_sent()) {
		maybe_finish();
		return;
	}
	k = next_k;
	now = now_us();
	due = opt.rate > 0 ? t0 + (uint64_t)((double)k * 1e6 / opt.rate) : now;
	if (opt.rate > 0 && t_deadline > 0 && due >= t_deadline) {
		stopping = 1; /* the schedule ends at the deadline */
		maybe_finish();
		return;
	}
	next_k++;
	sent++;
	in_flight++;
	c->k = k;
	c->t_due = due;
	build_request(c, k);
	if (due > now + 50) {
		c->state = C_PACED;
		in_flight--; /* not in flight until it is written */
		paced_now++;
		add_timer(c, due - now);
		return;
	}
	if (opt.rate <= 0)
		c->t_due = now;
	send_now(c);
}

static void record(conn_t *c, int status, const char *body, size_t body_len)
{
	uint64_t now = now_us(), lat = now > c->t_due ? now - c->t_due : 0;

	done_total++;
	idone++;
	if (status >= 100 && status < 600)
		status_count[status]++;
	if (status >= 200 && status < 300) {
		i2xx++;
		total_2xx++;
	} else if (status == 409) {
		i409++;
	} else {
		iother++;
	}
	hist_add(&ihist, lat);
	if (now >= t_window_start) {
		hist_add(&hist, lat);
		window_done++;
		if (status >= 100 && status < 600)
			window_status[status]++;
		t_last_done = now;
	}
	if (opt.ids_path != NULL && status == 202) {
		const char *p = memmem(body, body_len, "\"requestId\":\"", 13);

		if (p != NULL && (size_t)(p + 13 + 36 - body) <= body_len) {
			if (naccepted == accepted_cap) {
				accepted_cap = accepted_cap ? accepted_cap * 2 : 65536;
				accepted = realloc(accepted, (size_t)accepted_cap * sizeof(*accepted));
				if (accepted == NULL)
					die("realloc");
			}
			memcpy(accepted[naccepted].id, p + 13, 36);
			accepted[naccepted].id[36] = '\0';
			accepted[naccepted].k = c->k;
			accepted[naccepted].t_real_us = real_us();
			accepted[naccepted].latency_us = lat;
			naccepted++;
		}
	}
}

/* Parses one complete response at the start of c->buf; returns its length, 0 if incomplete, -1 if bad. */
static long parse_response(conn_t *c, int *status, int *close_after, const char **body, size_t *body_len)
{
	char *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	size_t head, clen = 0;
	int have_clen = 0;

	if (hdr_end == NULL)
		return c->len > 65536 ? -1 : 0;
	head = (size_t)(hdr_end - c->buf) + 4;
	if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0)
		return -1;
	*status = atoi(c->buf + 9);
	*close_after = c->buf[7] == '0';
	for (char *line = memchr(c->buf, '\n', head); line != NULL && line < hdr_end;
	     line = memchr(line + 1, '\n', (size_t)(hdr_end - line))) {
		char *l = line + 1;

		if (strncasecmp(l, "content-length:", 15) == 0) {
			clen = strtoul(l + 15, NULL, 10);
			have_clen = 1;
		} else if (strncasecmp(l, "connection:", 11) == 0) {
			char *v = l + 11;

			while (*v == ' ')
				v++;
			*close_after = strncasecmp(v, "close", 5) == 0;
		} else if (strncasecmp(l, "transfer-encoding:", 18) == 0) {
			return -1; /* not spoken here: every answer under test has a Content-Length */
		}
	}
	if (!have_clen)
		return -1;
	if (c->len < head + clen)
		return 0;
	*body = c->buf + head;
	*body_len = clen;
	return (long)(head + clen);
}

static void on_readable(conn_t *c)
{
	for (;;) {
		ssize_t r;

		if (c->cap - c->len < 1024) {
			c->cap *= 2;
			if ((c->buf = realloc(c->buf, c->cap)) == NULL)
				die("realloc");
		}
		r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (r > 0) {
			c->len += (size_t)r;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_fail(c, 0); /* EOF or error */
		return;
	}
	if (c->state == C_HELD) {
		c->len = 0; /* nothing is expected; ignore it */
		return;
	}
	if (c->state != C_READING) {
		if (c->len > 0) {
			c->len = 0;
			conn_fail(c, 0);
		}
		return;
	}
	for (;;) {
		int status = 0, close_after = 0;
		const char *body = NULL;
		size_t body_len = 0;
		long used = parse_response(c, &status, &close_after, &body, &body_len);

		if (used == 0)
			return;
		if (used < 0) {
			conn_fail(c, 0);
			return;
		}
		evtimer_del(c->timer);
		in_flight--;
		record(c, status, body, body_len);
		memmove(c->buf, c->buf + used, c->len - (size_t)used);
		c->len -= (size_t)used;
		if (opt.hold > 0) {
			c->state = C_HELD;
			if (!c->answered_once) {
				c->answered_once = 1;
				held++;
			}
			return;
		}
		if (close_after) {
			conn_close(c);
			reconnects++;
			conn_start(c);
			return;
		}
		conn_next(c);
		if (c->state != C_READING)
			return;
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;

	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			conn_fail(c, 0);
			return;
		}
		connecting_now--;
		event_del(c->io);
		event_assign(c->io, base, c->fd, EV_READ | EV_PERSIST, on_io, c);
		event_add(c->io, NULL);
		if (opt.hold > 0) {
			build_request(c, next_k++);
			sent++;
			in_flight++;
			c->t_due = now_us();
			send_now(c);
		} else {
			conn_next(c);
		}
		return;
	}
	if ((what & EV_WRITE) && c->state == C_SENDING) {
		event_del(c->io);
		event_assign(c->io, base, c->fd, EV_READ | EV_PERSIST, on_io, c);
		event_add(c->io, NULL);
		send_now(c);
		if (c->state == C_CLOSED)
			return;
	}
	if (what & EV_READ)
		on_readable(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;

	switch (c->state) {
	case C_PACED:
		paced_now--;
		in_flight++;
		send_now(c);
		break;
	case C_SENDING:
	case C_READING:
		conn_fail(c, 1);
		break;
	case C_CLOSED:
		conn_start(c);
		break;
	default:
		break;
	}
}

static void conn_start(conn_t *c)
{
	int one = 1;

	if (opt.hold == 0 && all_sent()) {
		c->state = C_CLOSED;
		maybe_finish();
		return;
	}
	if (connecting_now >= MAX_CONNECTING) {
		c->state = C_CLOSED;
		add_timer(c, 1000); /* a burst of 10,000 connects would overflow the listen backlog */
		return;
	}
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = C_CONNECTING;
	connecting_now++;
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno != EINPROGRESS) {
		conn_fail(c, 0);
		return;
	}
	c->io = event_new(base, c->fd, EV_WRITE, on_io, c);
	if (c->io == NULL)
		die("event_new");
	event_add(c->io, NULL);
}

static void print_progress(uint64_t now)
{
	double elapsed = (double)(now - t0) / 1000.0, planned;
	double rps = opt.interval_ms > 0 ? (double)idone * 1000.0 / opt.interval_ms : 0;

	planned = opt.hold > 0 ? 0 : opt.duration > 0 ? opt.duration * 1000.0 : 0;
	fprintf(stderr, "progress %.0f %.0f %lld %lld %.0f %" PRIu64 " %lld\n", elapsed, planned, done_total,
	        opt.hold > 0 ? (long long)opt.conns : opt.requests, rps, hist_quantile(&ihist, 0.99),
	        total_2xx);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_us();

	if (timeline != NULL)
		fprintf(timeline, "%.3f %lld %lld %lld %lld %" PRIu64 " %" PRIu64 "\n",
		        (double)(now - t0) / 1e6, idone, i2xx, i409, iother, hist_quantile(&ihist, 0.5),
		        hist_quantile(&ihist, 0.99));
	if (opt.progress)
		print_progress(now);
	idone = i2xx = i409 = iother = 0;
	hist_reset(&ihist);
	if (opt.hold > 0 && !hold_reported && held + held_closed + errors >= opt.conns) {
		struct timeval tv = {(time_t)opt.hold, (suseconds_t)((opt.hold - (long)opt.hold) * 1e6)};

		hold_reported = 1;
		fprintf(stderr, "held %lld\n", held);
		fflush(stderr);
		event_base_loopexit(base, &tv);
	}
	if (done_total == 0 && errors > 0 && now - t0 >= (uint64_t)(opt.timeout * 1e6)) {
		fprintf(stderr,
		        "loadgen: no answer from %s:%d within %.0f s (%lld connection errors); giving up\n",
		        opt.host, opt.port, opt.timeout, errors);
		exit_code = 1;
		event_base_loopexit(base, NULL);
	}
	if (now - t0 >= (uint64_t)(opt.hard_limit * 1e6)) {
		fprintf(stderr, "loadgen: hard time limit reached; stopping\n");
		event_base_loopexit(base, NULL);
	}
	/* Paced runs can end with every connection idle: the schedule passed the deadline. */
	if (opt.hold == 0 && all_sent())
		maybe_finish();
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	stopping = 1;
	event_base_loopexit(base, NULL);
}

static void parse_coupons(const char *s)
{
	opt.ncoupons = 0;
	for (const char *p = s; *p != '\0' && opt.ncoupons < 256;) {
		char *end;
		long long v = strtoll(p, &end, 10);

		if (end == p)
			usage();
		opt.coupons[opt.ncoupons++] = v;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != '\0')
			usage();
	}
	if (opt.ncoupons == 0)
		usage();
}

static void parse_args(int argc, char **argv)
{
	int ch;

	opt.host = "127.0.0.1";
	opt.method = "POST";
	opt.templ = "/api/coupons/{c}/issue?userId={u}";
	opt.coupons[0] = 1;
	opt.ncoupons = 1;
	opt.user_base = 1;
	opt.interval_ms = 250;
	opt.timeout = 10;
	opt.hard_limit = 600;
	while ((ch = getopt(argc, argv, "H:p:c:n:d:m:u:C:U:r:w:t:I:i:D:o:T:Ph:")) != -1) {
		switch (ch) {
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'c':
			opt.conns = atoi(optarg);
			break;
		case 'n':
			opt.requests = atoll(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'm':
			opt.method = optarg;
			break;
		case 'u':
			opt.templ = optarg;
			break;
		case 'C':
			parse_coupons(optarg);
			break;
		case 'U':
			opt.user_base = atoll(optarg);
			break;
		case 'r':
			opt.rate = atof(optarg);
			break;
		case 'w':
			opt.warmup = atof(optarg);
			break;
		case 't':
			opt.timeline_path = optarg;
			break;
		case 'I':
			opt.interval_ms = atoi(optarg);
			break;
		case 'i':
			opt.ids_path = optarg;
			break;
		case 'D':
			opt.hist_path = optarg;
			break;
		case 'o':
			opt.timeout = atof(optarg);
			break;
		case 'T':
			opt.hard_limit = atof(optarg);
			break;
		case 'P':
			opt.progress = 1;
			break;
		case 'h':
			opt.hold = atof(optarg);
			break;
		default:
			usage();
		}
	}
	if (opt.port <= 0 || opt.conns <= 0 || opt.interval_ms <= 0 ||
	    (opt.hold <= 0 && opt.requests <= 0 && opt.duration <= 0))
		usage();
	if (opt.hold > 0)
		opt.method = "GET";
}

static void print_summary(void)
{
	uint64_t end = t_last_done > t_window_start ? t_last_done : t_window_start;
	double secs = (double)(end - t_window_start) / 1e6;
	int first = 1;

	printf(
	    "{\"connections\":%d,\"requests_planned\":%lld,\"duration_planned_s\":%.3f,\"rate_planned\":%.1f,"
	    "\"warmup_s\":%.3f,\"sent\":%lld,\"completed\":%lld,\"errors\":%lld,\"timeouts\":%lld,"
	    "\"reconnects\":%lld,\"measured\":%lld,\"measured_s\":%.6f,\"rps\":%.1f,\"status\":{",
	    opt.conns, opt.requests, opt.duration, opt.rate, opt.warmup, sent, done_total, errors, timeouts,
	    reconnects, window_done, secs, secs > 0 ? (double)window_done / secs : 0.0);
	for (int s = 100; s < 600; s++) {
		if (window_status[s] == 0)
			continue;
		printf("%s\"%d\":%lld", first ? "" : ",", s, window_status[s]);
		first = 0;
	}
	printf("},\"status_all\":{");
	first = 1;
	for (int s = 100; s < 600; s++) {
		if (status_count[s] == 0)
			continue;
		printf("%s\"%d\":%lld", first ? "" : ",", s, status_count[s]);
		first = 0;
	}
	printf("},\"latency_us\":{\"mean\":%.1f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
	       ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "}",
	       hist.total ? hist.sum / (double)hist.total : 0.0, hist_quantile(&hist, 0.5),
	       hist_quantile(&hist, 0.9), hist_quantile(&hist, 0.99), hist_quantile(&hist, 0.999), hist.max);
	if (opt.hold > 0)
		printf(",\"held\":%lld,\"held_closed\":%lld", held, held_closed);
	printf(",\"accepted_ids\":%lld}\n", naccepted);
}

static void write_histogram(void)
{
	FILE *f = fopen(opt.hist_path, "w");

	if (f == NULL)
		die(opt.hist_path);
	for (int i = 0; i < NBUCKETS; i++) {
		if (hist.count[i] > 0)
			fprintf(f, "%" PRIu64 " %" PRIu64 "\n", bucket_value(i), hist.count[i]);
	}
	if (fclose(f) != 0)
		die(opt.hist_path);
}

static void write_ids(void)
{
	FILE *f = fopen(opt.ids_path, "w");

	if (f == NULL)
		die(opt.ids_path);
	for (long long i = 0; i < naccepted; i++)
		fprintf(f, "%s %lld %" PRId64 " %" PRIu64 "\n", accepted[i].id, accepted[i].k,
		        accepted[i].t_real_us, accepted[i].latency_us);
	if (fclose(f) != 0)
		die(opt.ids_path);
}

int main(int argc, char **argv)
{
	struct timeval tick = {0, 0};

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
		fprintf(stderr, "loadgen: %s: not an IPv4 address\n", opt.host);
		return 2;
	}
	if (opt.timeline_path != NULL && (timeline = fopen(opt.timeline_path, "w")) == NULL)
		die(opt.timeline_path);
	base = event_base_new();
	conns = calloc((size_t)opt.conns, sizeof(*conns));
	if (base == NULL || conns == NULL)
		die("init");
	t0 = now_us();
	t_window_start = t0 + (uint64_t)(opt.warmup * 1e6);
	t_deadline = opt.duration > 0 ? t0 + (uint64_t)(opt.duration * 1e6) : 0;
	if (opt.requests > 0 && opt.duration <= 0)
		t_deadline = 0;
	tick.tv_sec = opt.interval_ms / 1000;
	tick.tv_usec = (opt.interval_ms % 1000) * 1000;
	tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	sig_ev = evsignal_new(base, SIGTERM, on_signal, NULL);
	if (tick_ev == NULL || sig_ev == NULL)
		die("event_new");
	event_add(tick_ev, &tick);
	event_add(sig_ev, NULL);
	for (int i = 0; i < opt.conns; i++) {
		conn_t *c = &conns[i];

		c->fd = -1;
		c->cap = opt.hold > 0 ? 1024 : 4096;
		c->buf = malloc(c->cap);
		c->timer = evtimer_new(base, on_timer, c);
		if (c->buf == NULL || c->timer == NULL)
			die("alloc");
		conn_start(c);
	}
	event_base_dispatch(base);
	if (timeline != NULL)
		fclose(timeline);
	if (opt.ids_path != NULL)
		write_ids();
	if (opt.hist_path != NULL)
		write_histogram();
	print_summary();
	for (int i = 0; i < opt.conns; i++) {
		conn_close(&conns[i]);
		event_free(conns[i].timer);
		free(conns[i].buf);
	}
	free(conns);
	free(accepted);
	event_free(tick_ev);
	event_free(sig_ev);
	event_base_free(base);
	return exit_code;
}
