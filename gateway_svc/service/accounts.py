"""Account use cases: register, log in, refresh, log out, read the profile.

Register tells no one whether an e-mail has an account: a taken address gets the same
answer after the same work (one password hash), nothing is written, and the account's
owner is notified instead. Both Register and Login are throttled per e-mail and per peer.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway_svc.domain.accounts import Registration, normalize_email, validate_registration
from gateway_svc.domain.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRegistration,
    RefreshTokenRefused,
    Throttled,
    Unauthenticated,
)
from gateway_svc.service.ports import (
    AccountStore,
    AttemptThrottle,
    NewAccount,
    Notifier,
    PasswordHasher,
    Profile,
    RefreshOutcome,
    SessionCache,
)
from payrail_common.fields import is_storable_text
from payrail_common.tokens import KeyRing, Principal, TokenPolicy, issue_access_token

__all__ = ["Accounts", "EmailTaken", "LoginLimits", "RegisterLimits", "TokenPair"]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_token_expires_in_s: int


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed per window before RESOURCE_EXHAUSTED."""

    per_email: int = 5
    # A shared NAT can carry many honest users: the per-peer budget is larger.
    per_peer: int = 50


@dataclass(frozen=True)
class RegisterLimits:
    """Register attempts allowed per window before RESOURCE_EXHAUSTED.

    Every valid attempt counts, whether its e-mail was new or taken: a budget spent only
    by taken e-mails would itself tell which ones are taken.
    """

    # Also bounds how many "someone tried to register" notices one owner can be sent.
    per_email: int = 5
    # Registrations are rarer than logins, even behind a shared NAT.
    per_peer: int = 30


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _email_key(email: str, prefix: str = "login-fail") -> str:
    # Hashed so Redis never holds a list of e-mail addresses.
    return f"{prefix}:email:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def _peer_key(peer: str, prefix: str = "login-fail") -> str:
    return f"{prefix}:peer:" + peer


class Accounts:
    """The use cases behind AuthService, over injected ports."""

    def __init__(
        self,
        *,
        store: AccountStore,
        sessions: SessionCache,
        throttle: AttemptThrottle,
        hasher: PasswordHasher,
        notifier: Notifier,
        ring: KeyRing,
        policy: TokenPolicy,
        session_ttl_s: int,
        limits: LoginLimits | None = None,
        register_throttle: AttemptThrottle | None = None,
        register_limits: RegisterLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._throttle = throttle
        self._hasher = hasher
        self._notifier = notifier
        self._register_throttle = register_throttle or throttle
        self._register_limits = register_limits or RegisterLimits()
        self._ring = ring
        self._policy = policy
        self._session_ttl_s = session_ttl_s
        self._limits = limits or LoginLimits()
        self._clock = clock
        self._dummy_hash: str | None = None

    async def register(self, reg: Registration, *, peer: str) -> None:
        """Create the account, or notify the owner when the e-mail is taken; the caller
        cannot tell which happened (same result, same work)."""
        # Validation reads only the request: its answer says nothing about stored accounts.
        violations = validate_registration(reg)
        if violations:
            raise InvalidRegistration(violations)
        email = normalize_email(reg.email)
        keys = (_email_key(email, "register"), _peer_key(peer, "register"))
        limits = self._register_limits
        retry_after = await self._register_throttle.blocked_for(
            ((keys[0], limits.per_email), (keys[1], limits.per_peer))
        )
        if retry_after is not None:
            raise Throttled(retry_after)
        await self._register_throttle.record_failure(keys)  # every attempt counts
        # Hashed before the e-mail is looked at, so a taken one costs the same.
        password_hash = await self._hasher.hash(reg.password)
        try:
            await self._store.create_account(
                NewAccount(
                    user_id=str(uuid.uuid4()),
                    credential_id=str(uuid.uuid4()),
                    email=email,
                    password_hash=password_hash,
                    first_name=reg.first_name.strip(),
                    last_name=reg.last_name.strip(),
                    role="customer",
                )
            )
        except EmailTaken:
            owner = await self._store.find_by_email(email)
            if owner is not None:  # None: deleted since; nobody to tell
                self._notifier.registration_attempted(owner.user_id)

    async def _burn_equal_time(self, password: str) -> None:
        """Verify against a throwaway hash so an unknown e-mail costs what a known one does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash(secrets.token_urlsafe(24))
        await self._hasher.verify(self._dummy_hash, password)

    async def login(self, email: str, password: str, *, peer: str) -> TokenPair:
        email = normalize_email(email)
        keys = (_email_key(email), _peer_key(peer))
        retry_after = await self._throttle.blocked_for(
            ((keys[0], self._limits.per_email), (keys[1], self._limits.per_peer))
        )
        if retry_after is not None:
            raise Throttled(retry_after)
        # An e-mail PostgreSQL cannot store was never registered: no look-up for it.
        account = (
            await self._store.find_by_email(email) if email and is_storable_text(email) else None
        )
        if account is None:
            await self._burn_equal_time(password)
            ok = False
        else:
            ok = await self._hasher.verify(account.password_hash, password)
        if account is None or not ok:
            await self._throttle.record_failure(keys)
            raise InvalidCredentials()
        if self._hasher.needs_rehash(account.password_hash):
            # The policy was raised since this hash was made: upgrade it now that we can.
            await self._store.update_password_hash(
                account.credential_id, await self._hasher.hash(password)
            )
        await self._throttle.clear(keys[0])
        return await self._open_session(account.user_id, account.role)

    async def _open_session(self, user_id: str, role: str) -> TokenPair:
        session_id = str(uuid.uuid4())
        refresh_token = secrets.token_urlsafe(32)
        await self._store.create_session(
            session_id=session_id,
            user_id=user_id,
            refresh_hash=_digest(refresh_token),
            expire_time=self._clock() + timedelta(seconds=self._session_ttl_s),
        )
        await self._sessions.open(session_id, user_id, self._session_ttl_s)
        return self._pair(user_id, role, session_id, refresh_token)

    def _pair(self, user_id: str, role: str, session_id: str, refresh_token: str) -> TokenPair:
        access, ttl = issue_access_token(
            self._ring,
            self._policy,
            user_id=user_id,
            role=role,
            session_id=session_id,
            now=self._clock(),
        )
        return TokenPair(access, refresh_token, ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        if not refresh_token:
            raise RefreshTokenRefused("refresh_missing")
        new_token = secrets.token_urlsafe(32)
        now = self._clock()
        result = await self._store.rotate_refresh_token(
            presented_hash=_digest(refresh_token),
            new_hash=_digest(new_token),
            now=now,
            expire_time=now + timedelta(seconds=self._session_ttl_s),
        )
        if result.outcome is RefreshOutcome.REUSED and result.session_id is not None:
            # A spent token came back: someone holds a copy. End the whole session.
            await self._sessions.close(result.session_id)
        if result.outcome is not RefreshOutcome.ROTATED:
            raise RefreshTokenRefused(f"refresh_{result.outcome.value}")
        if not (result.session_id and result.user_id and result.role):
            raise RefreshTokenRefused("refresh_incomplete")
        await self._sessions.open(result.session_id, result.user_id, self._session_ttl_s)
        return self._pair(result.user_id, result.role, result.session_id, new_token)

    async def logout(self, principal: Principal) -> None:
        await self._sessions.close(principal.session_id)
        await self._store.revoke_session(principal.session_id, "logout")

    async def profile(self, principal: Principal) -> Profile:
        profile = await self._store.get_profile(principal.user_id)
        if profile is None:
            raise Unauthenticated("user_missing")
        return profile

    async def session_is_live(self, principal: Principal) -> bool:
        return await self._sessions.is_live(principal.session_id, principal.user_id)
