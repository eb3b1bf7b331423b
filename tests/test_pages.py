"""The two web pages in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): the sandbox's catcher page (GET / of the sandbox) and `herald serve`'s dashboard (GET
/dashboard). Each test waits on the page's DOM (WebDriverWait), never on a sleep, checks that the
browser logged no console error, and writes a screenshot to its tmp_path (the path is printed).

Chromium missing is a failure, not a skip: CI installs it (the Makefile's APT_PACKAGES)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from herald import Engine, Plan, RuleSet, Sandbox
from support import wait_for
from test_serve import KEY, Served, serve  # noqa: F401  (serve is a fixture)

TWILIO_SID = "AC00000000000000000000000000000001"
TWILIO_TOKEN = "twilio-test-token-0123456789"
SENDGRID_KEY = "SG.pages-test-key-0123456789"
WAIT_S = 15


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module (starting one costs about a second)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield d
    finally:
        d.quit()


def open_page(browser: WebDriver, url: str) -> None:
    """Opens `url` with an empty console log (what an earlier page logged is dropped)."""
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get(url)


def console_errors(browser: WebDriver) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(browser: WebDriver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    print(f"screenshot: {path}")


def wait_until(browser: WebDriver, what: str, predicate: Callable[[WebDriver], Any]) -> Any:
    """The predicate's first truthy value. The pages rebuild rows as data arrives, so an element
    read in between may be gone: the predicate is then asked again."""
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(
        predicate, message=f"waiting for {what}")


def click(browser: WebDriver, what: str, css: str, containing: str = "") -> None:
    """Clicks the first element matching `css` (and holding `containing`), found afresh."""
    def attempt(d: WebDriver) -> bool:
        for e in d.find_elements(By.CSS_SELECTOR, css):
            if containing in e.text:
                e.click()
                return True
        return False
    wait_until(browser, what, attempt)


def rows(browser: WebDriver) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, "#list tr")


def row_texts(browser: WebDriver) -> list[str]:
    return [r.text for r in rows(browser)]


# ---- the sandbox's page ---------------------------------------------------------------------------

@pytest.fixture
def sms_engine(tmp_path: Path, sandbox: Sandbox) -> Iterator[Engine]:
    """An engine with a Twilio-speaking provider and a herald-API one, both pointed at the sandbox."""
    rules = RuleSet({"otp": lambda n: Plan("sms", ["twilio"], "Your code is {code}"),
                     "note": lambda n: Plan("sms", ["primary"], "{text}")})
    providers = [
        {"name": "twilio", "kind": "twilio", "url": sandbox.url,
         "settings": {"account_sid": TWILIO_SID, "from": "+15550100"}, "secrets": {"auth_token": TWILIO_TOKEN}},
        sandbox.provider("primary"),
    ]
    with Engine(tmp_path / "data", rules=rules, providers=providers, close_timeout=3.0) as engine:
        yield engine


def test_sandbox_page_lists_live_filters_and_shows_details(browser: WebDriver, sandbox: Sandbox, sms_engine: Engine,
                                                           tmp_path: Path) -> None:
    open_page(browser, sandbox.url + "/")
    wait_until(browser, "the live indicator", lambda d: d.find_element(By.ID, "live").text == "live")
    assert rows(browser) == []
    browser.execute_script("window.__notReloaded = true;")

    otp = sms_engine.send("otp", {"id": "u1", "phone": "+15550111"}, {"code": "481516"})
    wait_until(browser, "the OTP in the list", lambda d: any("481516" in t for t in row_texts(d)))
    # A long UCS-2 text (Cyrillic): 80 code units, more than 70, so two segments of 67.
    long_text = "Привет! " * 10
    note = sms_engine.send("note", {"id": "u2", "phone": "+15550122"}, {"text": long_text})
    wait_until(browser, "both messages", lambda d: len(rows(d)) == 2)
    assert browser.execute_script("return window.__notReloaded === true;"), "the page reloaded"
    wait_until(browser, "the newest first", lambda d: "Привет" in row_texts(d)[0])

    # Filters and search narrow the list.
    Select(browser.find_element(By.ID, "f-service")).select_by_value("twilio")
    wait_until(browser, "the service filter", lambda d: len(rows(d)) == 1 and "481516" in row_texts(d)[0])
    Select(browser.find_element(By.ID, "f-service")).select_by_value("")
    wait_until(browser, "the list back", lambda d: len(rows(d)) == 2)
    browser.find_element(By.ID, "search").send_keys("Привет")
    wait_until(browser, "the search", lambda d: len(rows(d)) == 1 and "Привет" in row_texts(d)[0])
    browser.find_element(By.ID, "search").clear()
    browser.find_element(By.ID, "f-to").send_keys("0111")
    wait_until(browser, "the recipient filter", lambda d: len(rows(d)) == 1 and "+15550111" in row_texts(d)[0])
    browser.find_element(By.ID, "f-to").clear()
    browser.find_element(By.ID, "f-to").send_keys(" ")  # an input event with an empty filter
    wait_until(browser, "the list back", lambda d: len(rows(d)) == 2)
    statuses = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "f-status")).options]
    assert "accepted" in statuses or "queued" in statuses, statuses

    # The OTP's detail: Twilio's Basic credentials masked, one GSM-7 segment, the herald id.
    click(browser, "the OTP's row", "#list tr", "481516")
    wait_until(browser, "the OTP's detail", lambda d: d.find_elements(By.ID, "segments"))
    headers = browser.find_element(By.ID, "headers").text
    assert "authorization" in headers and "Basic " in headers and "chars)" in headers, headers
    secret = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    assert secret not in browser.page_source and TWILIO_TOKEN not in browser.page_source
    assert browser.find_element(By.ID, "segments").text.startswith("1 segment, GSM-7")
    assert browser.find_element(By.ID, "herald-id").text == str(otp.id)

    # The long note: UCS-2, two segments; with herald serve's URL set its herald id links to the trace.
    url_box = browser.find_element(By.ID, "herald-url")
    url_box.send_keys("http://127.0.0.1:8788\n")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", url_box)
    click(browser, "the note's row", "#list tr", "Привет")
    wait_until(browser, "the note's segments", lambda d: "UCS-2" in d.find_element(By.ID, "segments").text)
    assert browser.find_element(By.ID, "segments").text.startswith("2 segments, UCS-2 (80 code units")
    link = browser.find_element(By.ID, "herald-id")
    assert link.tag_name == "a" and link.get_attribute("href") == f"http://127.0.0.1:8788/dashboard#trace={note.id}"
    # Ids pass 2^53: the request body shows every digit, not a rounded double.
    assert str(note.id) in browser.find_element(By.ID, "raw-body").text

    screenshot(browser, tmp_path, "sandbox")
    assert console_errors(browser) == []


def test_sandbox_page_renders_email_html_in_a_sandboxed_frame_and_sets_faults(browser: WebDriver, sandbox: Sandbox,
                                                                              tmp_path: Path) -> None:
    # What an application's SendGrid client sends: HTML and text parts, Bearer auth.
    html = "<h1 id='greeting'>Hello Ada</h1><p>Your <b>order</b> shipped.</p><script>document.title='ran'</script>"
    mail = {"personalizations": [{"to": [{"email": "ada@example.com"}]}], "from": {"email": "shop@example.com"},
            "subject": "Your order", "custom_args": {"herald_id": "77"},
            "content": [{"type": "text/plain", "value": "Hello Ada"}, {"type": "text/html", "value": html}]}
    answer = httpx.post(sandbox.url + "/v3/mail/send", json=mail, headers={"Authorization": f"Bearer {SENDGRID_KEY}"})
    assert answer.status_code == 202, answer.text

    open_page(browser, sandbox.url + "/")
    wait_until(browser, "the email in the list", lambda d: any("Your order" in t for t in row_texts(d)))
    click(browser, "the email's row", "#list tr", "Your order")
    frame = wait_until(browser, "the email's frame", lambda d: d.find_elements(By.ID, "email-frame"))[0]
    assert frame.get_attribute("sandbox") == ""  # no scripts, no same-origin access
    assert browser.find_element(By.ID, "herald-id").text == "77"
    assert "Bearer" in browser.find_element(By.ID, "headers").text and SENDGRID_KEY not in browser.page_source
    browser.switch_to.frame(frame)
    try:
        assert wait_until(browser, "the HTML rendered", lambda d: d.find_elements(By.ID, "greeting"))[0].text == "Hello Ada"
        assert browser.find_element(By.TAG_NAME, "b").text == "order"
        assert browser.title != "ran"  # the email's script did not run
    finally:
        browser.switch_to.default_content()
    screenshot(browser, tmp_path, "sandbox-email")

    # The fault form sets faults through the sandbox's API; the callbacks form likewise.
    browser.find_element(By.CSS_SELECTOR, "#controls summary").click()
    form = browser.find_element(By.ID, "faults-form")
    form.find_element(By.NAME, "service").clear()
    form.find_element(By.NAME, "service").send_keys("sendgrid")
    form.find_element(By.NAME, "error_rate").clear()
    form.find_element(By.NAME, "error_rate").send_keys("0.25")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(browser, "the faults in force", lambda d: "sendgrid" in d.find_element(By.ID, "faults-now").text)
    assert httpx.get(sandbox.url + "/_sandbox/faults").json()["sendgrid"]["error_rate"] == 0.25
    cb = browser.find_element(By.ID, "callbacks-form")
    cb.find_element(By.NAME, "delay_ms").clear()
    cb.find_element(By.NAME, "delay_ms").send_keys("250")
    cb.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(browser, "the callbacks in force", lambda d: "250" in d.find_element(By.ID, "callbacks-now").text)
    assert httpx.get(sandbox.url + "/_sandbox/callbacks").json()["*"]["delay_ms"] == 250
    browser.find_element(By.ID, "faults-clear").click()
    wait_until(browser, "no faults", lambda d: d.find_element(By.ID, "faults-now").text == "none")
    assert console_errors(browser) == []


def test_demo_keep_leaves_the_sandbox_up_to_browse(browser: WebDriver, tmp_path: Path) -> None:
    from herald.demo import run_demo

    out = io.StringIO()
    keep = threading.Event()
    done: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: done.append(run_demo(tmp_path / "demo", bulk=40, otps=3, out=out,
                                                                  progress=False, keep=keep)))
    runner.start()
    try:
        line = wait_for(lambda: re.search(r"sandbox kept running: .* at (http://\S+)/ ", out.getvalue()), timeout=60,
                        what=lambda: out.getvalue())
        open_page(browser, line.group(1) + "/")
        wait_until(browser, "the demo's messages", lambda d: len(rows(d)) >= 43)
        assert console_errors(browser) == []
    finally:
        keep.set()
        runner.join(60)
    assert done and done[0]["notifications"] == 43


# ---- herald serve's dashboard -----------------------------------------------------------------------

def test_dashboard_shows_queues_a_dead_letter_and_finds_a_trace(browser: WebDriver, serve: Callable[..., Served],  # noqa: F811
                                                                sandbox: Sandbox, tmp_path: Path) -> None:
    # Two failures in a row open primary's circuit (for an hour): the outage at the end does that.
    served = serve(primary_extra="circuit_consecutive_failures = 2\ncircuit_cooldown_ms = 3600000")
    sandbox.set_faults("primary", error_rate=1.0, error_status=400, error_code="bad_number")
    with served.client() as client:
        dead = client.send("solo", {"id": "dora", "phone": "+15550199"}, {"text": "hi"})
        wait_for(lambda: client.status(dead.id).state == "dead_lettered", what="the dead letter")
        sandbox.clear_faults()
        eve = [client.send("solo", {"id": "eve", "phone": "+15550155"}, {"text": f"hi {i}"}).id for i in range(2)]

    open_page(browser, served.url + "/dashboard")
    assert browser.find_element(By.ID, "conn").text == "no key"
    browser.find_element(By.ID, "api-key").send_keys(KEY + "\n")
    wait_until(browser, "the dashboard live", lambda d: d.find_element(By.ID, "conn").text == "live")
    lanes = wait_until(browser, "the queues", lambda d: {
        r.get_attribute("data-lane"): r.text for r in d.find_elements(By.CSS_SELECTOR, "#queues tr")})
    assert set(lanes) == {"critical", "high", "normal", "bulk"}
    assert all(re.fullmatch(r"\w+ \d+ \d+", t) for t in lanes.values()), lanes
    circuits = wait_until(browser, "the providers", lambda d: {
        r.get_attribute("data-provider"): r.find_element(By.CSS_SELECTOR, "td[data-circuit]").get_attribute("data-circuit")
        for r in d.find_elements(By.CSS_SELECTOR, "#providers tr")})
    assert circuits == {"primary": "closed", "backup": "closed"}
    wait_until(browser, "the dead letter", lambda d: d.find_elements(By.CSS_SELECTOR, f"#dead-letters a[data-id='{dead.id}']"))
    assert "dora" in wait_until(browser, "the dead letters", lambda d: d.find_element(By.ID, "dead-letters").text)

    # The trace search: by id, then by recipient (one notification: its trace; two: a list).
    browser.find_element(By.ID, "trace-q").send_keys(f"{dead.id}\n")
    wait_until(browser, "the trace", lambda d: d.find_elements(By.ID, "trace-summary"))
    assert "dead_lettered" in browser.find_element(By.ID, "trace-summary").text
    events = browser.find_element(By.ID, "trace-events").text
    assert "dead_lettered" in events and "400" in events, events
    browser.find_element(By.ID, "trace-q").clear()
    browser.find_element(By.ID, "trace-q").send_keys("dora\n")
    wait_until(browser, "the recipient's trace", lambda d: d.find_elements(By.ID, "trace-summary")
               and "dora" in d.find_element(By.ID, "trace-summary").text)
    browser.find_element(By.ID, "trace-q").clear()
    browser.find_element(By.ID, "trace-q").send_keys("eve\n")
    wait_until(browser, "eve's notifications", lambda d: d.find_elements(By.ID, "recipient-hits"))
    assert browser.find_element(By.ID, "recipient-hits").text.startswith("2 notifications for 'eve'")
    found = wait_until(browser, "eve's links", lambda d: [
        a.get_attribute("data-id") for a in d.find_elements(By.CSS_SELECTOR, "#trace-result a")])
    assert found == [str(i) for i in reversed(eve)]  # newest first
    click(browser, "the dead letter's link", f"#dead-letters a[data-id='{dead.id}']")
    wait_until(browser, "the trace from the link", lambda d: str(dead.id) in d.find_element(By.ID, "trace-summary").text)
    # The rates are the engine's: what was sent before the page opened is there (eve's two, dora's
    # failure), and a send now counts in this minute.
    wait_until(browser, "the last hour's answers", lambda d: re.search(
        r"accepted, last hour\s+2\b.*failed, last hour\s+1\b", d.find_element(By.ID, "totals").text, re.S))
    with served.client() as client:
        _ = client.send("solo", {"id": "fay", "phone": "+15550166"}, {"text": "hello"})
    wait_until(browser, "the send in the rates", lambda d: re.search(
        r"accepted this minute\s+\d+.*accepted, last hour\s+3\b", d.find_element(By.ID, "totals").text, re.S))
    assert browser.find_elements(By.CSS_SELECTOR, "#chart rect[data-series='accepted']")  # the minutes' bars
    assert browser.find_elements(By.CSS_SELECTOR, "#chart rect[data-series='failed']")
    # One provider's minutes: backup has answered nothing yet.
    Select(browser.find_element(By.ID, "chart-provider")).select_by_value("backup")
    wait_until(browser, "backup's empty chart", lambda d: not d.find_elements(By.CSS_SELECTOR, "#chart rect"))
    assert re.search(r"accepted, last hour\s+0\b", browser.find_element(By.ID, "totals").text)

    # An outage at primary: an otp fails there twice (a retry), which opens its circuit, and goes
    # on to backup; the page shows the open circuit and backup's minute.
    sandbox.set_faults("primary", error_rate=1.0, error_status=503)
    with served.client() as client:
        otp = client.send("otp", {"id": "gus", "phone": "+15550177"}, {"code": "7"})
        wait_for(lambda: client.status(otp.id).state == "completed", what="the otp via backup")
    wait_until(browser, "primary's circuit open", lambda d: d.find_elements(
        By.CSS_SELECTOR, "#providers tr[data-provider='primary'] td[data-circuit='open']"))
    assert "probe at" in browser.find_element(By.CSS_SELECTOR, "#providers tr[data-provider='primary']").text
    wait_until(browser, "backup's answer in its chart", lambda d: d.find_elements(
        By.CSS_SELECTOR, "#chart rect[data-series='accepted']"))
    Select(browser.find_element(By.ID, "chart-provider")).select_by_value("")
    screenshot(browser, tmp_path, "dashboard")
    assert console_errors(browser) == []
