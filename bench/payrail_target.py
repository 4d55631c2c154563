"""The system under test: users with their own tokens, CreatePayment through the edge.

Every request is a USD DEPOSIT of 10.00 with a fresh idempotency key, sent with one of
the users' tokens over one of several channels (round robin), through the public
gateway_svc exactly as a client would call it. Each user pays with a card of their own,
as real customers do: user 0 with the approving test card 4242 4242 4242 4242, the
others with Luhn-valid Visa numbers 424242..., which the sandbox approves like any card
that is not one of its decline cards. (One card shared by every user would make each
per-card velocity check count the whole run, which no real traffic does.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from bench.channels import channel_options, code_name
from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from payrail.payments.v1 import payments_pb2, payments_pb2_grpc

PASSWORD = "bench-passphrase-payrail-load"  # noqa: S105 - a throwaway test account
CARD = "4242424242424242"

# Called with (payment_id, accepted_at) for every accepted payment (loop clock).
OnAccepted = Callable[[str, float], None]


@dataclass
class BenchUser:
    email: str
    user_id: str
    access_token: str
    refresh_token: str
    token_time_s: float  # monotonic time the access token was issued
    card: str = CARD

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # doubled: it is second from the right once the check is added
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def card_for_user(index: int) -> str:
    """User 0: the approving test card; user n: a Luhn-valid Visa 424242 + n."""
    if index == 0:
        return CARD
    payload = f"424242{index:09d}"
    return payload + luhn_check_digit(payload)


def create_request(idempotency_key: str, card: str = CARD) -> payments_pb2.CreatePaymentRequest:
    return payments_pb2.CreatePaymentRequest(
        idempotency_key=idempotency_key,
        kind=payments_pb2.PAYMENT_KIND_DEPOSIT,
        amount=payments_pb2.Money(currency_code="USD", amount_minor=1000),
        card=payments_pb2.CardInput(
            number=card, exp_month=12, exp_year=2030, cvc="123", holder_name="Bench User"
        ),
        description="payrail bench",
    )


class PayrailTarget:
    """CreatePayment against the public edge (gateway_svc)."""

    def __init__(self, target: str, *, channels: int, timeout_s: float) -> None:
        self._channels = [
            grpc.aio.insecure_channel(target, options=channel_options(i)) for i in range(channels)
        ]
        self._payments = [payments_pb2_grpc.PaymentServiceStub(ch) for ch in self._channels]
        self._auth = auth_pb2_grpc.AuthServiceStub(self._channels[0])
        self._timeout_s = timeout_s
        self.users: list[BenchUser] = []
        self.on_accepted: OnAccepted | None = None
        self._run_id = uuid.uuid4().hex[:8]

    async def close(self) -> None:
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close()

    # ------------------------------------------------------------------ users

    async def create_users(self, count: int, *, concurrency: int = 4) -> None:
        """Register and log in ``count`` fresh users, printing progress on stderr."""
        slots = asyncio.Semaphore(concurrency)
        done = 0
        started = time.monotonic()
        tty = sys.stderr.isatty()
        head, tail = ("\r", "") if tty else ("", "\n")

        async def one(n: int) -> BenchUser:
            nonlocal done
            email = f"bench-{self._run_id}-{n}@example.com"
            async with slots:
                registered = await self._auth.Register(
                    auth_pb2.RegisterRequest(
                        email=email, password=PASSWORD, first_name="Bench", last_name="User"
                    ),
                    timeout=30,
                )
                tokens = await self._auth.Login(
                    auth_pb2.LoginRequest(email=email, password=PASSWORD), timeout=30
                )
            done += 1
            if tty or done == count or done % 50 == 0:
                sys.stderr.write(
                    f"{head}  users: {done}/{count} registered and logged in"
                    f" ({time.monotonic() - started:.1f} s){tail}"
                )
                sys.stderr.flush()
            return BenchUser(
                email,
                registered.user_id,
                tokens.access_token,
                tokens.refresh_token,
                time.monotonic(),
                card_for_user(n),
            )

        self.users = list(await asyncio.gather(*(one(n) for n in range(count))))
        if tty:
            sys.stderr.write("\n")

    async def refresh_tokens(self, older_than_s: float) -> int:
        """Rotate the tokens older than ``older_than_s`` (access tokens live 15 minutes)."""
        now = time.monotonic()
        stale = [u for u in self.users if now - u.token_time_s > older_than_s]
        for user in stale:
            reply = await self._auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=user.refresh_token), timeout=10
            )
            user.access_token = reply.access_token
            user.refresh_token = reply.refresh_token
            user.token_time_s = time.monotonic()
        return len(stale)

    # ------------------------------------------------------------------ load

    async def send(self, index: int) -> str:
        user = self.users[index % len(self.users)]
        stub = self._payments[index % len(self._payments)]
        request = create_request(f"bench-{self._run_id}-{index}-{uuid.uuid4().hex[:8]}", user.card)
        try:
            reply = await stub.CreatePayment(
                request, metadata=user.metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return code_name(exc)
        if self.on_accepted is not None:
            self.on_accepted(reply.payment.payment_id, asyncio.get_running_loop().time())
        return "OK"
