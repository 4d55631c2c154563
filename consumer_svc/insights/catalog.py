"""``python -m consumer_svc.insights.catalog``: the benefit catalog, for operators.

The same catalog BenefitCatalogService manages over gRPC (admins only), edited directly
in PostgreSQL by whoever holds PAYRAIL_PG_DSN:

    python -m consumer_svc.insights.catalog put VISA 5812 cashback 300 [--description ...]
    python -m consumer_svc.insights.catalog list
    python -m consumer_svc.insights.catalog delete VISA 5812
    python -m consumer_svc.insights.catalog seed      (the defaults below, never overwriting)

Brands: VISA, MASTERCARD, AMERICAN_EXPRESS (or AMEX), DISCOVER. Categories: an MCC of four
digits or "*" for every category without an entry of its own. Rates in basis points.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from consumer_svc.insights.domain import (
    Benefit,
    InvalidArgument,
    brand_alias,
    percent,
    validate_benefit,
)
from consumer_svc.insights.store import InsightsStore
from payrail_common.config import env_str
from payrail_common.migrate import DEFAULT_DSN

# What `make up` starts with: restaurants (5812) pay well on Visa and Amex points,
# Mastercard pays a little everywhere.
DEFAULT_CATALOG = (
    Benefit("VISA", "5812", "CASHBACK", 300, "Visa dining cashback"),
    Benefit("MASTERCARD", "*", "CASHBACK", 100, "Mastercard cashback on everything"),
    Benefit("AMERICAN_EXPRESS", "5812", "POINTS", 400, "Amex dining points"),
)


def _benefit(args: argparse.Namespace) -> Benefit:
    benefit = Benefit(
        brand=brand_alias(args.brand),
        category_code=args.category_code.strip(),
        reward_kind=args.reward_kind.strip().upper(),
        rate_bps=args.rate_bps,
        description=args.description,
    )
    validate_benefit(benefit)
    return benefit


def _line(b: Benefit) -> str:
    return (
        f"{b.brand:<17} {b.category_code:<4} {b.reward_kind:<8} {b.rate_bps:>5} bps"
        f" ({percent(b.rate_bps)})  {b.description}"
    )


async def _run(dsn: str, args: argparse.Namespace) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, timeout=10, command_timeout=10)
    try:
        store = InsightsStore(pool)
        if args.command == "put":
            print(_line(await store.put_benefit(_benefit(args))))  # noqa: T201
        elif args.command == "delete":
            if not await store.delete_benefit(brand_alias(args.brand), args.category_code):
                print("no such benefit", file=sys.stderr)  # noqa: T201
                return 1
            print("deleted")  # noqa: T201
        elif args.command == "seed":
            added = [b for b in DEFAULT_CATALOG if await store.seed_benefit(b)]
            print(f"catalog: {len(added)} default benefit(s) added")  # noqa: T201
        else:
            for benefit in await store.list_benefits():
                print(_line(benefit))  # noqa: T201
    finally:
        await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumer_svc.insights.catalog", description="Manage the benefit catalog."
    )
    parser.add_argument("--dsn", default=env_str("PAYRAIL_PG_DSN", DEFAULT_DSN))
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put", help="create or replace one (brand, category) benefit")
    put.add_argument("brand")
    put.add_argument("category_code")
    put.add_argument("reward_kind", choices=["cashback", "points", "CASHBACK", "POINTS"])
    put.add_argument("rate_bps", type=int)
    put.add_argument("--description", default="")
    delete = commands.add_parser("delete", help="remove one (brand, category) benefit")
    delete.add_argument("brand")
    delete.add_argument("category_code")
    commands.add_parser("list", help="show the catalog")
    commands.add_parser("seed", help="add the default catalog entries that are missing")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args.dsn, args))
    except InvalidArgument as exc:
        print(f"catalog: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
