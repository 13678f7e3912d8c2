/* SPDX-License-Identifier: BSD-2-Clause */
/* channel.c: the master's socketpair to each child, carrying small typed messages. */
#include "core/channel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int channel_open(int fds[2])
{
	/* SEQPACKET keeps message boundaries and still reports EOF when the peer dies. */
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

int channel_send(int fd, channel_type_t type, const char *data)
{
	channel_msg_t msg;
	size_t len = data != NULL ? strlen(data) : 0;
	ssize_t n;

	if (len >= CHANNEL_DATA_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&msg, 0, sizeof(msg));
	msg.type = (uint32_t)type;
	msg.len = (uint32_t)len;
	if (len > 0)
		memcpy(msg.data, data, len);
	do
		n = send(fd, &msg, offsetof(channel_msg_t, data) + len + 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : 0;
}

int channel_recv(int fd, channel_msg_t *msg)
{
	ssize_t n;

	do
		n = recv(fd, msg, sizeof(*msg), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0)
		return 0;
	if ((size_t)n < offsetof(channel_msg_t, data) || msg->len >= CHANNEL_DATA_MAX) {
		errno = EPROTO;
		return -1;
	}
	msg->data[msg->len] = '\0';
	return 1;
}
