"""gateway_svc's use cases over ports (stores, caches, hashers, clocks)."""
