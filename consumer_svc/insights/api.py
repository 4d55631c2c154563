"""InsightsService and BenefitCatalogService: protobuf <-> the store, and errors -> gRPC.

Both are authenticated by the bearer token gateway_svc forwards (verified here again with
the public keys); InsightsService answers only about the caller, BenefitCatalogService
only to callers whose token carries the admin role.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from consumer_svc.insights.domain import (
    BRANDS,
    WILDCARD,
    Benefit,
    Card,
    InsightsError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Tier,
    invalid,
    page_size,
    tier_standing,
    validate_benefit,
)
from consumer_svc.insights.store import InsightsStore, StandingCursor, TipCursor
from payrail.insights.v1 import insights_pb2 as ipb
from payrail.insights.v1 import insights_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail_common.authn import current_principal
from payrail_common.fields import is_storable_text, storable_text_violation
from payrail_common.pagetokens import NOT_ISSUED, CursorValue, PageTokenError, PageTokens
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import INTERNAL_MESSAGE, abort, error_boundary

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"


async def abort_for(context: Any, error: InsightsError) -> None:
    if isinstance(error, InvalidArgument):
        await abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request has invalid fields",
            violations=error.violations,
            reason=error.reason,
        )
    if isinstance(error, NotFound):
        await abort(context, grpc.StatusCode.NOT_FOUND, str(error), reason=error.reason)
    if isinstance(error, PermissionDenied):
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "the benefit catalog is managed by administrators only",
            reason=error.reason,
        )
    log.error("unmapped domain error", extra={"error": type(error).__name__})
    await abort(context, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, reason=Reason.INTERNAL_ERROR)


mapped_errors = error_boundary(
    InsightsError,
    abort_for,  # type: ignore[arg-type]
    unavailable_message="insights are temporarily unavailable; retry with backoff",
)


# ---------------------------------------------------------------- page tokens
# Signed by payrail_common.pagetokens and bound to the caller and the filter; the
# cursor's values are still checked one by one (they were issued here, but nothing that
# reaches a query is taken on trust).

STANDINGS_SCOPE = "payrail.insights.v1.InsightsService/ListLoyaltyStandings"
TIPS_SCOPE = "payrail.insights.v1.InsightsService/ListBenefitTips"
# Longest text a cursor may carry (merchant ids are at most 64 characters).
_CURSOR_TEXT_MAX_CHARS = 256
_BIGINT_MAX = 2**63 - 1


def _not_issued() -> InvalidArgument:
    return invalid("page_token", NOT_ISSUED)


def _open(
    tokens: PageTokens, token: str, scope: str, filters: tuple[str, ...]
) -> tuple[CursorValue, ...]:
    try:
        return tokens.open(
            token, scope=scope, user_id=current_principal().user_id, filters=filters, arity=2
        )
    except PageTokenError as exc:
        raise invalid("page_token", str(exc)) from None


def _cursor_text(value: Any) -> str:
    """A text value of a cursor, only if PostgreSQL can compare with it."""
    if not isinstance(value, str) or len(value) > _CURSOR_TEXT_MAX_CHARS:
        raise _not_issued()
    if not is_storable_text(value):
        raise _not_issued()
    return value


def standing_cursor(
    tokens: PageTokens, request: ipb.ListLoyaltyStandingsRequest
) -> StandingCursor | None:
    """The (visits, merchant_id) a page token continues after, for this caller and
    merchant_id filter only."""
    if not request.page_token:
        return None
    visits, merchant_id = _open(tokens, request.page_token, STANDINGS_SCOPE, (request.merchant_id,))
    # bool is an int in Python; a visit count is a non-negative bigint.
    if type(visits) is not int or not 0 <= visits <= _BIGINT_MAX:
        raise _not_issued()
    return visits, _cursor_text(merchant_id)


def standing_token(
    tokens: PageTokens, request: ipb.ListLoyaltyStandingsRequest, visits: int, merchant_id: str
) -> str:
    return tokens.issue(
        scope=STANDINGS_SCOPE,
        user_id=current_principal().user_id,
        filters=(request.merchant_id,),
        cursor=(visits, merchant_id),
    )


def tip_cursor(tokens: PageTokens, request: ipb.ListBenefitTipsRequest) -> TipCursor | None:
    """The (create_time, tip_id) a page token continues after, exactly as issued: an
    aware ISO 8601 time within the calendar and a canonical UUID."""
    if not request.page_token:
        return None
    when_value, id_value = _open(tokens, request.page_token, TIPS_SCOPE, ())
    when_text, tip_id = _cursor_text(when_value), _cursor_text(id_value)
    try:
        when = datetime.fromisoformat(when_text)
        # In UTC, as the database compares it; the extremes of the calendar overflow.
        when.astimezone(UTC)
        canonical_id = _uuid(tip_id)
    except (ValueError, OverflowError):
        raise _not_issued() from None
    if when.tzinfo is None or when.isoformat() != when_text or canonical_id != tip_id:
        raise _not_issued()
    return when, tip_id


def tip_token(tokens: PageTokens, create_time: datetime, tip_id: str) -> str:
    return tokens.issue(
        scope=TIPS_SCOPE,
        user_id=current_principal().user_id,
        filters=(),
        cursor=(create_time.isoformat(), tip_id),
    )


def _uuid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


# ---------------------------------------------------------------- mapping


def _timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _brand_pb(brand: str) -> Any:
    """The CardBrand enum value (an int; the stubs type enum fields narrowly)."""
    return pb.CardBrand.Value(f"CARD_BRAND_{brand if brand in BRANDS else 'UNSPECIFIED'}")


def _brand_from_pb(brand: int) -> str:
    name = pb.CardBrand.Name(brand) if brand in pb.CardBrand.values() else ""
    return name.removeprefix("CARD_BRAND_") if brand else ""


def _card_pb(card: Card) -> ipb.CardReference:
    return ipb.CardReference(
        brand=_brand_pb(card.brand), masked_number=card.masked_number, last4=card.last4
    )


def _reward_kind_pb(kind: str) -> Any:
    return ipb.RewardKind.Value(f"REWARD_KIND_{kind}")


def benefit_to_pb(benefit: Benefit) -> ipb.Benefit:
    return ipb.Benefit(
        brand=_brand_pb(benefit.brand),
        category_code=benefit.category_code,
        reward_kind=_reward_kind_pb(benefit.reward_kind),
        rate_bps=benefit.rate_bps,
        description=benefit.description,
        update_time=_timestamp(benefit.update_time),
    )


def benefit_from_pb(message: ipb.Benefit) -> Benefit:
    kind = ipb.RewardKind.Name(message.reward_kind) if message.reward_kind in (1, 2) else ""
    benefit = Benefit(
        brand=_brand_from_pb(message.brand),
        category_code=message.category_code.strip(),
        reward_kind=kind.removeprefix("REWARD_KIND_"),
        rate_bps=message.rate_bps,
        description=message.description,
    )
    validate_benefit(benefit)
    return benefit


def _category(code: str) -> str:
    code = code.strip()
    if code != WILDCARD and not (len(code) == 4 and code.isdigit()):
        raise invalid("category_code", 'must be four digits (an MCC) or "*"')
    return code


# ---------------------------------------------------------------- servicers


class InsightsServicer(insights_pb2_grpc.InsightsServiceServicer):
    def __init__(
        self, store: InsightsStore, tiers: tuple[Tier, ...], page_tokens: PageTokens
    ) -> None:
        self._store = store
        self._tiers = tiers
        self._page_tokens = page_tokens

    async def ListLoyaltyStandings(
        self, request: ipb.ListLoyaltyStandingsRequest, context: Any
    ) -> ipb.ListLoyaltyStandingsResponse:
        async with mapped_errors(context):
            limit = page_size(request.page_size)
            bad_filter = storable_text_violation("merchant_id", request.merchant_id)
            if bad_filter is not None:
                raise InvalidArgument([bad_filter])
            rows = await self._store.list_standings(
                current_principal().user_id,
                merchant_id=request.merchant_id,
                limit=limit + 1,
                after=standing_cursor(self._page_tokens, request),
            )
        page = rows[:limit]
        standings = []
        for row in page:
            standing = tier_standing(row.visits, self._tiers)
            standings.append(
                ipb.MerchantStanding(
                    merchant_id=row.merchant_id,
                    merchant_name=row.merchant_name,
                    visits=row.visits,
                    tier=standing.tier,
                    next_tier=standing.next_tier,
                    visits_to_next_tier=standing.visits_to_next_tier,
                    last_visit_time=_timestamp(row.last_visit_time),
                )
            )
        token = ""
        if len(rows) > limit:
            last = page[-1]
            token = standing_token(self._page_tokens, request, last.visits, last.merchant_id)
        return ipb.ListLoyaltyStandingsResponse(standings=standings, next_page_token=token)

    async def ListBenefitTips(
        self, request: ipb.ListBenefitTipsRequest, context: Any
    ) -> ipb.ListBenefitTipsResponse:
        async with mapped_errors(context):
            limit = page_size(request.page_size)
            rows = await self._store.list_tips(
                current_principal().user_id,
                limit=limit + 1,
                after=tip_cursor(self._page_tokens, request),
            )
        page = rows[:limit]
        tips = [
            ipb.BenefitTip(
                tip_id=row.tip_id,
                payment_id=row.payment_id,
                merchant_id=row.merchant_id,
                merchant_name=row.merchant_name,
                category_code=row.category_code,
                used_card=_card_pb(row.used_card),
                used_rate_bps=row.used_rate_bps,
                better_card=_card_pb(row.better_card),
                better_rate_bps=row.better_rate_bps,
                extra_reward=pb.Money(
                    currency_code=row.currency_code, amount_minor=row.extra_reward_minor
                ),
                message=row.message,
                create_time=_timestamp(row.create_time),
            )
            for row in page
        ]
        token = ""
        if len(rows) > limit:
            last = page[-1]
            token = tip_token(self._page_tokens, last.create_time, last.tip_id)
        return ipb.ListBenefitTipsResponse(tips=tips, next_page_token=token)


class BenefitCatalogServicer(insights_pb2_grpc.BenefitCatalogServiceServicer):
    def __init__(self, store: InsightsStore) -> None:
        self._store = store

    @staticmethod
    def _require_admin() -> None:
        if current_principal().role != ADMIN_ROLE:
            raise PermissionDenied("admin role required")

    async def PutBenefit(
        self, request: ipb.PutBenefitRequest, context: Any
    ) -> ipb.PutBenefitResponse:
        async with mapped_errors(context):
            self._require_admin()
            if not request.HasField("benefit"):
                raise invalid("benefit", "is required")
            stored = await self._store.put_benefit(benefit_from_pb(request.benefit))
        return ipb.PutBenefitResponse(benefit=benefit_to_pb(stored))

    async def ListBenefits(
        self, request: ipb.ListBenefitsRequest, context: Any
    ) -> ipb.ListBenefitsResponse:
        async with mapped_errors(context):
            self._require_admin()
            benefits = await self._store.list_benefits()
        return ipb.ListBenefitsResponse(benefits=[benefit_to_pb(b) for b in benefits])

    async def DeleteBenefit(
        self, request: ipb.DeleteBenefitRequest, context: Any
    ) -> ipb.DeleteBenefitResponse:
        async with mapped_errors(context):
            self._require_admin()
            brand = _brand_from_pb(request.brand)
            if brand not in BRANDS:
                raise invalid("brand", "must be a card brand")
            if not await self._store.delete_benefit(brand, _category(request.category_code)):
                raise NotFound("no benefit for this brand and category")
        return ipb.DeleteBenefitResponse()
