"""AuthService at the edge: protobuf <-> the account use cases, nothing more."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gateway_svc.api.errors import mapped_errors
from gateway_svc.domain.accounts import Registration
from gateway_svc.service.accounts import Accounts, TokenPair
from payrail.auth.v1 import auth_pb2 as pb
from payrail.auth.v1 import auth_pb2_grpc
from payrail_common.authn import current_principal

ROLES = {"customer": pb.ROLE_CUSTOMER, "admin": pb.ROLE_ADMIN}
# Methods that need a bearer token; the others are how a caller gets one.
AUTHENTICATED_METHODS = ("Logout", "GetProfile")


def peer_host(context: Any) -> str:
    """The caller's address without the port: ``ipv4:1.2.3.4:5678`` -> ``1.2.3.4``."""
    peer = str(context.peer() or "unknown")
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]") or "unknown"
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    async def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterResponse:
        async with mapped_errors(context):
            await self._accounts.register(
                Registration(
                    email=request.email,
                    password=request.password,
                    first_name=request.first_name,
                    last_name=request.last_name,
                ),
                peer=peer_host(context),
            )
        # The same empty answer for a new and a taken e-mail (user_id stays unset).
        return pb.RegisterResponse()

    async def Login(self, request: pb.LoginRequest, context: Any) -> pb.LoginResponse:
        async with mapped_errors(context):
            pair = await self._accounts.login(
                request.email, request.password, peer=peer_host(context)
            )
        return pb.LoginResponse(**_pair_fields(pair))

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Any
    ) -> pb.RefreshTokenResponse:
        async with mapped_errors(context):
            pair = await self._accounts.refresh(request.refresh_token)
        return pb.RefreshTokenResponse(**_pair_fields(pair))

    async def Logout(self, request: pb.LogoutRequest, context: Any) -> pb.LogoutResponse:
        async with mapped_errors(context):
            await self._accounts.logout(current_principal())
        return pb.LogoutResponse()

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: Any
    ) -> pb.GetProfileResponse:
        async with mapped_errors(context):
            profile = await self._accounts.profile(current_principal())
        register_time = Timestamp()
        register_time.FromDatetime(profile.register_time)
        return pb.GetProfileResponse(
            user_id=profile.user_id,
            email=profile.email,
            first_name=profile.first_name,
            last_name=profile.last_name,
            role=ROLES.get(profile.role, pb.ROLE_UNSPECIFIED),
            register_time=register_time,
        )


def _pair_fields(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "access_token_expires_in_seconds": pair.access_token_expires_in_s,
    }
