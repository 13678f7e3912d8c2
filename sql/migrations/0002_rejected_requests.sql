-- 0002_rejected_requests.sql: rejected requests, so that a REJECTED status outlives Redis like an ISSUED one.
-- Written by the consumer in the same transaction as the issued rows; no foreign key, because
-- COUPON_NOT_FOUND names coupons that do not exist. Each consumer prunes its own partition's rows
-- once they are older than issue.result_ttl (the life of a status in Redis).
CREATE TABLE rejected_requests (
    request_id      uuid PRIMARY KEY,
    coupon_id       bigint NOT NULL,
    user_id         bigint NOT NULL,
    reason          text NOT NULL
                    CHECK (reason IN ('SOLD_OUT', 'ALREADY_ISSUED', 'COUPON_NOT_FOUND', 'NOT_OPEN')),
    accepted_at     timestamptz,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    kafka_partition integer NOT NULL
);

CREATE INDEX rejected_requests_prune ON rejected_requests (kafka_partition, decided_at);
