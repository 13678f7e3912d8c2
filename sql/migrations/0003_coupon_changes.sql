-- 0003_coupon_changes.sql: the operator's changes to running sales (PATCH /api/admin/coupons/{id}).
-- A change travels as an admin event on the coupon's partition of the issue topic and is decided by
-- that partition's consumer in Kafka log order, in a transaction of its own between two batches
-- (docs/data.md). Each decided change, applied or refused, is one row here: the audit trail, and the
-- record that makes a replayed admin event a no-op (change_id is unique).
CREATE TABLE coupon_changes (
    id              bigserial PRIMARY KEY,
    change_id       uuid NOT NULL UNIQUE,
    coupon_id       bigint NOT NULL,
    token_id        text NOT NULL,
    change          jsonb NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('APPLIED', 'REJECTED')),
    error           text,
    message         text,
    before          jsonb,
    after           jsonb,
    requested_at    timestamptz NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL
);

CREATE INDEX coupon_changes_coupon ON coupon_changes (coupon_id, id);

-- Set by a change that ends the sale at or before the moment it is decided (closing early): every
-- request after that change in log order is NOT_OPEN, whatever its acceptedAt. Cleared by a change
-- that moves endsAt into the future again.
ALTER TABLE coupons ADD COLUMN closed boolean NOT NULL DEFAULT false;

-- GET /api/admin/coupons counts each coupon's rejections by reason.
CREATE INDEX rejected_requests_coupon ON rejected_requests (coupon_id, reason);
