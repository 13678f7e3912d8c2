/* fault.h: test-only fault switches, compiled in by ./configure --enable-fault-injection. */
#ifndef COUPONSD_FAULT_H
#define COUPONSD_FAULT_H

/*
 * COUPONSD_FAULTS="name=value,name=value" in the environment arms faults in
 * a test build; a production build compiles none of this and ignores the
 * variable. fault_value() returns the value of an armed fault, or -1.
 *
 * Faults: http_crash=N     HTTP worker N exits with status 3 right after starting
 *         http_hang=N      HTTP worker N stops ticking its heartbeat after it is ready
 *         consumer_crash=P the consumer of partition P exits with status 3 right after starting
 *         consumer_kill_after_gate=P
 *                          the consumer of partition P calls _exit(9) after the Redis gate of its
 *                          first batch (the first gate round that reserved stock) and before the
 *                          PostgreSQL commit: reservations made, nothing issued, no offset stored.
 *                          It fires once per Redis database (it first sets the marker key
 *                          <prefix>fault:consumer_kill_after_gate with SET NX), so the restarted
 *                          consumer replays the batch instead of dying again.
 */
long fault_value(const char *name);

#endif
