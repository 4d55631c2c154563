"""ProcessingAdminService: the processor's risk decisions and the dead letters, for
operators (admin role), served by the insights process (it holds the consumer schema
and Kafka) and forwarded by the edge, which audits the re-drives.

Dead letters are read and re-driven with the same code as ``python -m consumer_svc.dlq``
(consumer_svc/dlq): same ids, same headers, same record in
``consumer.dead_letter_redrives``, so the CLI and the console see one history.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import grpc
from aiokafka.errors import KafkaError
from google.protobuf.timestamp_pb2 import Timestamp

from consumer_svc.dlq import kafka, store
from consumer_svc.dlq.letters import (
    DeadLetter,
    LetterId,
    Redrive,
    choose,
    matches,
    show_key,
    summary,
)
from payrail.admin.v1 import admin_pb2 as apb
from payrail.admin.v1 import admin_pb2_grpc
from payrail_common.authn import current_principal
from payrail_common.fields import FieldViolation
from payrail_common.reasons import Reason
from payrail_common.rpcerrors import abort

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
LETTERS_DEFAULT = 100
LETTERS_MAX = 500
REASON_MAX_CHARS = 500
# Kafka and PostgreSQL calls of one admin request stay within this.
TIMEOUT_S = 10.0
# Severity order of findings, strictest first.
_SEVERITY = {"DENY": 0, "REVIEW": 1, "APPROVE": 2}


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def letter_to_pb(letter: DeadLetter, redrive: Redrive | None) -> apb.DeadLetter:
    out = apb.DeadLetter(
        letter_id=str(letter.id),
        source_topic=letter.source_topic,
        error=letter.error,
        key=show_key(letter.key),
        summary=summary(letter.source_topic, letter.value),
        create_time=_ts(letter.time),
    )
    if redrive is not None:
        out.redrive_time.CopyFrom(_ts(redrive.time))
        out.redrive_count = redrive.count
        out.redrive_reason = redrive.reason
    return out


async def _invalid(context: Any, field: str, description: str) -> None:
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field} {description}",
        reason=Reason.VALIDATION_FAILED,
        violations=[FieldViolation(field, description)],
    )


async def _unavailable(context: Any, what: str) -> None:
    await abort(
        context,
        grpc.StatusCode.UNAVAILABLE,
        f"{what} is unreachable; retry with backoff",
        reason=Reason.DEPENDENCY_UNAVAILABLE,
    )


class ProcessingAdminServicer(admin_pb2_grpc.ProcessingAdminServiceServicer):
    def __init__(self, pool: asyncpg.Pool, *, kafka_bootstrap: str) -> None:
        self._pool = pool
        self._bootstrap = kafka_bootstrap

    @staticmethod
    async def _require_admin(context: Any) -> None:
        if current_principal().role != ADMIN_ROLE:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "operators only: the admin role is required",
                reason=Reason.ADMIN_ROLE_REQUIRED,
            )

    async def GetRiskDecision(
        self, request: apb.GetRiskDecisionRequest, context: Any
    ) -> apb.GetRiskDecisionResponse:
        await self._require_admin(context)
        try:
            payment_id = uuid.UUID(request.payment_id)
        except ValueError:
            await _invalid(context, "payment_id", "must be a UUID")
            raise
        row = await self._pool.fetchrow(
            "SELECT decision, rule, explanation, findings, decide_time"
            " FROM consumer.risk_decisions WHERE payment_id = $1",
            payment_id,
        )
        if row is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "no risk decision recorded for this payment",
                reason=Reason.NOT_FOUND,
            )
        raw = row["findings"]
        findings: list[dict[str, Any]] = json.loads(raw) if isinstance(raw, str) else list(raw)
        findings.sort(key=lambda f: _SEVERITY.get(str(f.get("decision", "")), 9))
        return apb.GetRiskDecisionResponse(
            decision=row["decision"],
            rule=row["rule"],
            explanation=row["explanation"],
            findings=[
                apb.RiskFinding(
                    rule=str(f.get("rule", "")),
                    decision=str(f.get("decision", "")),
                    explanation=str(f.get("explanation", "")),
                )
                for f in findings
            ],
            decide_time=_ts(row["decide_time"]),
        )

    async def ListDeadLetters(
        self, request: apb.ListDeadLettersRequest, context: Any
    ) -> apb.ListDeadLettersResponse:
        await self._require_admin(context)
        size = request.page_size or LETTERS_DEFAULT
        if not 1 <= size <= LETTERS_MAX:
            await _invalid(context, "page_size", f"must be 1 to {LETTERS_MAX}")
        topics = [request.topic] if request.topic else None
        if request.topic and not request.topic.endswith(".dlq"):
            await _invalid(context, "topic", "must be a dead-letter topic (<topic>.dlq)")
        try:
            partitions = await kafka.dlq_partitions(self._bootstrap, topics, timeout_s=TIMEOUT_S)
            letters = await kafka.read_letters(self._bootstrap, partitions, timeout_s=TIMEOUT_S)
        except kafka.DeadLetterError as exc:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(exc), reason=Reason.NOT_FOUND)
            raise
        except (KafkaError, OSError, TimeoutError):
            await _unavailable(context, "Kafka")
            raise
        wanted = [
            letter
            for letter in letters
            if matches(letter, error_contains=request.error_contains or None)
        ]
        async with self._pool.acquire() as conn:
            done = await store.redrives(conn, sorted({tp.topic for tp in partitions}))
        shown = wanted[-size:]
        return apb.ListDeadLettersResponse(
            letters=[letter_to_pb(letter, done.get(letter.id)) for letter in shown],
            total_count=len(wanted),
        )

    async def RedriveDeadLetter(
        self, request: apb.RedriveDeadLetterRequest, context: Any
    ) -> apb.RedriveDeadLetterResponse:
        await self._require_admin(context)
        try:
            letter_id = LetterId.parse(request.letter_id)
        except ValueError as exc:
            await _invalid(context, "letter_id", str(exc))
            raise
        if len(request.reason) > REASON_MAX_CHARS:
            await _invalid(context, "reason", f"must be at most {REASON_MAX_CHARS} characters")
        try:
            found = await kafka.fetch_letters(self._bootstrap, [letter_id], timeout_s=TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            await _unavailable(context, "Kafka")
            raise
        async with self._pool.acquire() as conn:
            choice = choose(
                found,
                await store.redrives(conn, [letter_id.topic]),
                ids=[letter_id],
                again=request.again,
            )
            if choice.refused:
                why = choice.refused[0][1]
                code = (
                    grpc.StatusCode.NOT_FOUND
                    if why == "no such dead letter"
                    else grpc.StatusCode.FAILED_PRECONDITION
                )
                reason = (
                    Reason.NOT_FOUND
                    if code == grpc.StatusCode.NOT_FOUND
                    else Reason.RESULT_CONFLICT
                )
                await abort(context, code, why.replace("--again", "again"), reason=reason)
            letter = choice.chosen[0]
            try:
                async with kafka.Redriver(self._bootstrap, timeout_s=TIMEOUT_S) as redriver:
                    await redriver.send(letter)
            except (KafkaError, OSError, TimeoutError):
                await _unavailable(context, "Kafka")
                raise
            done = await store.record(conn, letter, request.reason)
        log.info("dead letter re-driven", extra={"letter": str(letter.id)})
        return apb.RedriveDeadLetterResponse(letter=letter_to_pb(letter, done))
