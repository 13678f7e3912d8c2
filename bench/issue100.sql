-- bench/issue100.sql: the PostgreSQL ceiling for couponsd's decisions, as a pgbench custom script.
-- One transaction inserts 100 issued rows at once (the consumer's write-through is one multi-row INSERT per
-- batch), with fresh request ids and distinct users, into a database with couponsd's own schema (applied by
-- `couponsd --migrate`), so the same unique indexes and foreign key are maintained. bench/run.py runs it as
--   pgbench -n -M prepared -c <consumers> -j 2 -T <seconds> -f bench/issue100.sql
\set coupon random(1, 8)
INSERT INTO issued_coupons (request_id, coupon_id, user_id, accepted_at)
SELECT gen_random_uuid(), :coupon, nextval('bench_users'), now() FROM generate_series(1, 100);
