"""Building blocks every payrail service shares: configuration, logging, the gRPC server
shell (health, reflection, graceful shutdown, metrics), dependency probes and migrations.

Nothing here knows about payments or accounts; the domain lives in each service.
"""
