-- payment_svc owns the `payments` schema: payments, card vault, ledger, idempotency, outbox.
CREATE SCHEMA IF NOT EXISTS payments;
