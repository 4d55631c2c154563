-- The janitor's re-drive of stranded PENDING payments looks up each payment's creation
-- event in the outbox by payment id (message_key); without an index that is a scan of
-- the whole outbox on every pass that finds something stale.
CREATE INDEX outbox_created_by_payment_idx ON payments.outbox (message_key)
    WHERE event_type = 'payment.created' AND topic = 'payments.events';
