"""gateway_svc's I/O: PostgreSQL account store, Redis sessions and throttles, Argon2."""
