"""Redis for payment_svc: the GetPayment cache (cache-aside) and short-lived sealed CVCs.

Redis is never the system of record here: every cache operation that fails is logged
once and skipped, so a Redis outage degrades reads to PostgreSQL instead of failing them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from payment_svc.domain.cards import CardBrand
from payment_svc.domain.money import Money
from payment_svc.domain.payment import CardView
from payment_svc.domain.status import FundingSource, PaymentKind, PaymentStatus
from payment_svc.domain.validation import Merchant
from payment_svc.service.ports import PaymentView
from payment_svc.vault import SealedCvc

log = logging.getLogger(__name__)

CACHE_RESULTS = Counter(
    "payrail_payment_cache_total", "GetPayment cache look-ups by result.", ["result"]
)
# Bumped when the cached shape changes, so old entries are simply missed.
_CACHE_VERSION = 3


def _payment_key(payment_id: str) -> str:
    return f"payment:v{_CACHE_VERSION}:{payment_id}"


def _encode(view: PaymentView) -> str:
    data = asdict(view)
    data["create_time"] = view.create_time.isoformat()
    data["update_time"] = view.update_time.isoformat()
    return json.dumps(data)


def _decode(raw: bytes | str) -> PaymentView:
    data: dict[str, Any] = json.loads(raw)
    card = data["card"]
    amount = data["amount"]
    return PaymentView(
        payment_id=data["payment_id"],
        user_id=data["user_id"],
        kind=PaymentKind(data["kind"]),
        status=PaymentStatus(data["status"]),
        funding_source=None
        if data["funding_source"] is None
        else FundingSource(data["funding_source"]),
        amount=Money(amount["currency_code"], amount["amount_minor"]),
        description=data["description"],
        card=None
        if card is None
        else CardView(
            brand=None if card["brand"] is None else CardBrand(card["brand"]),
            masked_number=card["masked_number"],
            exp_month=card["exp_month"],
            exp_year=card["exp_year"],
        ),
        merchant=None if data["merchant"] is None else Merchant(**data["merchant"]),
        failure_code=data["failure_code"],
        failure_message=data["failure_message"],
        version=data["version"],
        create_time=datetime.fromisoformat(data["create_time"]),
        update_time=datetime.fromisoformat(data["update_time"]),
        verification_reason=data["verification_reason"],
        verified=data["verified"],
        gateway_id=data["gateway_id"],
        gateway_reference=data["gateway_reference"],
        attempt=data["attempt"],
    )


# SET only when the cached copy is older (by version) or absent; atomic in Redis.
_PUT_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return 1
"""


class RedisPaymentCache:
    def __init__(self, client: Redis, *, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._put_newer = client.register_script(_PUT_NEWER)

    async def get(self, payment_id: str) -> PaymentView | None:
        try:
            raw = await self._client.get(_payment_key(payment_id))
        except RedisError as exc:
            CACHE_RESULTS.labels("error").inc()
            log.warning("payment cache unavailable", extra={"error": type(exc).__name__})
            return None
        if raw is None:
            CACHE_RESULTS.labels("miss").inc()
            return None
        CACHE_RESULTS.labels("hit").inc()
        return _decode(raw)

    async def put(self, view: PaymentView) -> None:
        """Store the view unless the cache already holds this version or a newer one.

        Both the read path (filling a miss) and every status change (writing through)
        use it, so a slow reader can never put an older state over a newer one.
        """
        try:
            await self._put_newer(
                keys=[_payment_key(view.payment_id)],
                args=[_encode(view), view.version, self._ttl_s],
            )
        except RedisError as exc:
            log.warning("payment cache unavailable", extra={"error": type(exc).__name__})

    async def put_many(self, views: Sequence[PaymentView]) -> None:
        """:meth:`put` for many payments in one round trip (a pipeline)."""
        if not views:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for view in views:
                await self._put_newer(
                    keys=[_payment_key(view.payment_id)],
                    args=[_encode(view), view.version, self._ttl_s],
                    client=pipe,
                )
            await pipe.execute()
        except RedisError as exc:
            log.warning("payment cache unavailable", extra={"error": type(exc).__name__})

    async def forget(self, payment_id: str) -> None:
        try:
            await self._client.delete(_payment_key(payment_id))
        except RedisError as exc:
            log.warning("payment cache unavailable", extra={"error": type(exc).__name__})


class RedisCvcStore:
    """``cvc:<payment id>`` -> sealed CVC (AES-GCM, bound to the payment), with a short TTL."""

    def __init__(self, client: Redis, *, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s

    async def put(self, payment_id: str, sealed: SealedCvc) -> None:
        value = json.dumps(
            {"k": sealed.key_id, "n": sealed.nonce.hex(), "c": sealed.ciphertext.hex()}
        )
        await self._client.set(f"cvc:{payment_id}", value, ex=self._ttl_s)

    async def take(self, payment_id: str) -> SealedCvc | None:
        """Read and delete (GETDEL): a CVC serves one dispatch at most. A Redis outage
        reads as "no CVC": the dispatch goes on without one."""
        try:
            raw = await self._client.getdel(f"cvc:{payment_id}")
        except RedisError as exc:
            log.warning("cvc store unavailable", extra={"error": type(exc).__name__})
            return None
        return None if raw is None else _sealed_cvc(raw)

    async def take_many(self, payment_ids: Sequence[str]) -> list[SealedCvc | None]:
        """:meth:`take` for many payments in one round trip (GETDEL each, pipelined)."""
        if not payment_ids:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            for payment_id in payment_ids:
                pipe.getdel(f"cvc:{payment_id}")
            raws = await pipe.execute()
        except RedisError as exc:
            log.warning("cvc store unavailable", extra={"error": type(exc).__name__})
            return [None for _ in payment_ids]
        return [None if raw is None else _sealed_cvc(raw) for raw in raws]


def _sealed_cvc(raw: bytes | str) -> SealedCvc:
    data = json.loads(raw)
    return SealedCvc(data["k"], bytes.fromhex(data["n"]), bytes.fromhex(data["c"]))
