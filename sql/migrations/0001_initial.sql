-- 0001_initial.sql: coupons and the coupons issued to users (SPEC section 3).
CREATE SEQUENCE coupons_id_seq;

CREATE TABLE coupons (
    id             bigint PRIMARY KEY DEFAULT nextval('coupons_id_seq'),
    name           text NOT NULL,
    total_quantity integer NOT NULL CHECK (total_quantity > 0),
    remaining      integer NOT NULL CHECK (remaining BETWEEN 0 AND total_quantity),
    starts_at      timestamptz,
    ends_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE coupons_id_seq OWNED BY coupons.id;

CREATE TABLE issued_coupons (
    id          bigserial PRIMARY KEY,
    request_id  uuid NOT NULL UNIQUE,
    coupon_id   bigint NOT NULL REFERENCES coupons,
    user_id     bigint NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    -- when the HTTP edge accepted the request: GET /api/requests/{id} answers from here once Redis forgot it
    accepted_at timestamptz,
    UNIQUE (coupon_id, user_id)
);

-- GET /api/users/{userId}/coupons
CREATE INDEX issued_coupons_user_id ON issued_coupons (user_id);
