"""What the chaos client will ask for: a pure function of the seed.

Each user first funds a wallet in every currency with an approving card, then the rest
is a mix of deposits, withdrawals, card purchases and wallet purchases in USD and JPY
(the JSON sandbox) and EUR and GBP (the SOAP sandbox), paid with approving, declining
and never-answering test cards. About one request in ten is retried by the client with
the same idempotency key: half as two concurrent calls, half after a client-side timeout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The sandbox gateways' test cards (sandbox_gateways/gateway.py), by what they do.
CARDS = {
    "approve": "4242424242424242",
    "declined": "4000000000000002",
    "insufficient": "4000000000009995",
    "never": "4000000000000119",
}
# A CVC looked for in card-data contexts by the scans (chaos/scan.py).
CVC = "731"
# What each card (or the wallet) must end as, whatever faults happened: (status, code).
EXPECTED = {
    "approve": ("COMPLETED", ""),
    "declined": ("FAILED", "card_declined"),
    "insufficient": ("FAILED", "insufficient_funds"),
    "never": ("FAILED", "gateway_timeout"),
    "wallet": ("COMPLETED", ""),
}
CURRENCIES = ("USD", "JPY", "EUR", "GBP")
KINDS = ("DEPOSIT", "WITHDRAWAL", "PURCHASE")
# One merchant for everyone: purchases of a shared test card from several places would
# (rightly) trip the impossible-travel rule, and outcomes must depend on the card alone.
MERCHANT = {
    "merchant_id": "chaos-cafe",
    "name": "Chaos Cafe",
    "category_code": "5812",
    "country_code": "DE",
    "city": "Berlin",
    "latitude": 52.52,
    "longitude": 13.405,
}


@dataclass(frozen=True)
class Op:
    index: int
    user: int
    kind: str  # DEPOSIT, WITHDRAWAL, PURCHASE
    currency: str
    amount_minor: int
    payer: str  # a CARDS label, or "wallet" for a wallet-funded purchase
    retry: str  # "none", "concurrent" (two calls at once) or "timeout" (short deadline, resend)

    @property
    def expected(self) -> tuple[str, str]:
        return EXPECTED[self.payer]


def _payer(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.80:
        return "approve"
    if roll < 0.88:
        return "declined"
    if roll < 0.96:
        return "insufficient"
    return "never"


def _retry(rng: random.Random, retry_share: float) -> str:
    roll = rng.random()
    if roll < retry_share / 2:
        return "concurrent"
    if roll < retry_share:
        return "timeout"
    return "none"


def make_plan(seed: int, payments: int, users: int, retry_share: float = 0.10) -> list[Op]:
    rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - a replayable plan
    ops: list[Op] = []
    # Funding first: one generous deposit per user and currency, approving card.
    for user in range(users):
        for currency in CURRENCIES:
            if len(ops) >= payments:
                break
            amount = 5_000_000 if currency == "JPY" else 500_000
            ops.append(
                Op(len(ops), user, "DEPOSIT", currency, amount, "approve", _retry(rng, retry_share))
            )
    while len(ops) < payments:
        roll = rng.random()
        currency = rng.choice(CURRENCIES)
        amount = rng.randrange(1, 50) * 100  # multiples of 100: never equal to the CVC
        if roll < 0.30:
            kind, payer = "DEPOSIT", _payer(rng)
        elif roll < 0.50:
            kind, payer = "WITHDRAWAL", _payer(rng)
        elif roll < 0.80:
            kind, payer = "PURCHASE", _payer(rng)
        else:
            kind, payer = "PURCHASE", "wallet"
        ops.append(
            Op(
                len(ops),
                rng.randrange(users),
                kind,
                currency,
                amount,
                payer,
                _retry(rng, retry_share),
            )
        )
    return ops
