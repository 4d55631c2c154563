"""``python -m payment_svc.gateways``: the gateway registry, for operators.

Registry changes are administrative, so they are a CLI on the database (whoever can run
it already holds PAYRAIL_PG_DSN), not an RPC on a network port.

    python -m payment_svc.gateways add sandbox-json --format json \\
        --kinds DEPOSIT,WITHDRAWAL,PURCHASE --currencies USD,EUR --priority 10 \\
        --public-key-file gw.pub --secret-file gw.secret [--timeout-s 30]
    python -m payment_svc.gateways list
    python -m payment_svc.gateways add-secret sandbox-json --id s2 --secret-file new.secret
    python -m payment_svc.gateways retire-secret sandbox-json --id s1
    python -m payment_svc.gateways disable sandbox-json   (enable likewise)

Public keys are 32 raw X25519 bytes, base64 in the file; secrets at least 32 bytes, base64.
``add`` is idempotent: an existing gateway is updated in place. It also creates the
gateway's request topic ``gateway.<id>.requests`` on PAYRAIL_KAFKA_BOOTSTRAP when it is
missing (``--partitions``, ``--replication-factor``; ``--no-topic`` skips it): the
brokers do not create topics on their own, and a registered gateway without its topic
would hold its payments until the topic exists.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from payment_svc.domain.status import PaymentKind
from payrail_common.config import env_str
from payrail_common.migrate import DEFAULT_DSN

# How long `add` waits for Kafka before it says the topic could not be created.
TOPIC_TIMEOUT_S = 30


def _b64_file(path: Path, *, min_bytes: int, exact: bool = False) -> bytes:
    raw = base64.b64decode(path.read_text().strip(), validate=True)
    if len(raw) < min_bytes or (exact and len(raw) != min_bytes):
        raise SystemExit(f"{path}: expected {'exactly' if exact else 'at least'} {min_bytes} bytes")
    return raw


async def _add(conn: asyncpg.Connection, args: argparse.Namespace) -> str:
    kinds = [PaymentKind(k.strip().upper()).value for k in args.kinds.split(",") if k.strip()]
    currencies = [c.strip().upper() for c in args.currencies.split(",") if c.strip()]
    public_key = _b64_file(args.public_key_file, min_bytes=32, exact=True)
    secret = _b64_file(args.secret_file, min_bytes=32)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO payments.gateways (id, wire_format, topic, kinds, currency_codes,"
            " priority, public_key, callback_timeout_seconds)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (id) DO UPDATE SET wire_format = EXCLUDED.wire_format,"
            " topic = EXCLUDED.topic, kinds = EXCLUDED.kinds,"
            " currency_codes = EXCLUDED.currency_codes, priority = EXCLUDED.priority,"
            " public_key = EXCLUDED.public_key,"
            " callback_timeout_seconds = EXCLUDED.callback_timeout_seconds",
            args.gateway_id,
            args.format,
            f"gateway.{args.gateway_id}.requests",
            kinds,
            currencies,
            args.priority,
            public_key,
            args.timeout_s,
        )
        await conn.execute(
            "INSERT INTO payments.gateway_secrets (gateway_id, secret_id, secret)"
            " VALUES ($1, 's1', $2) ON CONFLICT (gateway_id, secret_id)"
            " DO UPDATE SET secret = EXCLUDED.secret, active = true",
            args.gateway_id,
            secret,
        )
    return f"gateway {args.gateway_id}: registered (topic gateway.{args.gateway_id}.requests)"


async def _ensure_topic(args: argparse.Namespace) -> str:
    """Create gateway.<id>.requests unless it exists; a sentence saying which."""
    topic = f"gateway.{args.gateway_id}.requests"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout=TOPIC_TIMEOUT_S)
        response = await admin.create_topics(
            [NewTopic(topic, args.partitions, args.replication_factor)], timeout_ms=10_000
        )
        # The broker answers per topic with an error code (0: created).
        code = next((err[1] for err in response.topic_errors if err[0] == topic), 0)
        if code == 0:
            return f"topic {topic}: created ({args.partitions} partitions)"
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            return f"topic {topic}: exists"
        reason = error.__name__
    except TopicAlreadyExistsError:
        return f"topic {topic}: exists"
    except (KafkaError, OSError, TimeoutError) as exc:
        reason = type(exc).__name__
    finally:
        await admin.close()
    raise SystemExit(
        f"gateway {args.gateway_id} is registered, but its topic {topic} could not be"
        f" created ({reason}; Kafka at {args.kafka_bootstrap}): start Kafka and run this"
        " command again, or create the topic yourself"
    )


async def _run(args: argparse.Namespace) -> str:
    conn = await asyncpg.connect(args.dsn, timeout=10)
    try:
        if args.command == "add":
            registered = await _add(conn, args)
            if args.no_topic:
                return registered
            return f"{registered}\n{await _ensure_topic(args)}"
        if args.command == "list":
            rows = await conn.fetch(
                "SELECT g.id, g.wire_format, g.enabled, g.priority, g.kinds, g.currency_codes,"
                " (SELECT count(*) FROM payments.gateway_secrets s"
                "   WHERE s.gateway_id = g.id AND s.active) AS secrets"
                " FROM payments.gateways g ORDER BY g.priority DESC, g.id"
            )
            return (
                "\n".join(
                    f"{r['id']:<20} {r['wire_format']:<9}"
                    f" {'enabled' if r['enabled'] else 'disabled':<9}"
                    f" priority={r['priority']:<4} secrets={r['secrets']}"
                    f" kinds={','.join(r['kinds'])} currencies={','.join(r['currency_codes'])}"
                    for r in rows
                )
                or "no gateways registered"
            )
        if args.command in ("enable", "disable"):
            status = await conn.execute(
                "UPDATE payments.gateways SET enabled = $2 WHERE id = $1",
                args.gateway_id,
                args.command == "enable",
            )
            return f"gateway {args.gateway_id}: {args.command}d ({status})"
        if args.command == "add-secret":
            await conn.execute(
                "INSERT INTO payments.gateway_secrets (gateway_id, secret_id, secret)"
                " VALUES ($1, $2, $3)",
                args.gateway_id,
                args.secret_id,
                _b64_file(args.secret_file, min_bytes=32),
            )
            return f"gateway {args.gateway_id}: secret {args.secret_id} active"
        status = await conn.execute(
            "UPDATE payments.gateway_secrets SET active = false"
            " WHERE gateway_id = $1 AND secret_id = $2",
            args.gateway_id,
            args.secret_id,
        )
        return f"gateway {args.gateway_id}: secret {args.secret_id} retired ({status})"
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Manage the payrail gateway registry.")
    parser.add_argument("--dsn", default=env_str("PAYRAIL_PG_DSN", DEFAULT_DSN))
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="register or update a gateway")
    add.add_argument("gateway_id")
    add.add_argument("--format", required=True, choices=["json", "soap", "protobuf"])
    add.add_argument("--kinds", default="DEPOSIT,WITHDRAWAL,PURCHASE")
    add.add_argument("--currencies", default="USD,EUR,GBP,JPY,KRW,CHF,CAD,AUD")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--timeout-s", type=int, default=30)
    add.add_argument("--public-key-file", type=Path, required=True)
    add.add_argument("--secret-file", type=Path, required=True)
    add.add_argument(
        "--kafka-bootstrap", default=env_str("PAYRAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    add.add_argument("--partitions", type=int, default=3)
    add.add_argument("--replication-factor", type=int, default=1)
    add.add_argument("--no-topic", action="store_true", help="do not create the request topic")
    sub.add_parser("list", help="show the registry")
    for name in ("enable", "disable"):
        sub.add_parser(name).add_argument("gateway_id")
    add_secret = sub.add_parser("add-secret", help="add a callback secret (rotation)")
    add_secret.add_argument("gateway_id")
    add_secret.add_argument("--id", dest="secret_id", required=True)
    add_secret.add_argument("--secret-file", type=Path, required=True)
    retire = sub.add_parser("retire-secret", help="deactivate a callback secret")
    retire.add_argument("gateway_id")
    retire.add_argument("--id", dest="secret_id", required=True)
    args = parser.parse_args(argv)
    print(asyncio.run(_run(args)))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
