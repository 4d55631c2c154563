"""The risk rules' memory over PostgreSQL, with the last known locations read
cache-aside through Redis (Redis first, PostgreSQL on a miss or while Redis is down).

PostgreSQL is the truth: a location is written there first (keeping the newest), then
the winner is copied to Redis. Losing Redis loses nothing but speed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from consumer_svc.risk.rules import (
    Assessment,
    Decision,
    DecisionDeferred,
    Finding,
    Funding,
    History,
    Location,
    PaymentFacts,
)

log = logging.getLogger(__name__)

LOCATION_CACHE = Counter(
    "payrail_risk_location_cache_total", "Last-location look-ups by result.", ["result"]
)
_CACHE_PREFIX = "risk:loc:v1:"


def _encode(location: Location) -> str:
    data = asdict(location)
    data["at"] = location.at.isoformat()
    return json.dumps(data)


def _decode(raw: bytes | str) -> Location:
    data = json.loads(raw)
    data["at"] = datetime.fromisoformat(data["at"])
    return Location(**data)


_LOCK_SQL = (
    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended(key, 0))"
    " FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n) ORDER BY n) AS locked"
)
# The recorded decision (a redelivery) and the history, in one round trip. Each count
# uses its own index: an OR of both lets a generic prepared plan fall back to a
# sequential scan. "card_fingerprint <> ''" matches the card index's predicate.
_KNOWN_TEMPLATE = (
    "SELECT d.decision, d.findings,"
    " (SELECT count(*) FROM consumer.risk_observations"
    "   WHERE user_id = $2 AND occur_time >= $3 AND payment_id <> $1) AS by_user,"
    " {by_card} AS by_card,"
    " ARRAY(SELECT amount_minor FROM consumer.risk_observations"
    "   WHERE user_id = $2 AND currency_code = $5 AND payment_id <> $1"
    "   ORDER BY occur_time DESC LIMIT $6) AS amounts"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN consumer.risk_decisions AS d ON d.payment_id = $1"
)
# A card's payments across all users (through the card index), or only the user's own
# (development: a shared sandbox card is not one person's burst), counted among the
# user's window through the user index (a shared card's index range can be long).
_KNOWN_ALL_USERS_SQL = _KNOWN_TEMPLATE.format(
    by_card="(SELECT count(*) FROM consumer.risk_observations"
    "   WHERE card_fingerprint = $4 AND card_fingerprint <> ''"
    "   AND occur_time >= $3 AND payment_id <> $1)"
)
_KNOWN_PER_USER_SQL = _KNOWN_TEMPLATE.format(
    by_card="(SELECT count(*) FILTER (WHERE card_fingerprint = $4 AND $4 <> '')"
    "   FROM consumer.risk_observations"
    "   WHERE user_id = $2 AND occur_time >= $3 AND payment_id <> $1)"
)
# Whether a withdrawal's card funded its user's wallet. A deposit still OPEN after an
# hour lost its outcome somewhere; it no longer holds a withdrawal back.
_FUNDING_SQL = (
    "SELECT coalesce(bool_or(status = 'COMPLETED'), false) AS funded,"
    " coalesce(bool_or(status = 'OPEN' AND create_time >= $3), false) AS in_flight"
    " FROM consumer.risk_deposits WHERE user_id = $1 AND card_fingerprint = $2"
)
DEPOSIT_IN_FLIGHT_MAX_S = 3600
_DEPOSIT_SQL = (
    "INSERT INTO consumer.risk_deposits (payment_id, user_id, card_fingerprint, create_time)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
)
# A deposit's outcome, from its final status event; idempotent (only an OPEN row moves).
# The card comes from the deposit's own observation, so a deposit decided before this
# table existed is learnt as well.
_SETTLE_MANY_SQL = (
    "INSERT INTO consumer.risk_deposits AS d (payment_id, user_id, card_fingerprint,"
    " status, create_time, settle_time)"
    " SELECT o.payment_id, o.user_id, o.card_fingerprint, u.status, o.occur_time, u.at"
    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(payment_id, status, at)"
    " JOIN consumer.risk_observations o ON o.payment_id = u.payment_id"
    " WHERE o.card_fingerprint <> '' ORDER BY o.payment_id"
    " ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status,"
    " settle_time = EXCLUDED.settle_time WHERE d.status = 'OPEN'"
)
_RECORD_SQL = (
    "WITH observed AS (INSERT INTO consumer.risk_observations (payment_id, user_id,"
    " card_fingerprint, currency_code, amount_minor, occur_time)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING)"
    " INSERT INTO consumer.risk_decisions"
    " (payment_id, user_id, decision, rule, explanation, findings)"
    " VALUES ($1, $2, $7, $8, $9, $10)"
)


def _findings_json(assessment: Assessment) -> str:
    return json.dumps(
        [
            {"rule": f.rule, "decision": f.decision.value, "explanation": f.explanation}
            for f in assessment.findings
        ]
    )


def _assessment(decision: str, findings: str) -> Assessment:
    return Assessment(
        Decision(decision),
        tuple(
            Finding(f["rule"], Decision(f["decision"]), f["explanation"])
            for f in json.loads(findings)
        ),
    )


def location_subjects(
    user_id: str, card_fingerprint: str, *, card_per_user: bool = False
) -> tuple[str, ...]:
    """The subjects whose last known location a card-present purchase reads and moves
    (and that a decision locks): its user first, then its card when it has one, unless
    cards are judged per user (development: a shared test card's last place is someone
    else's, and the user's own history already covers their use of it)."""
    if card_per_user or not card_fingerprint:
        return (f"user:{user_id}",)
    return (f"user:{user_id}", f"card:{card_fingerprint}")


class RiskStore:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, *, cache_ttl_s: int = 86_400) -> None:
        self._pool = pool
        self._redis = redis
        self._cache_ttl_s = cache_ttl_s

    # ------------------------------------------------------------------ decisions
    async def decide(
        self,
        facts: PaymentFacts,
        rules: Callable[[History], Assessment],
        *,
        window_s: int,
        amounts_max: int,
        card_per_user: bool = False,
        check_funding: bool = False,
    ) -> Assessment:
        """Decide a payment once, atomically: under a transaction-scoped lock on its user
        and its card, read what is known before it, apply ``rules`` and record the
        observation with the decision. Two payments of one card or one user are thus
        never judged on the same history (a burst cannot slip past the velocity limit
        together). An approved card-present payment becomes the last known location of
        its user and card in the same transaction. When a decision is already recorded
        (a redelivery), it stands.

        History is in processing order: whatever was decided before this payment within
        the window, whenever it was created. Round trips: lock, read, write (plus the
        locations of a card-present purchase)."""
        (answer,) = await self.decide_many(
            [facts],
            lambda _facts, history: rules(history),
            window_s=window_s,
            amounts_max=amounts_max,
            card_per_user=card_per_user,
            check_funding=check_funding,
        )
        if isinstance(answer, DecisionDeferred):
            raise answer
        return answer

    async def decide_many(
        self,
        batch: Sequence[PaymentFacts],
        rules: Callable[[PaymentFacts, History], Assessment],
        *,
        window_s: int,
        amounts_max: int,
        card_per_user: bool = False,
        check_funding: bool = False,
    ) -> list[Assessment | DecisionDeferred]:
        """:meth:`decide` for a batch of payments, in one transaction: every subject of
        the batch locked at once (sorted), then each payment decided in batch order on
        the history before it — the earlier payments of the batch included, as if each
        had been decided alone (the transaction sees its own writes; locations stored by
        the batch are read from the batch, not from the cache). A payment the rules
        cannot decide yet answers DecisionDeferred and records nothing. One commit (one
        fsync) for the batch instead of one per payment."""
        subjects = {
            subject
            for facts in batch
            for subject in location_subjects(
                facts.user_id, facts.card_fingerprint, card_per_user=card_per_user
            )
        }
        answers: list[Assessment | DecisionDeferred] = []
        stored: dict[str, Location] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_SQL, sorted(f"risk:{s}" for s in subjects))
            for facts in batch:
                answers.append(
                    await self._decide_locked(
                        conn,
                        facts,
                        rules,
                        window_s=window_s,
                        amounts_max=amounts_max,
                        card_per_user=card_per_user,
                        check_funding=check_funding,
                        stored=stored,
                    )
                )
        for subject, location in stored.items():
            await self._cache(subject, location)
        return answers

    async def _decide_locked(
        self,
        conn: asyncpg.Connection,
        facts: PaymentFacts,
        rules: Callable[[PaymentFacts, History], Assessment],
        *,
        window_s: int,
        amounts_max: int,
        card_per_user: bool,
        check_funding: bool,
        stored: dict[str, Location],
    ) -> Assessment | DecisionDeferred:
        """One payment of a batch, its subjects locked by the caller."""
        pid, uid = uuid.UUID(facts.payment_id), uuid.UUID(facts.user_id)
        subjects = location_subjects(
            facts.user_id, facts.card_fingerprint, card_per_user=card_per_user
        )
        known = await conn.fetchrow(
            _KNOWN_PER_USER_SQL if card_per_user else _KNOWN_ALL_USERS_SQL,
            pid,
            uid,
            facts.at - timedelta(seconds=window_s),
            facts.card_fingerprint,
            facts.currency_code,
            amounts_max,
        )
        if known["decision"] is not None:
            return _assessment(known["decision"], known["findings"])
        last: list[Location | None] = [None, None]
        if facts.location is not None:
            for index, subject in enumerate(subjects):
                last[index] = stored.get(subject) or await self.last_location(conn, subject)
        funding = Funding.NOT_CHECKED
        if check_funding and facts.kind == "WITHDRAWAL" and facts.card_fingerprint:
            funding = await self._funding(conn, facts)
        try:
            assessment = rules(
                facts,
                History(
                    last_user_location=last[0],
                    last_card_location=last[1],
                    recent_card_payments=known["by_card"],
                    recent_user_payments=known["by_user"],
                    recent_amounts=list(known["amounts"]),
                    funding=funding,
                ),
            )
        except DecisionDeferred as deferred:
            return deferred
        await conn.execute(
            _RECORD_SQL,
            pid,
            uid,
            facts.card_fingerprint,
            facts.currency_code,
            facts.amount_minor,
            facts.at,
            assessment.decision.value,
            assessment.rule,
            assessment.explanation,
            _findings_json(assessment),
        )
        if (
            facts.kind == "DEPOSIT"
            and facts.card_fingerprint
            and assessment.decision is not Decision.DENY
        ):
            await conn.execute(_DEPOSIT_SQL, pid, uid, facts.card_fingerprint, facts.at)
        if assessment.decision is Decision.APPROVE and facts.location is not None:
            for subject in subjects:
                if await self._store_location(conn, subject, facts.location):
                    stored[subject] = facts.location
        return assessment

    async def settle_deposits(self, outcomes: Sequence[tuple[str, bool, datetime]]) -> None:
        """:meth:`settle_deposit` for many deposits (payment id, completed, when) in one
        statement; a deposit named twice counts by its last outcome."""
        last = {payment_id: (completed, at) for payment_id, completed, at in outcomes}
        if not last:
            return
        await self._pool.execute(
            _SETTLE_MANY_SQL,
            [uuid.UUID(payment_id) for payment_id in last],
            ["COMPLETED" if completed else "FAILED" for completed, _ in last.values()],
            [at for _, at in last.values()],
        )

    async def _funding(self, conn: asyncpg.Connection, facts: PaymentFacts) -> Funding:
        row = await conn.fetchrow(
            _FUNDING_SQL,
            uuid.UUID(facts.user_id),
            facts.card_fingerprint,
            facts.at - timedelta(seconds=DEPOSIT_IN_FLIGHT_MAX_S),
        )
        if row["funded"]:
            return Funding.FUNDED
        return Funding.IN_FLIGHT if row["in_flight"] else Funding.NEVER

    async def settle_deposit(self, payment_id: str, *, completed: bool, at: datetime) -> None:
        """Learn a card deposit's outcome: COMPLETED makes its card one that funded its
        user's wallet. Idempotent: a redelivered event changes nothing."""
        await self.settle_deposits([(payment_id, completed, at)])

    async def card_fingerprint(self, payment_id: str) -> str:
        """The card fingerprint observed with a payment ("" when unknown or walleted)."""
        found = await self._pool.fetchval(
            "SELECT card_fingerprint FROM consumer.risk_observations WHERE payment_id = $1",
            uuid.UUID(payment_id),
        )
        return found or ""

    # ------------------------------------------------------------------ locations
    async def last_location(self, conn: asyncpg.Connection, subject: str) -> Location | None:
        """Cache-aside: Redis first; on a miss (or Redis down) PostgreSQL, then fill Redis."""
        key = _CACHE_PREFIX + subject
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            LOCATION_CACHE.labels("redis_down").inc()
            log.debug("location cache unavailable", extra={"error": type(exc).__name__})
            return await self._location_from_db(conn, subject)
        if raw is not None:
            LOCATION_CACHE.labels("hit").inc()
            return _decode(raw)
        LOCATION_CACHE.labels("miss").inc()
        location = await self._location_from_db(conn, subject)
        if location is not None:
            await self._cache(subject, location)
        return location

    async def _location_from_db(self, conn: asyncpg.Connection, subject: str) -> Location | None:
        row = await conn.fetchrow(
            "SELECT latitude, longitude, city, country_code, payment_id, seen_time"
            " FROM consumer.risk_locations WHERE subject = $1",
            subject,
        )
        if row is None:
            return None
        return Location(
            latitude=row["latitude"],
            longitude=row["longitude"],
            at=row["seen_time"],
            city=row["city"],
            country_code=row["country_code"],
            payment_id=str(row["payment_id"]),
        )

    async def _cache(self, subject: str, location: Location) -> None:
        try:
            await self._redis.set(_CACHE_PREFIX + subject, _encode(location), ex=self._cache_ttl_s)
        except (RedisError, OSError) as exc:
            log.debug("location cache unavailable", extra={"error": type(exc).__name__})

    async def remember_location(self, subject: str, location: Location) -> None:
        """Keep the newest location per subject in PostgreSQL, then copy it to Redis."""
        async with self._pool.acquire() as conn:
            newer = await self._store_location(conn, subject, location)
        if newer:
            await self._cache(subject, location)

    async def _store_location(
        self, conn: asyncpg.Connection, subject: str, location: Location
    ) -> bool:
        """Upsert the subject's location unless a newer one is known; True if stored."""
        row = await conn.fetchrow(
            "INSERT INTO consumer.risk_locations AS l (subject, latitude, longitude, city,"
            " country_code, payment_id, seen_time) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (subject) DO UPDATE SET latitude = EXCLUDED.latitude,"
            " longitude = EXCLUDED.longitude, city = EXCLUDED.city,"
            " country_code = EXCLUDED.country_code, payment_id = EXCLUDED.payment_id,"
            " seen_time = EXCLUDED.seen_time WHERE l.seen_time < EXCLUDED.seen_time"
            " RETURNING true",
            subject,
            location.latitude,
            location.longitude,
            location.city,
            location.country_code,
            uuid.UUID(location.payment_id),
            location.at,
        )
        return row is not None
