-- Idempotency keys and request fingerprints are stored as keyed digests ("hmac-v1:" and
-- 64 hex digits, payment_svc/domain/idempotency.py): a client's key may hold a card
-- number or personal data, and only equality is ever needed. The digest key lives
-- outside the database, so rows written before cannot be hashed by SQL; payment_svc
-- hashes them in place at start (payment_svc/adapters/idempotency_keys.py). This index
-- finds them at once and is empty afterwards.
CREATE INDEX idempotency_keys_in_clear_idx ON payments.idempotency_keys (user_id)
    WHERE idempotency_key NOT LIKE 'hmac-v1:%';
