/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_queue.c: a librdkafka queue served from a libevent loop, so no process ever blocks on Kafka. */
#include "core/kafka_queue.h"

#include "core/clock.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kafka_queue {
	rd_kafka_queue_t *queue;
	int wake[2]; /* librdkafka writes [1]; the loop reads [0] */
	struct event *wake_ev;
	struct event *safety_ev;
	kafka_queue_fn serve;
	void *arg;
};

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	kafka_queue_t *kq = arg;
	char buf[256];

	/* A short read emptied the pipe: reading on to EAGAIN would cost a syscall per wake-up. */
	while (read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
		;
	kq->serve(kq->arg);
}

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
	kafka_queue_t *kq = arg;

	kq->serve(kq->arg);
}

static int start(kafka_queue_t *kq, struct event_base *base, int64_t safety_ms)
{
	struct timeval tv = clock_timeval(safety_ms);

	if (pipe2(kq->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		log_error("pipe: %s", strerror(errno));
		kq->wake[0] = kq->wake[1] = -1;
		return -1;
	}
	rd_kafka_queue_io_event_enable(kq->queue, kq->wake[1], "1", 1);
	kq->wake_ev = event_new(base, kq->wake[0], EV_READ | EV_PERSIST, on_wake, kq);
	if (kq->wake_ev == NULL || event_add(kq->wake_ev, NULL) != 0)
		return -1;
	if (safety_ms <= 0)
		return 0;
	kq->safety_ev = event_new(base, -1, EV_PERSIST, on_safety, kq);
	return kq->safety_ev == NULL || event_add(kq->safety_ev, &tv) != 0 ? -1 : 0;
}

kafka_queue_t *kafka_queue_watch(struct event_base *base, rd_kafka_queue_t *queue, int64_t safety_ms,
                                 kafka_queue_fn serve, void *arg)
{
	kafka_queue_t *kq;

	if (queue == NULL) {
		log_error("no kafka queue to watch");
		return NULL;
	}
	if ((kq = calloc(1, sizeof(*kq))) == NULL) {
		log_error("out of memory");
		rd_kafka_queue_destroy(queue);
		return NULL;
	}
	kq->queue = queue;
	kq->wake[0] = kq->wake[1] = -1;
	kq->serve = serve;
	kq->arg = arg;
	if (start(kq, base, safety_ms) != 0) {
		log_error("cannot watch a kafka queue from the event loop");
		kafka_queue_free(kq);
		return NULL;
	}
	return kq;
}

void kafka_queue_free(kafka_queue_t *kq)
{
	if (kq == NULL)
		return;
	if (kq->wake_ev != NULL)
		event_free(kq->wake_ev);
	if (kq->safety_ev != NULL)
		event_free(kq->safety_ev);
	/* Before the pipe closes: librdkafka's threads must not write to a descriptor number reused since. */
	rd_kafka_queue_io_event_enable(kq->queue, -1, NULL, 0);
	rd_kafka_queue_destroy(kq->queue);
	for (int i = 0; i < 2; i++) {
		if (kq->wake[i] >= 0)
			close(kq->wake[i]);
	}
	free(kq);
}
