"""``python -m consumer_svc.dlq``: list dead letters and re-drive them, for operators.

    python -m consumer_svc.dlq list [--topic payments.events.dlq ...] [--error-contains TEXT]
                                    [--limit N] [--json]
    python -m consumer_svc.dlq redrive ID [ID ...] [--again] [--reason TEXT]
    python -m consumer_svc.dlq redrive --all [--topic T ...] [--error-contains TEXT]
                                    [--again] [--reason TEXT]

An id is ``<dlq-topic>:<partition>:<offset>``, as ``list`` prints it. A re-drive sends
the letter's original key and value to its topic (the DLQ topic minus ``.dlq``) with its
original headers plus ``redriven-from: <id>``; every consumer de-duplicates on the event
id, so a letter whose effect happened after all is a no-op. Each re-drive is recorded in
``consumer.dead_letter_redrives``: ``list`` shows it, and a recorded letter is not sent
again unless ``--again``.

Exit codes: 0 done (also when nothing matched), 1 refused (an unknown id, a letter
already re-driven, no such topic), 2 usage, 3 Kafka or PostgreSQL unreachable or failing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaError

from consumer_svc.config import Settings
from consumer_svc.dlq import kafka, store
from consumer_svc.dlq.letters import (
    DeadLetter,
    LetterId,
    as_dict,
    as_line,
    choose,
    matches,
    show_key,
    source_topic,
    summary,
)
from payrail_common.config import env_str

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


class Refused(Exception):
    """The command cannot do what was asked; nothing was sent."""


class Unavailable(Exception):
    """A dependency did not answer; the message says which (never the DSN: it may hold a
    password)."""


def _out(text: str) -> None:
    print(text)  # noqa: T201 - a CLI


def _err(text: str) -> None:
    print(f"dlq: {text}", file=sys.stderr)  # noqa: T201 - a CLI


async def _connect(dsn: str, timeout_s: float) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"PostgreSQL (--dsn) unreachable: {type(exc).__name__}") from None


async def _list(args: argparse.Namespace) -> int:
    partitions = await kafka.dlq_partitions(args.bootstrap, args.topic, timeout_s=args.timeout_s)
    letters = [
        letter
        for letter in await kafka.read_letters(args.bootstrap, partitions, timeout_s=args.timeout_s)
        if matches(letter, error_contains=args.error_contains)
    ]
    conn = await _connect(args.dsn, args.timeout_s)
    try:
        done = await store.redrives(conn, sorted({tp.topic for tp in partitions}))
    finally:
        await conn.close()
    shown = letters[-args.limit :] if args.limit else letters
    if args.json:
        _out(json.dumps([as_dict(letter, done.get(letter.id)) for letter in shown], indent=2))
    else:
        for letter in shown:
            _out(as_line(letter, done.get(letter.id)))
        topics = ", ".join(sorted({tp.topic for tp in partitions})) or "no dead-letter topics"
        more = f", showing the last {len(shown)}" if len(shown) < len(letters) else ""
        _err(f"{len(letters)} dead letter(s) in {topics}{more}")
    return 0


async def _chosen_letters(args: argparse.Namespace) -> list[DeadLetter]:
    if not args.all:
        ids = [LetterId.parse(text) for text in args.ids]
        partitions = await kafka.dlq_partitions(
            args.bootstrap, sorted({i.topic for i in ids}), timeout_s=args.timeout_s
        )
        unknown = [i for i in ids if (i.topic, i.partition) not in set(map(tuple, partitions))]
        if unknown:
            raise Refused(f"no such partition for {', '.join(map(str, unknown))}")
        return await kafka.fetch_letters(args.bootstrap, ids, timeout_s=args.timeout_s)
    partitions = await kafka.dlq_partitions(args.bootstrap, args.topic, timeout_s=args.timeout_s)
    return await kafka.read_letters(args.bootstrap, partitions, timeout_s=args.timeout_s)


async def _redrive(args: argparse.Namespace) -> int:
    letters = await _chosen_letters(args)
    ids = [] if args.all else [LetterId.parse(text) for text in args.ids]
    topics = sorted({i.topic for i in ids} | {letter.id.topic for letter in letters})
    conn = await _connect(args.dsn, args.timeout_s)
    try:
        choice = choose(
            letters,
            await store.redrives(conn, topics),
            ids=ids,
            error_contains=args.error_contains,
            again=args.again,
        )
        if choice.refused:
            raise Refused("; ".join(f"{i}: {why}" for i, why in choice.refused))
        if not choice.chosen:
            _err("nothing to re-drive")
            return 0
        results = []
        async with kafka.Redriver(args.bootstrap, timeout_s=args.timeout_s) as redriver:
            for letter in choice.chosen:
                await redriver.send(letter)
                done = await store.record(conn, letter, args.reason)
                results.append(as_dict(letter, done))
                if not args.json:
                    _out(
                        f"re-drove {letter.id} -> {letter.source_topic}"
                        f"  key={show_key(letter.key)}"
                        f"  {summary(letter.source_topic, letter.value)}"
                    )
    finally:
        await conn.close()
    if args.json:
        _out(json.dumps(results, indent=2))
    return 0


def _dlq_topic(text: str) -> str:
    try:
        source_topic(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parser() -> argparse.ArgumentParser:
    defaults = Settings()
    top = argparse.ArgumentParser(
        prog="python -m consumer_svc.dlq",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--bootstrap",
        default=env_str("PAYRAIL_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap),
        help="Kafka bootstrap servers (PAYRAIL_KAFKA_BOOTSTRAP; default %(default)s)",
    )
    top.add_argument(
        "--dsn",
        default=env_str("PAYRAIL_PG_DSN", defaults.pg_dsn),
        help="PostgreSQL, where re-drives are recorded (PAYRAIL_PG_DSN; default %(default)s)",
    )
    top.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="bound on each Kafka or PostgreSQL step (default %(default)s)",
    )
    sub = top.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list dead letters, oldest first, one line each")
    redrive = sub.add_parser("redrive", help="send dead letters back to their topic")
    for command in (listing, redrive):
        command.add_argument(
            "--topic",
            action="append",
            type=_dlq_topic,
            help="a dead-letter topic (repeatable); default: every *.dlq topic",
        )
        command.add_argument(
            "--error-contains", metavar="TEXT", help="only letters whose error contains TEXT"
        )
        command.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--limit",
        type=int,
        default=100,
        help="show the last N matching letters, 0 for all (default %(default)s)",
    )
    redrive.add_argument("ids", nargs="*", metavar="ID", help="<dlq-topic>:<partition>:<offset>")
    redrive.add_argument(
        "--all", action="store_true", help="every letter (of --topic, with --error-contains)"
    )
    redrive.add_argument(
        "--again", action="store_true", help="also letters that were re-driven before"
    )
    redrive.add_argument(
        "--reason", default="", help="operator note recorded with the re-drive (default: none)"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command == "redrive":
        if bool(args.ids) == bool(args.all):
            top.error("redrive takes either IDs or --all")
        if args.ids and (args.topic or args.error_contains):
            top.error("--topic and --error-contains go with --all, not with IDs")
        try:
            for text in args.ids:
                LetterId.parse(text)
        except ValueError as exc:
            top.error(str(exc))
    if getattr(args, "limit", 0) < 0:
        top.error("--limit must be 0 or more")
    run = _list if args.command == "list" else _redrive
    # The client library logs each failed connection attempt; the one-line error says it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run(args))
    except (Refused, kafka.DeadLetterError) as exc:
        _err(f"refused: {exc}")
        return EXIT_REFUSED
    except Unavailable as exc:
        _err(str(exc))
    except asyncpg.UndefinedTableError:
        _err("consumer.dead_letter_redrives is missing: run python -m payrail_common.migrate")
    except asyncpg.PostgresError as exc:
        _err(f"PostgreSQL failed: {type(exc).__name__}")
    except KafkaError as exc:
        _err(f"Kafka at {args.bootstrap} failed: {str(exc)[:200] or type(exc).__name__}")
    except (TimeoutError, OSError) as exc:
        _err(f"no answer from Kafka at {args.bootstrap} in time ({type(exc).__name__})")
    return EXIT_UNAVAILABLE
