"""The web console in a real browser (Debian's Chromium) against the module's services:
a customer registers, deposits and watches it complete live, is asked to verify an
impossible-travel purchase and passes with the code from the notification sink; form
errors land on the right field; forged and cookieless requests are refused; operators
find a payment and read its story, and customers are kept out of operator pages."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, BrowserContext, Page, expect

from payrail.admin.v1 import admin_pb2, admin_pb2_grpc
from payrail.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import ROOT, StackEnv
from tests.e2e.conftest import Running
from tests.e2e.console_browser import (
    ConsoleProcess,
    launch_browser,
    new_context,
    notification_code,
    screenshot,
    start_console,
)
from tests.helpers import PASSWORD, unique_email

pytestmark = [pytest.mark.e2e]

APPROVE = "4242 4242 4242 4242"
SEOUL = ("KR", "Seoul", "37.5665", "126.9780")
NEW_YORK = ("US", "New York", "40.7128", "-74.0060")


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    # The real risk rules (impossible travel is what the console must show), with room
    # for the handful of payments each test makes with its card.
    return {
        "PAYRAIL_RISK_VELOCITY_MAX_PER_CARD": "50",
        "PAYRAIL_RISK_VELOCITY_MAX_PER_USER": "50",
        "PAYRAIL_RISK_AMOUNT_FACTOR": "1000000",
        # Only the components this module starts (the edge, payment_svc, insights): the
        # default extra targets are the ports of `make up`, not this module's.
        "PAYRAIL_HEALTH_TARGETS": "-",
    }


@pytest.fixture(scope="module")
def console(
    services: list[Running], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    yield from start_console(services, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    try:
        yield context
    finally:
        context.close()


def luhn_complete(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)


def fresh_card() -> str:
    """A Luhn-valid Visa number of its own (the sandbox approves it)."""
    while True:
        number = luhn_complete("4" + "".join(random.choices("0123456789", k=14)))
        if not number.endswith(("0002", "9995", "0119")):
            return number


def register(page: Page, url: str, email: str | None = None) -> str:
    email = email or unique_email("console")
    page.goto(f"{url}/register")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(f"{url}/dashboard")
    return email


def log_in(page: Page, url: str, email: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/dashboard")


def fill_card(page: Page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("CVC").fill("123")


def pay(
    page: Page,
    url: str,
    *,
    kind: str,
    amount: str,
    card: str = APPROVE,
    currency: str = "USD",
    place: tuple[str, str, str, str] | None = None,
) -> str:
    """Fill and submit the payment form; the payment's id from the page it leads to."""
    page.goto(f"{url}/payments/new?kind={kind}")
    page.get_by_label("Currency").select_option(currency)
    page.get_by_label("Amount").fill(amount)
    fill_card(page, card)
    if place is not None:
        country, city, lat, lon = place
        page.get_by_label("Merchant id").fill(f"m-{city.lower().replace(' ', '-')}")
        page.get_by_label("Merchant name").fill(f"Cafe {city}")
        page.get_by_label("Category code (MCC)").fill("5812")
        page.get_by_label("Country (2 letters)").fill(country)
        page.get_by_label("City").fill(city)
        page.get_by_label("Latitude").fill(lat)
        page.get_by_label("Longitude").fill(lon)
    page.get_by_role("button", name="Submit payment").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(url)}/payments/[0-9a-f-]{{36}}$"))
    return page.url.rsplit("/", 1)[-1]


def mark_document(page: Page) -> None:
    """A flag on this document: still there later means the page never reloaded."""
    page.evaluate("document.documentElement.dataset.e2eMark = 'unchanged'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("document.documentElement.dataset.e2eMark") == "unchanged"


def test_pages_are_served_with_a_strict_policy_and_a_sealed_cookie(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    response = page.goto(f"{console.url}/login")
    assert response is not None
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    cookies = context.cookies()
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Strict"
    # Scripts cannot read it.
    assert page.evaluate("document.cookie") == ""


def test_a_new_customer_deposits_and_watches_it_complete_live(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    expect(page.get_by_text("Your wallet is empty")).to_be_visible()
    screenshot(page, "wallet-empty")

    page.goto(f"{console.url}/payments/new?kind=deposit")
    # Only what a deposit needs is shown; a purchase shows its merchant, a wallet-funded
    # one no card.
    expect(page.locator("[data-section=merchant]")).to_be_hidden()
    expect(page.locator("[data-field=funding_source]")).to_be_hidden()
    page.get_by_label("Purchase at a merchant").check()
    expect(page.locator("[data-section=merchant]")).to_be_visible()
    page.get_by_label("Wallet", exact=True).check()
    expect(page.locator("[data-section=card]")).to_be_hidden()
    page.get_by_label("Deposit: card to wallet").check()
    expect(page.locator("[data-section=card]")).to_be_visible()
    expect(page.locator("[data-section=merchant]")).to_be_hidden()
    screenshot(page, "payment-form")
    payment_id = pay(page, console.url, kind="deposit", amount="10.00")
    mark_document(page)
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-status=completed]")).to_be_visible(timeout=30_000)
    expect(page.locator("#current-status [data-status=completed]")).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("This payment is final.")
    assert_not_reloaded(page)  # the timeline grew without a reload
    assert timeline.locator("li").count() >= 2  # at least the first state and the final one
    # Local time: the viewer's zone (Tokyo here), not the server's UTC fallback text.
    assert "UTC" not in timeline.locator("time").first.inner_text()
    screenshot(page, "payment-live")

    page.goto(f"{console.url}/dashboard")
    usd = page.locator("tr[data-currency=USD]")
    expect(usd.locator(".available")).to_have_text("10.00")
    expect(usd.locator(".held")).to_have_text("0.00")
    expect(page.locator(f"[data-payment-id='{payment_id}']")).to_be_visible()
    screenshot(page, "wallet")


def test_validation_errors_appear_next_to_their_fields(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    page.goto(f"{console.url}/payments/new?kind=deposit")
    page.get_by_label("Amount").fill("5.00")
    fill_card(page, "4242 4242 4242 4241")  # check digit wrong
    page.get_by_role("button", name="Submit payment").click()
    card_field = page.locator("[data-field=card_number]")
    expect(card_field.locator(".error")).to_contain_text("check digit")
    expect(page.get_by_label("Card number")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-field=amount] .error")).to_have_count(0)
    screenshot(page, "payment-form-error")

    # An amount JPY cannot have, and the platform's own complaint about the CVC, together.
    page.get_by_label("Currency").select_option("JPY")
    page.get_by_label("Amount").fill("100.5")
    fill_card(page, APPROVE)
    page.get_by_label("CVC").fill("12")
    page.get_by_role("button", name="Submit payment").click()
    expect(page.locator("[data-field=amount] .error")).to_contain_text("no minor units")
    expect(page.locator("[data-field=card_cvc] .error")).to_be_visible()
    expect(page.locator("[data-field=card_number] .error")).to_have_count(0)
    # The card number is never echoed back into the page.
    expect(page.get_by_label("Card number")).to_have_value("")
    page.goto(f"{console.url}/payments")
    expect(page.get_by_text("No payments yet.")).to_be_visible()


def test_a_retried_submission_pays_once(console: ConsoleProcess, context: BrowserContext) -> None:
    page = context.new_page()
    register(page, console.url)
    page.goto(f"{console.url}/payments/new?kind=deposit")
    token = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    key = page.locator("input[name=idempotency_key]").input_value()
    form: dict[str, str | float | bool] = {
        "csrf_token": token,
        "idempotency_key": key,
        "kind": "deposit",
        "currency": "USD",
        "amount": "3.00",
        "card_number": APPROVE,
        "card_exp_month": "12",
        "card_exp_year": "2031",
        "card_cvc": "123",
    }
    headers = {"Origin": console.url}
    first = page.request.post(
        f"{console.url}/payments", form=form, headers=headers, max_redirects=0
    )
    again = page.request.post(
        f"{console.url}/payments", form=form, headers=headers, max_redirects=0
    )
    assert first.status == again.status == 303
    assert first.headers["location"] == again.headers["location"]
    page.goto(f"{console.url}/payments")
    expect(page.locator("[data-payment-id]")).to_have_count(1)


def test_impossible_travel_is_verified_with_the_code(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    card = fresh_card()
    seoul = pay(page, console.url, kind="purchase", amount="25.00", card=card, place=SEOUL)
    expect(page.locator("#timeline li[data-status=completed]")).to_be_visible(timeout=30_000)

    new_york = pay(page, console.url, kind="purchase", amount="25.00", card=card, place=NEW_YORK)
    assert new_york != seoul
    mark_document(page)
    verify = page.locator("#verify")
    expect(verify).to_be_visible(timeout=30_000)  # shown live, when the hold arrives
    expect(page.locator("#verify-reason")).to_contain_text("impossible_travel")
    assert_not_reloaded(page)
    screenshot(page, "verification")

    code = notification_code(console.env, new_york)
    page.get_by_label("One-time code").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#timeline li[data-status=completed]")).to_be_visible(timeout=30_000)
    expect(page.locator("#verify")).to_be_hidden()

    # Both purchases completed: loyalty counts a visit at each cafe (asynchronously).
    deadline = time.monotonic() + 30
    while True:
        page.goto(f"{console.url}/insights")
        if page.get_by_role("row").filter(has_text="Cafe New York").count() or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    expect(page.get_by_role("row").filter(has_text="Cafe New York")).to_contain_text("MEMBER")
    expect(page.get_by_role("row").filter(has_text="Cafe Seoul")).to_be_visible()
    screenshot(page, "insights")


def test_a_wrong_code_says_how_many_attempts_are_left(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    card = fresh_card()
    pay(page, console.url, kind="purchase", amount="9.00", card=card, place=SEOUL)
    expect(page.locator("#timeline li[data-status=completed]")).to_be_visible(timeout=30_000)
    pay(page, console.url, kind="purchase", amount="9.00", card=card, place=NEW_YORK)
    expect(page.locator("#verify")).to_be_visible(timeout=30_000)
    page.get_by_label("One-time code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#verify-error")).to_contain_text("attempts left")
    page.get_by_role("button", name=re.compile("decline")).click()
    expect(page.locator("#current-status [data-status=denied]")).to_be_visible()


def test_forged_and_cookieless_requests_are_refused(
    console: ConsoleProcess, browser: Browser, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    form: dict[str, str | float | bool] = {
        "idempotency_key": str(uuid.uuid4()),
        "kind": "deposit",
        "currency": "USD",
        "amount": "1.00",
        "card_number": APPROVE,
        "card_exp_month": "12",
        "card_exp_year": "2031",
        "card_cvc": "123",
    }
    url = f"{console.url}/payments"
    # The session cookie but no CSRF token, or a wrong one.
    assert page.request.post(url, form=form, max_redirects=0).status == 403
    wrong: dict[str, str | float | bool] = {**form, "csrf_token": "0" * 64}
    assert page.request.post(url, form=wrong, max_redirects=0).status == 403
    # A right token from another origin.
    token = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    right: dict[str, str | float | bool] = {**form, "csrf_token": token}
    evil = page.request.post(
        url, form=right, headers={"Origin": "https://evil.example"}, max_redirects=0
    )
    assert evil.status == 403
    # No cookie at all: a fresh client with the token it stole.
    stranger = new_context(browser)
    try:
        refused = stranger.request.post(url, form=right, max_redirects=0)
        assert refused.status == 403
        refused_login = stranger.request.post(
            f"{console.url}/login",
            form={"email": "a@b.c", "password": "x", "csrf_token": token},
            max_redirects=0,
        )
        assert refused_login.status == 403
    finally:
        stranger.close()
    # None of it paid anything.
    page.goto(f"{console.url}/payments")
    expect(page.get_by_text("No payments yet.")).to_be_visible()


def test_logging_out_ends_the_session(console: ConsoleProcess, context: BrowserContext) -> None:
    page = context.new_page()
    register(page, console.url)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{console.url}/login")
    page.goto(f"{console.url}/dashboard")
    expect(page).to_have_url(re.compile(r"/login"))


def test_a_customer_is_refused_on_operator_pages(
    console: ConsoleProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, console.url)
    expect(page.get_by_role("link", name="Operations")).to_have_count(0)
    response = page.goto(f"{console.url}/ops")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Operators only")).to_be_visible()


def test_the_wallet_works_at_phone_width(console: ConsoleProcess, browser: Browser) -> None:
    context = new_context(browser, phone=True)
    try:
        page = context.new_page()
        register(page, console.url)
        page.goto(f"{console.url}/payments/new?kind=deposit")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the form scrolls sideways at phone width ({width}px)"
        screenshot(page, "payment-form-phone")
    finally:
        context.close()


def make_operator(page: Page, console: ConsoleProcess) -> str:
    """A new account, made admin with the operator CLI, then logged in again."""
    email = register(page, console.url, unique_email("operator"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway_svc.admin", "grant", email],
        cwd=ROOT,
        env=console.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page.get_by_role("button", name="Log out").click()
    log_in(page, console.url, email)
    return email


def held_payment(page: Page, url: str) -> str:
    """Seoul, then New York with the same card: the second is held for verification."""
    card = fresh_card()
    pay(page, url, kind="purchase", amount="12.00", card=card, place=SEOUL)
    expect(page.locator("#timeline li[data-status=completed]")).to_be_visible(timeout=30_000)
    payment_id = pay(page, url, kind="purchase", amount="12.00", card=card, place=NEW_YORK)
    expect(page.locator("#verify")).to_be_visible(timeout=30_000)
    return payment_id


def test_an_operator_finds_a_held_payment_and_reads_why(
    console: ConsoleProcess, browser: Browser, context: BrowserContext
) -> None:
    customer = context.new_page()
    register(customer, console.url)
    payment_id = held_payment(customer, console.url)

    ops_context = new_context(browser)
    try:
        page = ops_context.new_page()
        operator = make_operator(page, console)
        page.get_by_role("link", name="Operations").click()
        page.locator(".tiles").get_by_role("link", name="Payments").click()
        page.get_by_label("Payment id").fill(payment_id)
        page.get_by_label("Status").select_option("requires_verification")
        page.get_by_role("button", name="Search").click()
        row = page.locator(f"tr[data-payment-id='{payment_id}']")
        expect(row).to_have_count(1)
        screenshot(page, "ops-search")
        row.get_by_role("link").first.click()
        expect(page.locator("#held-because")).to_contain_text("impossible_travel")
        risk = page.locator("#risk")
        expect(risk.locator("[data-decision=REVIEW]")).to_be_visible()
        expect(risk.locator("tr.finding").filter(has_text="impossible_travel")).to_be_visible()
        expect(page.get_by_role("heading", name="Events")).to_be_visible()
        expect(page.get_by_text("payment.created")).to_be_visible()
        expect(page.locator("main")).not_to_contain_text("4242424242424242")
        screenshot(page, "ops-story")

        # The looks at a customer's payment are in the audit trail, under this operator.
        page.goto(f"{console.url}/ops/audit")
        story = page.locator("tr.action[data-method=GetPaymentStory]").filter(has_text=payment_id)
        expect(story.first).to_contain_text(operator)
        expect(story.first).to_contain_text("OK")
    finally:
        ops_context.close()


def test_operator_changes_are_recorded(console: ConsoleProcess, context: BrowserContext) -> None:
    page = context.new_page()
    operator = make_operator(page, console)
    page.goto(f"{console.url}/ops/gateways")
    soap = page.locator("tr[data-gateway=sandbox-soap]")
    expect(soap.locator(".state")).to_have_text("Enabled")
    soap.get_by_role("button", name="Disable sandbox-soap").click()
    expect(soap.locator(".state")).to_have_text("Disabled")
    screenshot(page, "ops-gateways")
    soap.get_by_role("button", name="Enable sandbox-soap").click()
    expect(soap.locator(".state")).to_have_text("Enabled")
    soap.get_by_label("Priority of sandbox-soap").fill("21")
    soap.get_by_role("button", name="Save").click()
    expect(soap.get_by_label("Priority of sandbox-soap")).to_have_value("21")
    soap.get_by_label("Priority of sandbox-soap").fill("20")
    soap.get_by_role("button", name="Save").click()

    page.goto(f"{console.url}/ops/catalog")
    page.get_by_label("Brand").select_option("discover")
    page.get_by_label("Category code (or *)").fill("5999")
    page.get_by_label("Rate (basis points)").fill("150")
    page.get_by_label("Description").fill("console e2e")
    page.get_by_role("button", name="Save benefit").click()
    added = page.locator("tr").filter(has_text="console e2e")
    expect(added).to_contain_text("1.50%")
    added.get_by_role("button", name="Remove").click()
    expect(page.locator("tr").filter(has_text="console e2e")).to_have_count(0)

    page.goto(f"{console.url}/ops/audit")
    updates = page.locator("tr.action[data-method=UpdateGateway]").filter(has_text=operator)
    expect(updates).to_have_count(4)
    expect(updates.first).to_contain_text("sandbox-soap")
    expect(
        page.locator("tr.action[data-method=PutBenefit]").filter(has_text=operator)
    ).to_have_count(1)
    expect(
        page.locator("tr.action[data-method=DeleteBenefit]").filter(has_text=operator)
    ).to_have_count(1)
    screenshot(page, "ops-audit")

    page.goto(f"{console.url}/ops/health")
    expect(page.locator("[data-component=gateway_svc]")).to_contain_text("SERVING")
    expect(page.locator("[data-component=payment_svc]")).to_contain_text("postgres")
    screenshot(page, "ops-health")
    response = page.goto(f"{console.url}/ops/dead-letters")
    assert response is not None
    assert response.status == 200
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()


def test_the_admin_rpcs_refuse_a_customer(console: ConsoleProcess, services: list[Running]) -> None:
    gateway = next(s for s in services if s.name == "gateway")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        email = unique_email("customer")
        auth.Register(
            auth_pb2.RegisterRequest(
                email=email, password=PASSWORD, first_name="Ada", last_name="Lovelace"
            ),
            timeout=10,
        )
        tokens = auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD), timeout=10)
        metadata = (("authorization", f"Bearer {tokens.access_token}"),)
        calls = [
            (
                admin_pb2_grpc.PaymentAdminServiceStub(channel).SearchPayments,
                admin_pb2.SearchPaymentsRequest(),
            ),
            (
                admin_pb2_grpc.PaymentAdminServiceStub(channel).UpdateGateway,
                admin_pb2.UpdateGatewayRequest(gateway_id="sandbox-json", enabled=False),
            ),
            (
                admin_pb2_grpc.ProcessingAdminServiceStub(channel).ListDeadLetters,
                admin_pb2.ListDeadLettersRequest(),
            ),
            (
                admin_pb2_grpc.OperatorServiceStub(channel).ListOperatorActions,
                admin_pb2.ListOperatorActionsRequest(),
            ),
        ]
        for call, request in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call(request, metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as anonymous:
                call(request, timeout=10)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def park_letter(bootstrap: str, error: str) -> None:
    """A dead letter of payments.status (nothing in payrail consumes that topic, so its
    re-drive disturbs no one), as ConsumerLoop parks them."""

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                "payments.status.dlq",
                b"not a payment event",
                key=str(uuid.uuid4()).encode(),
                headers=[
                    ("error", error.encode()),
                    ("source-partition", b"0"),
                    ("source-offset", b"0"),
                ],
            )
        finally:
            await producer.stop()

    # In a thread of its own: playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, produce()).result(timeout=60)


def test_an_operator_redrives_a_dead_letter(
    console: ConsoleProcess, context: BrowserContext, stack: StackEnv
) -> None:
    error = f"console e2e {uuid.uuid4().hex[:8]}"
    park_letter(stack.kafka_bootstrap, error)
    page = context.new_page()
    operator = make_operator(page, console)
    page.goto(f"{console.url}/ops/dead-letters")
    page.get_by_label("Error contains").fill(error)
    page.get_by_role("button", name="Filter").click()
    letter = page.locator("li.letter")
    expect(letter).to_have_count(1)
    expect(letter).to_contain_text("Not re-driven.")
    screenshot(page, "ops-dead-letters")
    letter.get_by_label("Reason").fill("checked by hand")
    letter.get_by_role("button", name="Re-drive").click()
    expect(page.get_by_role("status")).to_contain_text("re-driven")
    page.get_by_label("Error contains").fill(error)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("li.letter")).to_contain_text("Re-driven 1 time,")
    expect(page.locator("li.letter")).to_contain_text("checked by hand")
    # Once is enough unless asked again.
    page.locator("li.letter").get_by_label("Reason").fill("again")
    page.locator("li.letter").get_by_role("button", name="Re-drive").click()
    expect(page.get_by_role("status")).to_contain_text("already re-driven")
    page.goto(f"{console.url}/ops/audit")
    redrives = page.locator("tr.action[data-method=RedriveDeadLetter]").filter(has_text=operator)
    expect(redrives).to_have_count(2)
    expect(redrives.filter(has_text="FAILED_PRECONDITION")).to_have_count(1)
