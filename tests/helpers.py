"""Small client-side helpers shared by integration and e2e tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc

from payrail.auth.v1 import auth_pb2, auth_pb2_grpc

PASSWORD = "correct-horse-battery-payrail"


@dataclass(frozen=True)
class User:
    email: str
    password: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def register_and_login(channel: grpc.aio.Channel, email: str | None = None) -> User:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    email = email or unique_email()
    await stub.Register(
        auth_pb2.RegisterRequest(
            email=email, password=PASSWORD, first_name="Ada", last_name="Lovelace"
        ),
        timeout=10,
    )
    tokens = await stub.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD), timeout=10)
    # Register names no user (it answers alike for a taken e-mail): the profile does.
    profile = await stub.GetProfile(
        auth_pb2.GetProfileRequest(),
        metadata=(("authorization", f"Bearer {tokens.access_token}"),),
        timeout=10,
    )
    return User(email, PASSWORD, profile.user_id, tokens.access_token, tokens.refresh_token)
