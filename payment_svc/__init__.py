"""payment_svc: the payment core (internal gRPC on port 50052).

Validation, card vault, idempotency, the PostgreSQL system of record, the double-entry
ledger, the transactional outbox and its relay to Kafka, and gateway callback
verification. Only gateway_svc and consumer_svc call it.
"""
