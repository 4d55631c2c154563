"""Baseline (b): the raw PostgreSQL cost of CreatePayment's transaction, with pgbench.

The script does what ``PostgresPaymentRepository.create`` does for a card DEPOSIT, one
statement per round trip as asyncpg sends them: BEGIN; INSERT the idempotency key
(RETURNING); INSERT the payment; INSERT the vaulted card; UPDATE the payment's card
fingerprint; INSERT the outbox row (whose trigger NOTIFYs); COMMIT. It runs against
copies of the four tables in a scratch schema ``bench_pg`` (same columns, defaults,
checks, indexes, foreign keys and statement trigger, own sequence), so no row reaches
the real outbox and nothing is published. The payload has the size of the real
``payment.created`` events. No Python is in the path: pgbench's prepared statements over
the same TCP loopback, on the same (durable: fsync, synchronous_commit) server.
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

SCHEMA = "bench_pg"
DEFAULT_PAYLOAD_BYTES = 400

_SETUP_SQL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.payments (LIKE payments.payments INCLUDING ALL);
CREATE TABLE {SCHEMA}.cards (LIKE payments.cards INCLUDING ALL);
CREATE TABLE {SCHEMA}.idempotency_keys (LIKE payments.idempotency_keys INCLUDING ALL);
CREATE TABLE {SCHEMA}.outbox (LIKE payments.outbox INCLUDING ALL);
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


def script(payload_bytes: int) -> str:
    """The pgbench script: one CreatePayment transaction (card DEPOSIT)."""
    hex_pairs = max(1, payload_bytes)
    # Interpolated: the constant schema name and an integer, nothing from outside.
    return f"""BEGIN;
INSERT INTO {SCHEMA}.idempotency_keys (user_id, idempotency_key, request_hash, payment_id)
  VALUES (gen_random_uuid(), md5(random()::text), md5(random()::text), gen_random_uuid())
  ON CONFLICT DO NOTHING RETURNING user_id AS uid, payment_id AS pid \\gset
INSERT INTO {SCHEMA}.payments (id, user_id, kind, status, funding_source, currency_code,
  amount_minor, description, card_brand, card_masked, card_exp_month, card_exp_year, merchant,
  failure_code, failure_message, version, create_time, update_time)
  VALUES (:pid, :uid, 'DEPOSIT', 'PENDING', NULL, 'USD', 1000, 'payrail bench', 'VISA',
  '424242******4242', 12, 2030, NULL, '', '', 1, now(), now());
INSERT INTO {SCHEMA}.cards (payment_id, key_id, nonce, ciphertext, fingerprint)
  VALUES (:pid, 'dev-1', decode(substr(md5(random()::text), 1, 24), 'hex'),
  decode(md5(random()::text) || md5(random()::text), 'hex'), md5(random()::text));
UPDATE {SCHEMA}.payments SET card_fingerprint = md5(:pid) WHERE id = :pid;
INSERT INTO {SCHEMA}.outbox (event_id, topic, message_key, event_type, payload)
  VALUES (gen_random_uuid(), 'payments.events', :pid, 'payment.created',
  decode(repeat('ab', {hex_pairs}), 'hex'));
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
