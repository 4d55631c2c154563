"""The account use cases on in-memory fakes of their ports (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway_svc.domain.accounts import Registration
from gateway_svc.domain.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRegistration,
    RefreshTokenRefused,
    Throttled,
)
from gateway_svc.service.accounts import Accounts, LoginLimits, RegisterLimits
from gateway_svc.service.ports import (
    AccountRecord,
    NewAccount,
    Profile,
    RefreshOutcome,
    RefreshResult,
)
from payrail_common.tokens import (
    KeyRing,
    TokenPolicy,
    generate_key_files,
    load_private_key,
    verify_access_token,
)

PASSWORD = "a long and unusual passphrase"


class FakeStore:
    def __init__(self) -> None:
        self.accounts: dict[str, NewAccount] = {}
        self.sessions: dict[str, tuple[str, bool]] = {}  # sid -> (user_id, revoked)
        self.refresh: dict[bytes, tuple[str, bool]] = {}  # hash -> (sid, used)

    async def create_account(self, account: NewAccount) -> None:
        if account.email in self.accounts:
            raise EmailTaken()
        self.accounts[account.email] = account

    async def find_by_email(self, email: str) -> AccountRecord | None:
        a = self.accounts.get(email)
        if a is None:
            return None
        return AccountRecord(a.user_id, a.credential_id, a.role, a.password_hash)

    async def update_password_hash(self, credential_id: str, password_hash: str) -> None:
        for email, a in self.accounts.items():
            if a.credential_id == credential_id:
                self.accounts[email] = replace(a, password_hash=password_hash)

    async def get_profile(self, user_id: str) -> Profile | None:
        for a in self.accounts.values():
            if a.user_id == user_id:
                return Profile(
                    a.user_id, a.email, a.first_name, a.last_name, a.role, datetime.now(UTC)
                )
        return None

    async def create_session(
        self, *, session_id: str, user_id: str, refresh_hash: bytes, expire_time: datetime
    ) -> None:
        self.sessions[session_id] = (user_id, False)
        self.refresh[refresh_hash] = (session_id, False)

    async def rotate_refresh_token(
        self, *, presented_hash: bytes, new_hash: bytes, now: datetime, expire_time: datetime
    ) -> RefreshResult:
        if presented_hash not in self.refresh:
            return RefreshResult(RefreshOutcome.UNKNOWN)
        sid, used = self.refresh[presented_hash]
        user_id, revoked = self.sessions[sid]
        if revoked:
            return RefreshResult(RefreshOutcome.REVOKED, sid)
        if used:
            self.sessions[sid] = (user_id, True)
            return RefreshResult(RefreshOutcome.REUSED, sid)
        self.refresh[presented_hash] = (sid, True)
        self.refresh[new_hash] = (sid, False)
        return RefreshResult(RefreshOutcome.ROTATED, sid, user_id, "customer")

    async def revoke_session(self, session_id: str, reason: str) -> None:
        self.sessions[session_id] = (self.sessions[session_id][0], True)


class FakeSessions:
    def __init__(self) -> None:
        self.live: dict[str, str] = {}

    async def open(self, session_id: str, user_id: str, ttl_s: int) -> None:
        self.live[session_id] = user_id

    async def is_live(self, session_id: str, user_id: str) -> bool:
        return self.live.get(session_id) == user_id

    async def close(self, session_id: str) -> None:
        self.live.pop(session_id, None)


class FakeThrottle:
    def __init__(self) -> None:
        self.failures: dict[str, int] = {}

    async def blocked_for(self, limits: Sequence[tuple[str, int]]) -> float | None:
        over = [k for k, limit in limits if self.failures.get(k, 0) >= limit]
        return 60.0 if over else None

    async def record_failure(self, keys: Sequence[str]) -> None:
        for k in keys:
            self.failures[k] = self.failures.get(k, 0) + 1

    async def clear(self, key: str) -> None:
        self.failures.pop(key, None)


class FakeNotifier:
    def __init__(self) -> None:
        self.registration_attempts: list[str] = []

    def registration_attempted(self, user_id: str) -> None:
        self.registration_attempts.append(user_id)


class FakeHasher:
    """Counts verifications so the unknown-e-mail path can be seen to do the same work."""

    def __init__(self, cost: int = 1) -> None:
        self.cost = cost
        self.verifications = 0
        self.hashes = 0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return f"h{self.cost}:{password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return password_hash.split(":", 1)[1] == password

    def needs_rehash(self, password_hash: str) -> bool:
        return not password_hash.startswith(f"h{self.cost}:")


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    key = load_private_key(generate_key_files(tmp_path, "k1")[0])
    return KeyRing(verifying={}, signing={"k1": key}, active_kid="k1")


def make(
    ring: KeyRing, hasher: FakeHasher | None = None, notifier: FakeNotifier | None = None
) -> tuple[Accounts, FakeStore]:
    store = FakeStore()
    accounts = Accounts(
        store=store,
        sessions=FakeSessions(),
        throttle=FakeThrottle(),
        hasher=hasher or FakeHasher(),
        notifier=notifier or FakeNotifier(),
        ring=ring,
        policy=TokenPolicy(),
        session_ttl_s=3600,
        limits=LoginLimits(per_email=3, per_peer=100),
        register_limits=RegisterLimits(per_email=3, per_peer=4),
    )
    return accounts, store


def registration(email: str = "ada@example.com") -> Registration:
    return Registration(email, PASSWORD, "Ada", "Lovelace")


@pytest.mark.asyncio
async def test_register_validates_before_writing(ring: KeyRing) -> None:
    accounts, store = make(ring)
    with pytest.raises(InvalidRegistration) as info:
        await accounts.register(Registration("bad", "short", "", ""), peer="p")
    assert len(info.value.violations) == 4
    assert store.accounts == {}


@pytest.mark.asyncio
async def test_login_issues_a_verifiable_token_bound_to_a_live_session(ring: KeyRing) -> None:
    accounts, store = make(ring)
    await accounts.register(registration("Ada@Example.com"), peer="p")
    user_id = store.accounts["ada@example.com"].user_id
    pair = await accounts.login("ADA@example.com", PASSWORD, peer="10.0.0.1")
    principal = verify_access_token(ring, TokenPolicy(), pair.access_token)
    assert principal.user_id == user_id
    assert await accounts.session_is_live(principal)
    await accounts.logout(principal)
    assert not await accounts.session_is_live(principal)


@pytest.mark.asyncio
async def test_unknown_email_still_runs_a_hash_verification(ring: KeyRing) -> None:
    hasher = FakeHasher()
    accounts, _ = make(ring, hasher)
    await accounts.register(registration(), peer="p")
    for email in ("ada@example.com", "nobody@example.com"):
        before = hasher.verifications
        with pytest.raises(InvalidCredentials):
            await accounts.login(email, "not the password!", peer="p")
        assert hasher.verifications == before + 1


@pytest.mark.asyncio
async def test_throttle_blocks_after_the_limit_and_success_resets_it(ring: KeyRing) -> None:
    accounts, _ = make(ring)
    await accounts.register(registration(), peer="p")
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await accounts.login("ada@example.com", "wrong wrong wrong", peer="p")
    await accounts.login("ada@example.com", PASSWORD, peer="p")  # resets the e-mail counter
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await accounts.login("ada@example.com", "wrong wrong wrong", peer="p")
    with pytest.raises(Throttled):
        await accounts.login("ada@example.com", PASSWORD, peer="p")


@pytest.mark.asyncio
async def test_rehash_on_login_when_cost_rises(ring: KeyRing) -> None:
    accounts, store = make(ring, FakeHasher(cost=1))
    await accounts.register(registration(), peer="p")
    stronger, _ = make(ring, FakeHasher(cost=2))
    stronger._store = store  # same database, stronger policy
    await stronger.login("ada@example.com", PASSWORD, peer="p")
    assert store.accounts["ada@example.com"].password_hash.startswith("h2:")


@pytest.mark.asyncio
async def test_refresh_reuse_closes_the_session(ring: KeyRing) -> None:
    accounts, _ = make(ring)
    await accounts.register(registration(), peer="p")
    first = await accounts.login("ada@example.com", PASSWORD, peer="p")
    second = await accounts.refresh(first.refresh_token)
    principal = verify_access_token(ring, TokenPolicy(), second.access_token)
    assert await accounts.session_is_live(principal)
    with pytest.raises(RefreshTokenRefused):
        await accounts.refresh(first.refresh_token)
    assert not await accounts.session_is_live(principal)
    with pytest.raises(RefreshTokenRefused):
        await accounts.refresh(second.refresh_token)
    with pytest.raises(RefreshTokenRefused):
        await accounts.refresh("")


@pytest.mark.asyncio
async def test_taken_email_answers_alike_and_notifies_the_owner(ring: KeyRing) -> None:
    hasher, notifier = FakeHasher(), FakeNotifier()
    accounts, store = make(ring, hasher, notifier)
    await accounts.register(registration(), peer="p")
    owner = store.accounts["ada@example.com"]
    assert notifier.registration_attempts == []
    before = hasher.hashes
    # No EmailTaken and nothing returned: the same answer after the same one hash.
    await accounts.register(registration("ADA@example.com"), peer="q")
    assert hasher.hashes == before + 1
    assert notifier.registration_attempts == [owner.user_id]
    assert store.accounts["ada@example.com"] == owner  # the owner's account is unchanged


@pytest.mark.asyncio
async def test_register_is_throttled_per_email_and_per_peer(ring: KeyRing) -> None:
    accounts, store = make(ring)
    for _ in range(3):  # new or taken, every attempt counts
        await accounts.register(registration(), peer="p1")
    with pytest.raises(Throttled):
        await accounts.register(registration(), peer="p2")
    await accounts.register(registration("bob@example.com"), peer="p1")
    with pytest.raises(Throttled):  # the fifth attempt from p1
        await accounts.register(registration("carol@example.com"), peer="p1")
    assert "carol@example.com" not in store.accounts
    # Invalid input is refused before the throttle and does not spend its budget.
    with pytest.raises(InvalidRegistration):
        await accounts.register(Registration("bad", "short", "", ""), peer="p3")
