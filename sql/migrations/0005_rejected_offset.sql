-- 0005_rejected_offset.sql: where each rejection's event is in its partition's log.
-- A rejection is pruned after issue.result_ttl only once its offset is below the consumer group's
-- committed offset: until then a replay can still bring its event back, and the replay must find the
-- first decision, not decide again (a coupon restocked in between would turn REJECTED into ISSUED).
-- Rows written before this migration have no offset and are pruned by age alone, as before.
ALTER TABLE rejected_requests ADD COLUMN kafka_offset bigint;
