"""Drives the Sluice console in headless Chromium (Playwright, the system's
chromium through executable_path) against a running daemon, as an operator
would: log in, watch a message in the live results and read its trace,
pause and resume a destination, add a capacity row. Asserts what the page
shows and what the daemon and the receiver then do; every request the page
makes must stay on loopback, and the page must log no error.

usage: console_browser.py SETTINGS_JSON
  SETTINGS_JSON: {"url", "user", "password", "smtp_port", "recorder_out",
                  "sluice", "config", "screenshots", "chromium"}
Exits 0 when every check passed; prints what failed otherwise.
"""
import json, os, re, subprocess, sys, time
from urllib.parse import urlparse
from playwright.sync_api import sync_playwright, expect

cfg = json.loads(sys.argv[1])
os.makedirs(cfg["screenshots"], exist_ok=True)
outside, errors = [], []


def shot(page, name):
    page.screenshot(path=os.path.join(cfg["screenshots"], name + ".png"), full_page=True)


def swaks(to, extra=()):
    out = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{cfg['smtp_port']}", "--from", "sender@example.net", "--to", to, *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"queued as (\S+)", out.stdout)
    assert m, out.stdout
    return m.group(1)


def arrivals(domain):
    try:
        lines = open(cfg["recorder_out"]).read().splitlines()
    except FileNotFoundError:
        return []
    seen = [json.loads(l) for l in lines if l.strip()]
    return [a for a in seen if not a.get("refused") and any(r.lower().endswith("@" + domain) for r in a["to"])]


def wait_until(what, check, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def loopback_only(route):
    host = urlparse(route.request.url).hostname
    if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost", "::1"):
        return route.continue_()
    outside.append(route.request.url)
    return route.abort()


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=cfg["chromium"], headless=True, args=["--no-sandbox"])
    # The console is served over HTTPS with the test's self-signed certificate.
    context = browser.new_context(viewport={"width": 1280, "height": 860}, ignore_https_errors=True)
    context.route("**/*", loopback_only)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Log in: a wrong password is refused in the page, without the browser's dialog.
    page.goto(cfg["url"] + "/console")
    expect(page.locator("#login")).to_be_visible(timeout=10000)
    page.fill("input[name=username]", cfg["user"])
    page.fill("input[name=password]", "wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("Wrong", timeout=10000)
    shot(page, "login")
    page.fill("input[name=password]", cfg["password"])
    page.click("#login-form button")
    expect(page.locator("#nav")).to_be_visible(timeout=10000)
    expect(page.locator("#cards .card").first).to_be_visible(timeout=10000)

    # Results: the live stream is open before the message is sent.
    with page.expect_response(lambda r: "/v1/results/live" in r.url, timeout=10000) as live:
        page.click("a[data-page=results]")
    assert live.value.status == 200, live.value.status
    # The receiver refuses this domain's first message (421): two attempts.
    key = swaks("watch@retry.example")
    row = page.locator("#results tbody tr", has_text="watch@retry.example")
    verdict = lambda v: row.filter(has=page.locator("td:nth-child(5)", has_text=v))
    expect(verdict("delivered")).to_have_count(1, timeout=30000)
    expect(verdict("retry")).to_have_count(1, timeout=30000)
    verdict("delivered").locator("a").click()
    expect(page.locator("#trace li")).to_have_count(3, timeout=10000)
    events = page.locator("#trace li b").all_text_contents()
    assert [e.split()[-1] for e in events] == ["received", "attempt", "attempt"], events
    assert key in page.locator("#trace h3").text_content(), key
    lines = page.locator("#trace li > span").all_text_contents()
    assert "from 127.0.0.1" in lines[0], lines
    assert "421 4.7.0" in lines[1] and lines[1].endswith("→ retry"), lines
    assert "250 2.0.0" in lines[2] and lines[2].endswith("→ delivered"), lines
    shot(page, "results")

    # Overview, after the traffic.
    page.click("a[data-page=overview]")
    expect(page.locator("#chart svg polyline").first).to_be_attached(timeout=10000)
    expect(page.locator("#queues tbody tr").first).to_be_visible(timeout=10000)
    time.sleep(2)  # two live updates
    shot(page, "overview")

    # Pause a destination from the console: nothing arrives; resume: it does.
    page.click("a[data-page=destinations]")
    page.fill("#pause-form input[name=domain]", "paused.example")
    page.click("#pause-form button")
    expect(page.locator("#pauses tbody tr", has_text="paused.example")).to_have_count(1, timeout=10000)
    for i in range(3):
        swaks(f"user{i}@paused.example")
    swaks("other@open.example")
    wait_until("the unpaused domain delivered", lambda: len(arrivals("open.example")) == 1, 30)
    time.sleep(3)
    assert arrivals("paused.example") == [], arrivals("paused.example")
    expect(page.locator("#destinations tbody tr").first).to_be_visible(timeout=10000)
    shot(page, "destinations")
    page.locator("#pauses tbody tr", has_text="paused.example").locator("button.resume").click()
    expect(page.locator("#pauses tbody tr", has_text="paused.example")).to_have_count(0, timeout=10000)
    wait_until("the resumed domain delivered", lambda: len(arrivals("paused.example")) == 3, 30)

    # Policy: a capacity row added here is what `sluice policy show` reports.
    page.click("a[data-page=policy]")
    expect(page.locator("#row-form")).to_be_visible(timeout=10000)
    page.fill("#row-form input[name=domain]", "limited.example")
    page.fill("#row-form input[name=message_rate]", "120/min")
    page.fill("#row-form input[name=connections]", "3")
    page.click("#row-form button[type=submit]")
    expect(page.locator("#rows tbody tr", has_text="limited.example")).to_have_count(1, timeout=10000)
    row_id = page.locator("#rows tbody tr", has_text="limited.example").locator("td").first.text_content()
    shot(page, "policy")
    shown = subprocess.run(
        [cfg["sluice"], "policy", "show", "limited.example", "--config", cfg["config"]],
        capture_output=True, text=True, timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"message_rate\s+120/min\s+\(capacity row " + row_id + r"\)", shown.stdout), shown.stdout
    assert re.search(r"connections\s+3\s+\(capacity row " + row_id + r"\)", shown.stdout), shown.stdout
    # Edit it in the console, then delete it.
    page.locator("#rows tbody tr", has_text="limited.example").locator("button", has_text="Edit").click()
    expect(page.locator("#row-form h3")).to_contain_text(f"Edit capacity row {row_id}", timeout=10000)
    page.fill("#row-form input[name=connections]", "4")
    page.click("#row-form button[type=submit]")
    expect(page.locator("#rows tbody tr", has_text="limited.example")).to_contain_text("4", timeout=10000)
    page.locator("#rows tbody tr", has_text="limited.example").locator("button.danger").click()
    expect(page.locator("#rows tbody tr", has_text="limited.example")).to_have_count(0, timeout=10000)

    # Plugins and instances render.
    page.click("a[data-page=plugins]")
    connect = page.locator("#plugins tbody tr", has_text="mq_smtp_in_connect")
    expect(connect).to_have_count(1, timeout=10000)
    cells = connect.locator("td").all_text_contents()
    assert cells[0] == "noop.so" and int(cells[2].replace(",", "")) == 5, cells  # the five swaks sessions
    expect(page.locator("#plugins tbody tr", has_text="noop.so")).to_have_count(8)  # its eight hooks
    shot(page, "plugins")
    page.click("a[data-page=instances]")
    expect(page.locator("#instances table")).to_be_visible(timeout=10000)
    expect(page.locator("#instances tbody tr.self")).to_have_count(1, timeout=10000)
    shot(page, "instances")

    # Logging out forgets the credentials: the API answers 401 again.
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible(timeout=10000)
    status = page.evaluate("fetch('/v1/overview', {headers: {'x-sluice-console': '1'}}).then(r => r.status)")
    assert status == 401, status
    browser.close()

# The wrong password's 401 is the one expected failed resource.
errors = [e for e in errors if "401" not in e]
assert not outside, f"requests left loopback: {outside}"
assert not errors, f"console errors: {errors}"
print("console: all checks passed")
