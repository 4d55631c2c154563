"""Baseline (b): the raw PostgreSQL cost of CreatePayment's transaction, with pgbench.

The script does what ``PostgresPaymentRepository.create`` does for a card DEPOSIT, one
statement per round trip as asyncpg sends them: BEGIN; INSERT the idempotency key
(RETURNING); the one statement that writes the payment, its vaulted card, its hold (none
for a deposit) and its outbox row (whose trigger NOTIFYs); COMMIT. That statement is the
adapter's own text (``_CREATE_PAYMENT``), its parameters replaced by typed values, so the
baseline follows the service when the statement changes. It runs against copies of the
tables in a scratch schema ``bench_pg`` (same columns, defaults, checks, indexes, foreign
keys and statement trigger, own sequence), so no row reaches the real outbox and nothing
is published. The payload has the size of the real ``payment.created`` events. No Python
is in the path: pgbench's prepared statements over the same TCP loopback, on the same
(durable: fsync, synchronous_commit) server.
"""

from __future__ import annotations

import asyncio
import glob
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import asyncpg

# The statement itself, not a copy: a copy is how this baseline once measured a
# transaction the service no longer ran.
from payment_svc.adapters.postgres import _CREATE_PAYMENT

SCHEMA = "bench_pg"
DEFAULT_PAYLOAD_BYTES = 400

_SETUP_SQL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.payments (LIKE payments.payments INCLUDING ALL);
CREATE TABLE {SCHEMA}.cards (LIKE payments.cards INCLUDING ALL);
CREATE TABLE {SCHEMA}.idempotency_keys (LIKE payments.idempotency_keys INCLUDING ALL);
CREATE TABLE {SCHEMA}.outbox (LIKE payments.outbox INCLUDING ALL);
CREATE TABLE {SCHEMA}.ledger_accounts (LIKE payments.ledger_accounts INCLUDING ALL);
CREATE TABLE {SCHEMA}.holds (LIKE payments.holds INCLUDING ALL);
CREATE SEQUENCE {SCHEMA}.outbox_id_seq OWNED BY {SCHEMA}.outbox.id;
ALTER TABLE {SCHEMA}.outbox ALTER COLUMN id SET DEFAULT nextval('{SCHEMA}.outbox_id_seq');
ALTER TABLE {SCHEMA}.cards ADD FOREIGN KEY (payment_id) REFERENCES {SCHEMA}.payments (id);
ALTER TABLE {SCHEMA}.idempotency_keys ADD FOREIGN KEY (payment_id)
    REFERENCES {SCHEMA}.payments (id) DEFERRABLE INITIALLY DEFERRED;
CREATE FUNCTION {SCHEMA}.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{SCHEMA}_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON {SCHEMA}.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_outbox();
"""

_PAYLOAD_SQL = (
    "SELECT coalesce(avg(length(payload)), 0)::int FROM"
    " (SELECT payload FROM payments.outbox WHERE event_type = 'payment.created'"
    " ORDER BY id DESC LIMIT 1000) AS recent"
)


def _create_payment_values(payload_bytes: int) -> dict[int, str]:
    """SQL for each parameter of ``_CREATE_PAYMENT``, as ``create`` binds them for a card
    DEPOSIT; every value is cast, so pgbench's untyped parameters cannot change a type."""
    hex_pairs = max(1, payload_bytes)
    return {
        1: "(:pid)::uuid",
        2: "(:uid)::uuid",
        3: "'DEPOSIT'::text",
        4: "'PENDING'::text",
        5: "NULL::text",  # funding_source: only purchases have one
        6: "'USD'::text",
        7: "1000::bigint",
        8: "'payrail bench'::text",
        9: "'VISA'::text",
        10: "'424242******4242'::text",
        11: "12::int",
        12: "2030::int",
        13: "NULL",  # merchant (jsonb): only purchases have one
        14: "''::text",
        15: "''::text",
        16: "1::int",
        17: "now()",
        18: "now()",
        19: "''::text",  # verification_reason
        20: "false",  # verified
        21: "md5((:pid)::text)",  # the card fingerprint (the payment's and the card's)
        22: "'dev-1'::text",  # the vault key id
        23: "decode(substr(md5(random()::text), 1, 24), 'hex')",  # 12-byte nonce
        24: "decode(md5(random()::text) || md5(random()::text), 'hex')",
        25: "NULL::bigint",  # no hold for a deposit: no wallet account
        26: "0::bigint",
        # The outbox row, as the six column arrays of _outbox_insert.
        27: "ARRAY[gen_random_uuid()]",
        28: "ARRAY['payments.events']",
        29: "ARRAY[(:pid)::text]",
        30: "ARRAY['payment.created']",
        31: f"ARRAY[decode(repeat('ab', {hex_pairs}), 'hex')]",
        32: "ARRAY[md5(random()::text)]",  # the request id
    }


def create_payment_statement(payload_bytes: int) -> str:
    """payment_svc's CreatePayment statement on the scratch schema, with values."""
    values = _create_payment_values(payload_bytes)

    def value(match: re.Match[str]) -> str:
        return values[int(match.group(1))]

    # Tables first (before the values bring in the topic name 'payments.events').
    on_scratch = _CREATE_PAYMENT.replace("payments.", f"{SCHEMA}.")
    return re.sub(r"\$(\d+)\b", value, on_scratch)


def script(payload_bytes: int) -> str:
    """The pgbench script: one CreatePayment transaction (card DEPOSIT)."""
    # Interpolated: the constant schema name, the adapter's constant statement and an
    # integer, nothing from outside.
    return f"""BEGIN;
INSERT INTO {SCHEMA}.idempotency_keys (user_id, idempotency_key, request_hash, payment_id)
  VALUES (gen_random_uuid(), md5(random()::text), md5(random()::text), gen_random_uuid())
  ON CONFLICT DO NOTHING RETURNING user_id AS uid, payment_id AS pid \\gset
{create_payment_statement(payload_bytes)};
COMMIT;
"""  # noqa: S608


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: int
    user: str
    database: str

    @classmethod
    def from_dsn(cls, dsn: str) -> PgTarget:
        url = urlparse(dsn)
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
            user=unquote(url.username or "postgres"),
            database=(url.path or "/postgres").lstrip("/") or "postgres",
        )


def find_pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
    )
    if not candidates:
        raise FileNotFoundError("pgbench not found (Debian package postgresql-client)")
    return candidates[-1]


async def payload_bytes(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        size: int = await conn.fetchval(_PAYLOAD_SQL)
    finally:
        await conn.close()
    return size or DEFAULT_PAYLOAD_BYTES


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run_pgbench(
    dsn: str, *, clients: int, duration_s: int, rate: float | None = None
) -> dict[str, float | int | str | None]:
    """Run the script for duration_s with ``clients`` connections; tps and latency.

    rate: if given, pgbench schedules transactions at that rate (its own open loop).
    """
    size = await payload_bytes(dsn)
    pg = PgTarget.from_dsn(dsn)
    await _execute(dsn, _SETUP_SQL)
    try:
        with tempfile.TemporaryDirectory(prefix="payrail-pgbench-") as tmp:
            path = Path(tmp) / "create_payment.sql"
            path.write_text(script(size))
            args = [
                find_pgbench(),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(duration_s),
                "-f",
                str(path),
                "-h",
                pg.host,
                "-p",
                str(pg.port),
                "-U",
                pg.user,
            ]
            if rate is not None:
                args += ["-R", f"{rate:g}"]
            args.append(pg.database)
            process = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=duration_s + 60)
    finally:
        await _execute(dsn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed: {stderr.decode(errors='replace').strip()[-500:]}")
    out = stdout.decode(errors="replace")
    return {
        "clients": clients,
        "duration_s": duration_s,
        "rate": rate,
        "payload_bytes": size,
        "tps": _number(r"tps = ([\d.]+) \(without initial connection time\)", out),
        "latency_avg_ms": _number(r"latency average = ([\d.]+) ms", out),
        "latency_stddev_ms": _number(r"latency stddev = ([\d.]+) ms", out),
        "transactions": _number(r"number of transactions actually processed: (\d+)", out),
        "failed": _number(r"number of failed transactions: (\d+)", out),
    }


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None
