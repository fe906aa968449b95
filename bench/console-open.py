"""Keeps the Sluice console open in headless Chromium while a benchmark runs:
one tab on Overview (the /v1/live stream) and one on Results (every delivery
attempt through /v1/results/live, rendered), until killed.

usage: console-open.py URL   (e.g. http://127.0.0.1:11027; no credentials)
"""
import os, signal, sys, time
from playwright.sync_api import sync_playwright

url = sys.argv[1]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True, args=["--no-sandbox"])
    overview = browser.new_page()
    overview.goto(url + "/console#overview")
    results = browser.new_page()
    results.goto(url + "/console#results")
    results.wait_for_selector("#filter-form")
    print("console open", flush=True)
    while not stop:
        # Keep the pages' event loops turning (Playwright pumps while waiting).
        results.wait_for_timeout(500)
    print("rows in the results tab:", results.locator("#results tbody tr").count(), flush=True)
    browser.close()
