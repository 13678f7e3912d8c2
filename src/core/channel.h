/* SPDX-License-Identifier: BSD-2-Clause */
/* channel.h: the master's socketpair to each child, carrying small typed messages. */
#ifndef COUPONSD_CHANNEL_H
#define COUPONSD_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#define CHANNEL_DATA_MAX 1024

typedef enum {
	CHANNEL_READY =
	    1, /* child -> master: serving; data may carry a payload (embedded Kafka: bootstrap list) */
	CHANNEL_STOP,   /* master -> child: finish in-flight work and exit 0 */
	CHANNEL_REOPEN, /* master -> child: reopen the log file */
	CHANNEL_LOG,    /* master -> child: new log settings (see log_settings_encode) */
	/*
	 * Test builds only (COUPONSD_FAULTS): master -> embedded kafka carries the
	 * arguments of a `kafka ...` control command (e.g. "broker-down 2"); the
	 * child answers with the same type, "ok" or "error: ...", in order.
	 */
	CHANNEL_KAFKA_FAULT,
	/*
	 * master -> http worker: the daemon stops after daemon.stop_drain; keep
	 * serving, but /readyz says 503 and every answer closes its connection,
	 * so that load balancers and keep-alive clients move away first.
	 */
	CHANNEL_STOPPING,
} channel_type_t;

typedef struct {
	uint32_t type;
	uint32_t len;
	char data[CHANNEL_DATA_MAX];
} channel_msg_t;

/* A SOCK_SEQPACKET pair: fds[0] for the master, fds[1] for the child. Both close-on-exec. */
int channel_open(int fds[2]);
int channel_send(int fd, channel_type_t type, const char *data);

/* Returns 1 with a message, 0 on EOF (the peer is gone), -1 on error; EAGAIN gives -1 with errno set. */
int channel_recv(int fd, channel_msg_t *msg);

#endif
