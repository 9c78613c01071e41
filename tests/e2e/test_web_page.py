"""The web page, as a person sees it: `user-limits serve` with auth on, driven in Debian's chromium."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.servers.process import free_port
from tests.streams import created, process, progress, records
from user_limits.bootstrap import open_store

pytestmark = pytest.mark.browser

SECRET = "web-page-test-secret-0123456789abcdef"
HOUR = 3_600_000
LONG = "123456789012345678901234567890.123456789"


def seed(url: str) -> None:
    now = int(time.time() * 1000)
    store = open_store(url)
    process(
        store,
        records(
            [
                created(
                    "dep", 1, user_id="alice", value="1000", type_="DEPOSIT", period="DAY", next_reset=now + 5 * HOUR
                ),
                created(
                    "loss", 2, user_id="alice", value="200", type_="LOSS", period="WEEK", next_reset=now + 50 * HOUR
                ),
                created("bet", 3, user_id="alice", value="100", type_="BET", period="MONTH", next_reset=now + HOUR),
                created("bal", 4, user_id="alice", value="5000", type_="BALANCE", period="INDEFINITE", next_reset=None),
                created("other", 5, user_id="bob", value="10"),
                progress("dep", 6, "500", "0", user_id="alice"),  # 50%: green
                progress("loss", 7, "160", "0", user_id="alice"),  # 80%: amber
                progress("bet", 8, "95.50", "0", user_id="alice"),  # 95.5%: red
                # Amounts a JS Number would show wrongly: tiny, huge, long, exponent forms, -0.
                created("tiny", 9, user_id="carol", value="1"),
                progress("tiny", 10, "5E-8", "0", user_id="carol"),
                created("huge", 11, user_id="carol", value="1E+30", type_="LOSS"),
                created("long", 12, user_id="carol", value=LONG, type_="BET"),
                created("zero", 13, user_id="carol", value="-0", type_="BALANCE"),
            ],
            None,
        ),
    )
    store.close()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('web')}/limits.db"
    seed(url)
    return url


@pytest.fixture(scope="module")
def server(store_url: str) -> Iterator[str]:
    url = store_url
    port = free_port()
    env = {**os.environ, "USER_LIMITS_JWT_SECRET": SECRET, "USER_LIMITS_AUTH": "on"}
    process_ = subprocess.Popen(
        [sys.executable, "-m", "user_limits", "serve", "--store", url, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if process_.poll() is not None:
                raise AssertionError(f"serve exited: {process_.stderr.read().decode() if process_.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not become healthy")
        yield base
    finally:
        process_.terminate()
        process_.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (apt package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def token(subject: str) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def test_a_person_sees_one_card_per_limit(server: str, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, Locator, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server)
    expect(page.get_by_label("Access token")).to_be_visible()  # the server said auth is on
    page.get_by_label("User ID").fill("alice")
    page.get_by_label("Access token").fill(token("alice"))
    page.get_by_role("button", name="Show limits").click()

    cards = page.locator("article.card")
    expect(cards).to_have_count(4)
    expect(page.locator("#message")).to_have_text("4 limits for alice")
    expect(page.locator("#as-of")).to_contain_text("Figures as of")

    def card(limit_id: str) -> Locator:
        return page.locator(f'article.card[data-user-limit-id="{limit_id}"]')

    expect(card("dep").locator(".card-title")).to_have_text("Deposit · 24 hours")
    expect(card("loss").locator(".card-title")).to_have_text("Loss · 7 days")
    expect(card("dep").locator(".remaining")).to_have_text("500 SEK")
    expect(card("bal").locator(".remaining")).to_have_text("5,000 SEK")
    expect(card("bet").locator(".used")).to_have_text("95.50 SEK of 100 SEK used (95.50%)")
    for limit_id, percent, level in [
        ("dep", "50", "ok"),
        ("loss", "80", "warn"),
        ("bet", "95.5", "bad"),
        ("bal", "0", "ok"),
    ]:
        bar = card(limit_id).get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", percent)
        expect(bar).to_have_class(f"bar {level}")

    expect(card("bal").locator(".countdown")).to_have_text("No reset")
    countdown = card("bet").locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^in 00:59:\d\d$"))
    first = countdown.text_content()
    expect(countdown).not_to_have_text(first or "", timeout=5000)  # it ticks every second

    page.screenshot(path=str(tmp_path / "limits.png"), full_page=True)
    assert (tmp_path / "limits.png").stat().st_size > 10_000


def test_the_page_says_why_when_the_token_is_refused(server: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.goto(server)
    page.get_by_label("User ID").fill("bob")
    page.get_by_label("Access token").fill(token("alice"))
    page.get_by_role("button", name="Show limits").click()
    expect(page.get_by_role("status")).to_have_text(
        "Could not load the limits (403: this token may not read this user's limits)"
    )
    expect(page.locator("article.card")).to_have_count(0)


def test_the_page_refreshes_itself(server: str, store_url: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.goto(f"{server}/?refresh=1")
    page.get_by_label("User ID").fill("bob")
    page.get_by_label("Access token").fill(token("bob"))
    page.get_by_role("button", name="Show limits").click()
    used = page.locator('article.card[data-user-limit-id="other"] .used')
    expect(used).to_have_text("0 SEK of 10 SEK used (0.00%)")
    store = open_store(store_url)
    process(store, records([progress("other", 100, "9.5", "0", user_id="bob")], None))
    store.close()
    expect(used).to_have_text("9.5 SEK of 10 SEK used (95.00%)", timeout=10_000)
    expect(page.locator('article.card[data-user-limit-id="other"]').get_by_role("progressbar")).to_have_class("bar bad")


def shown(decimal: str) -> str:
    """How the page must write a decimal: exact plain digits, thousands separated, zero unsigned."""
    value = Decimal(decimal)
    return format(value.copy_abs() if value.is_zero() else value, ",f")


def api_limits(server: str, user_id: str) -> dict[str, dict[str, str]]:
    request = urllib.request.Request(
        f"{server}/api/user-limits/{user_id}", headers={"Authorization": f"Bearer {token(user_id)}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return {item["userLimitId"]: item for item in json.load(answer)["userLimits"]}


def test_tiny_huge_and_exponent_amounts_are_shown_exactly(server: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server)
    page.get_by_label("User ID").fill("carol")
    page.get_by_label("Access token").fill(token("carol"))
    page.get_by_role("button", name="Show limits").click()
    expect(page.locator("article.card")).to_have_count(4)

    def card(limit_id: str, part: str) -> Any:
        return page.locator(f'article.card[data-user-limit-id="{limit_id}"] {part}')

    expect(card("tiny", ".used")).to_have_text("0.00000005 SEK of 1 SEK used (0.00%)")
    expect(card("tiny", ".remaining")).to_have_text("0.99999995 SEK")
    expect(card("huge", ".remaining")).to_have_text("1" + ",000" * 10 + " SEK")
    expect(card("long", ".remaining")).to_have_text("123,456,789,012,345,678,901,234,567,890.123456789 SEK")
    expect(card("zero", ".remaining")).to_have_text(re.compile(r"^0 SEK$"))
    # Whatever text the API chose for each figure, the page shows exactly its value.
    for limit_id, item in api_limits(server, "carol").items():
        expect(card(limit_id, ".used")).to_have_text(
            f"{shown(item['progress'])} SEK of {shown(item['value'])} SEK used ({shown(item['usedPercent'])}%)"
        )
        expect(card(limit_id, ".remaining")).to_have_text(f"{shown(item['remaining'])} SEK")


def decimal_texts() -> list[str]:
    """Decimal strings in the API's grammar: the awkward ones, and a few hundred random ones."""
    texts = ["5E-8", "1E+30", LONG, "-0", "-0.00", "0E-8", "0", "95.50", "1.50E+1", "-5E-3", "1e5", "007.10"]
    randomly = random.Random(7)
    for _ in range(400):
        whole = str(randomly.randrange(10 ** randomly.randrange(1, 40)))
        text = randomly.choice(["", "-"]) + whole
        if randomly.random() < 0.6:
            text += "." + "".join(randomly.choice("0123456789") for _ in range(randomly.randrange(1, 40)))
        if randomly.random() < 0.5:
            text += randomly.choice("eE") + randomly.choice(["", "+", "-"]) + str(randomly.randrange(0, 60))
        texts.append(text)
    return texts


def test_every_decimal_text_is_written_out_exactly(server: str, browser: object) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.goto(server)
    texts = decimal_texts()
    written = page.evaluate("texts => texts.map((text) => amount(text, 'SEK'))", texts)
    assert written == [f"{shown(text)} SEK" for text in texts]
