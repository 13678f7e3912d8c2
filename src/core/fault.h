/* SPDX-License-Identifier: BSD-2-Clause */
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
 *         http_kafka_fatal=N
 *                          HTTP worker N's producer raises a fatal error (rd_kafka_test_fatal_error)
 *                          right after queueing its first message, which is then in flight
 *         http_kafka_fatal_after=K
 *                          with http_kafka_fatal: after its K-th message instead of its first, so
 *                          that K requests can be in flight (under `kafka rtt`) when it comes
 *         http_pg_connect_delay=MS
 *                          every HTTP worker's PostgreSQL client starts its first connect MS later,
 *                          as a slow PostgreSQL would (the worker waits for it before it accepts)
 *         http_settle_drop=U
 *                          the HTTP workers never make user U's claims last after the delivery report
 *                          (http_issue.c, keep_claim), as a worker that died between its 202 and the
 *                          settle's send would: the claim expires after its first lifetime
 *         http_produce_gate=1
 *                          the HTTP producers hold events behind librdkafka's idempotence window
 *                          (produce_gate.h) on the embedded cluster too, as on real brokers
 *         http_lane_fast_at=N
 *                          a partition moves to an HTTP worker's fast producer at N events in 50 ms
 *                          instead of KAFKA_HTTP_FAST_AT (kafka_conf.h), so that a test client can move it
 *         sse_idle_ms=MS   an HTTP worker unsubscribes from the results channel MS after its last
 *                          event stream ended (10 s otherwise)
 *         spawn_fail=N     the master's next N forks fail with EAGAIN, as at a process limit
 *         child_exit_delay=MS
 *                          every child waits MS after its teardown before it exits, as a slow exit
 *                          (the sanitizers' leak check) does: the window a late SIGTERM can hit
 *         consumer_crash=P the consumer of partition P exits with status 3 right after starting
 *         consumer_kill_after_gate=P
 *                          the consumer of partition P calls _exit(9) after the Redis gate of its
 *                          first batch (the first gate round that reserved stock) and before the
 *                          PostgreSQL commit: reservations made, nothing issued, no offset stored.
 *                          It fires once per Redis database (it first sets the marker key
 *                          <prefix>fault:consumer_kill_after_gate with SET NX), so the restarted
 *                          consumer replays the batch instead of dying again.
 *         consumer_kafka_fatal=P
 *                          the results producer of partition P's consumer raises a fatal error
 *                          (rd_kafka_test_fatal_error) once a batch's results are queued; once per
 *                          Redis database (marker <prefix>fault:consumer_kafka_fatal, as above)
 *         consumer_prune_every=MS
 *                          every consumer prunes old rejections every MS instead of once a minute
 *         consumer_fail_commit_ahead=P
 *                          the first transaction of partition P's consumer that runs while the next
 *                          batch is already gated in Redis (src/consumer/consumer.c, pregate()) fails
 *                          its INSERT's count check, as when a row meets another writer: rolled
 *                          back and retried, with the batch ahead's reservations made (once per
 *                          process)
 *
 * Kafka faults (embedded mode only) are not switches but a control command,
 * `couponsd -c FILE -s 'kafka CMD'`: the master relays CMD over the channel
 * (CHANNEL_KAFKA_FAULT) to the embedded Kafka child, which applies it with
 * librdkafka's mock cluster API (rdkafka_mock.h) and answers ok or the error.
 * A production build refuses `-s kafka ...` like any unknown command.
 *
 *   broker-down N | broker-up N   mock broker N (1-3) drops its connections and refuses new ones / comes
 *                                 back; partition leaders do not move, so its partitions wait
 *   all-down | all-up             every broker
 *   produce-errors COUNT CODE     the next COUNT Produce requests, from any client, fail with CODE (a
 *                                 Kafka error name such as NOT_LEADER_FOR_PARTITION, or a number); nothing
 *                                 of a failed request is appended
 *   clear-errors                  forget the Produce errors not used yet
 *   rtt N|all MS                  delay every answer of broker N (or all) by MS milliseconds
 *
 * With more than one Produce request in flight, a retriable CODE can fail
 * one batch while a later one succeeds; librdkafka 2.0.2 then reports the
 * failed batch delivered, without an offset, and the mock (which checks no
 * sequence numbers) does not refuse the later batch. couponsd counts such a
 * report as a failure (src/core/kafka_delivery.c, where a real broker does the
 * same); tests/chaos/mock_seq_repro.c shows the reports without couponsd.
 */
long fault_value(const char *name);

#endif
