"""A well-behaved client of the public API, with a memory of everything it was told.

It registers and logs in users, sends CreatePayment with an idempotency key and retries
an answer that invites it (RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, and the
INTERNAL/UNKNOWN a crash can produce) with the same key, bounded, with backoff; it logs
in again on UNAUTHENTICATED. Every answer is kept in the op's record; the records are
written as JSON lines (no card number or CVC in them: the card is named by its label).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chaos.plan import CARDS, CVC, MERCHANT, Op
from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc

PASSWORD = "chaos-passphrase-payrail-faults"  # noqa: S105 - throwaway test accounts
CALL_TIMEOUT_S = 10.0
RETRY_BUDGET_S = 180.0  # a client gives up on a key after this long
RETRY_ATTEMPTS_MAX = 60
KIND_PB = {
    "DEPOSIT": pb.PAYMENT_KIND_DEPOSIT,
    "WITHDRAWAL": pb.PAYMENT_KIND_WITHDRAWAL,
    "PURCHASE": pb.PAYMENT_KIND_PURCHASE,
}
RETRYABLE = {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"}


@dataclass
class User:
    index: int
    email: str
    user_id: str = ""
    token: str = ""
    relogins: int = 0

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class OpRecord:
    op: Op
    key: str
    user_id: str
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def payment_ids(self) -> set[str]:
        return {a["payment_id"] for a in self.answers if a["code"] == "OK"}

    @property
    def accepted(self) -> bool:
        return bool(self.payment_ids)

    def as_json(self) -> dict[str, Any]:
        op = self.op
        return {
            "index": op.index,
            "user": op.user,
            "user_id": self.user_id,
            "idempotency_key": self.key,
            "kind": op.kind,
            "currency": op.currency,
            "amount_minor": op.amount_minor,
            "payer": op.payer,
            "retry": op.retry,
            "answers": self.answers,
        }


def _code(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)


def _reason(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a google.rpc status, if any."""
    try:
        status = rpc_status.from_call(exc)
    except Exception:
        return ""
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def create_request(op: Op, key: str) -> pb.CreatePaymentRequest:
    request = pb.CreatePaymentRequest(
        idempotency_key=key,
        kind=KIND_PB[op.kind],
        amount=pb.Money(currency_code=op.currency, amount_minor=op.amount_minor),
        description=f"chaos op {op.index}",
    )
    if op.payer == "wallet":
        request.funding_source = pb.FUNDING_SOURCE_WALLET
    else:
        request.card.CopyFrom(
            pb.CardInput(number=CARDS[op.payer], exp_month=12, exp_year=2031, cvc=CVC)
        )
    if op.kind == "PURCHASE":
        request.merchant.CopyFrom(pb.Merchant(**MERCHANT))  # type: ignore[arg-type]
    return request


class Client:
    def __init__(self, target: str, run_id: str, channels: int = 8) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        self._channels = [
            grpc.aio.insecure_channel(
                target, options=[*options, ("grpc.primary_user_agent", f"chaos/{i}")]
            )
            for i in range(channels)
        ]
        self._payments = [payments_pb2_grpc.PaymentServiceStub(c) for c in self._channels]
        self._auth = auth_pb2_grpc.AuthServiceStub(self._channels[0])
        self.run_id = run_id
        self.users: list[User] = []
        self._login_locks: dict[int, asyncio.Lock] = {}
        self.started = time.time()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def stub(self, n: int) -> payments_pb2_grpc.PaymentServiceStub:
        return self._payments[n % len(self._payments)]

    # ------------------------------------------------------------------ users

    async def _with_retries(self, what: str, call: Any) -> Any:
        """Register/Login through faults: retry what a crash or restart can answer."""
        delay = 0.5
        deadline = time.monotonic() + RETRY_BUDGET_S
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if _code(exc) not in RETRYABLE or time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: {_code(exc)} {exc.details()}") from exc
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
            delay = min(5.0, delay * 2)

    async def login(self, user: User) -> None:
        reply = await self._with_retries(
            f"login {user.email}",
            lambda: self._auth.Login(
                auth_pb2.LoginRequest(email=user.email, password=PASSWORD), timeout=CALL_TIMEOUT_S
            ),
        )
        user.token = reply.access_token

    async def create_users(self, count: int, concurrency: int = 6) -> None:
        slots = asyncio.Semaphore(concurrency)

        async def one(n: int) -> User:
            user = User(n, f"chaos-{self.run_id}-{n}@example.com")
            request = auth_pb2.RegisterRequest(
                email=user.email, password=PASSWORD, first_name="Chaos", last_name=f"User{n}"
            )
            async with slots:
                try:
                    reply = await self._with_retries(
                        f"register {user.email}",
                        lambda: self._auth.Register(request, timeout=CALL_TIMEOUT_S),
                    )
                    user.user_id = reply.user_id
                except RuntimeError as exc:
                    if "ALREADY_EXISTS" not in str(exc):  # a retried Register that had won
                        raise
                await self.login(user)
                if not user.user_id:
                    profile = await self._with_retries(
                        f"profile {user.email}",
                        lambda: self._auth.GetProfile(
                            auth_pb2.GetProfileRequest(), metadata=user.metadata, timeout=10
                        ),
                    )
                    user.user_id = profile.user_id
            return user

        self.users = list(await asyncio.gather(*(one(n) for n in range(count))))

    async def relogin(self, user: User, stale_token: str) -> None:
        lock = self._login_locks.setdefault(user.index, asyncio.Lock())
        async with lock:
            if user.token == stale_token:  # nobody else has logged in meanwhile
                user.relogins += 1
                await self.login(user)

    # ------------------------------------------------------------------ payments

    async def _attempt(
        self, rec: OpRecord, request: pb.CreatePaymentRequest, timeout_s: float
    ) -> str:
        user = self.users[rec.op.user]
        token = user.token
        answer: dict[str, Any] = {"t": round(time.time() - self.started, 3)}
        try:
            reply = await self.stub(rec.op.index).CreatePayment(
                request, metadata=user.metadata, timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            answer |= {"code": _code(exc), "reason": _reason(exc)}
            rec.answers.append(answer)
            if answer["code"] == "UNAUTHENTICATED":
                await self.relogin(user, token)
            return str(answer["code"])
        payment = reply.payment
        answer |= {
            "code": "OK",
            "payment_id": payment.payment_id,
            "status": pb.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_"),
        }
        if not rec.user_id:
            rec.user_id = user.user_id
        rec.answers.append(answer)
        return "OK"

    async def send(self, rec: OpRecord, request: pb.CreatePaymentRequest) -> None:
        """One logical request: retried with the same key while the answer invites it."""
        delay = 0.2
        deadline = time.monotonic() + RETRY_BUDGET_S
        for _ in range(RETRY_ATTEMPTS_MAX):
            code = await self._attempt(rec, request, CALL_TIMEOUT_S)
            if code not in RETRYABLE | {"UNAUTHENTICATED"} or time.monotonic() > deadline:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
            delay = min(5.0, delay * 2)

    async def execute(self, op: Op) -> OpRecord:
        key = f"chaos-{self.run_id}-{op.index}-{uuid.uuid4().hex[:6]}"
        rec = OpRecord(op, key, self.users[op.user].user_id)
        request = create_request(op, key)
        if op.retry == "concurrent":
            await asyncio.gather(self.send(rec, request), self.send(rec, request))
        elif op.retry == "timeout":
            # A deadline too short for an answer; the call may or may not have landed.
            await self._attempt(rec, request, random.uniform(0.005, 0.2))  # noqa: S311 - not a secret
            await self.send(rec, request)
        else:
            await self.send(rec, request)
        return rec

    async def list_payments(self, user: User) -> dict[str, pb.Payment]:
        """Every payment of the user, as the public API shows it now."""
        found: dict[str, pb.Payment] = {}
        token = ""
        while True:
            page = pb.ListPaymentsRequest(page_size=100, page_token=token)
            reply = await self._with_retries(
                f"list {user.email}",
                lambda page=page: self.stub(user.index).ListPayments(
                    page, metadata=user.metadata, timeout=CALL_TIMEOUT_S
                ),
            )
            for payment in reply.payments:
                found[payment.payment_id] = payment
            token = reply.next_page_token
            if not token:
                return found
