"""The chaos suite: payments through the public API while a seeded schedule of faults
(kill -9, broker loss, PostgreSQL crash, Redis restart, pauses) hits a private stack with
three Kafka brokers; then the invariants a payment platform owes its users are checked
from PostgreSQL, Kafka and the client's own record. ``python -m chaos run --help``;
docs/reliability.md explains what is checked and why.
"""
