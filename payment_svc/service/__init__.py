"""payment_svc's use cases over ports (repository, caches, vault, clock)."""
