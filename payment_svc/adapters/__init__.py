"""payment_svc's I/O: PostgreSQL, Redis, Kafka."""
