"""Dead letters are not a dead end: list them with their error and re-drive them.

``python -m consumer_svc.dlq`` (:mod:`consumer_svc.dlq.cli`) reads the ``*.dlq`` topics,
shows each letter with its error and source, and sends chosen letters back to their
topic; :mod:`consumer_svc.dlq.letters` holds the pure parts, :mod:`.kafka` the Kafka
reads and sends, :mod:`.store` the record of re-drives in PostgreSQL.
"""

from consumer_svc.dlq.letters import DeadLetter, LetterId, Redrive, choose, redrive_headers

__all__ = ["DeadLetter", "LetterId", "Redrive", "choose", "redrive_headers"]
