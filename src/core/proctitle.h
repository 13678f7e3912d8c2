/* SPDX-License-Identifier: BSD-2-Clause */
/* proctitle.h: process titles as ps shows them ("couponsd: http worker"). */
#ifndef COUPONSD_PROCTITLE_H
#define COUPONSD_PROCTITLE_H

/* Must run first in main(): moves environ out of the way of the argv area. */
int proctitle_init(int argc, char **argv);
void proctitle_set(const char *title);

#endif
