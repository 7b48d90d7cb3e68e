"""Drives the status page in headless Chromium for tests/tests/web.rs.

Usage: page.py URL SCREENSHOT [TOKEN]

Loads the page, waits for the watch `app` to be up, kills its process
with SIGKILL and waits for the page to show the new one without a
reload. Without TOKEN it checks that the page has no buttons; with it,
that a restart without the token is refused on the page, and that one
with it restarts the watch. Prints one JSON object of what it saw; any
failed expectation is an exception (and a non-zero exit).
"""
import json
import os
import signal
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

URL, SCREENSHOT = sys.argv[1], sys.argv[2]
TOKEN = sys.argv[3] if len(sys.argv) > 3 else None

options = Options()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--window-size=1400,700"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
# Waits poll the page's DOM, which the page's own event stream updates.
wait = WebDriverWait(driver, 30, poll_frequency=0.05)
seen = {}


def cell(name, column):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-watch="{name}"] td.{column}').text


def up_with_pid(name, other_than=None):
    def check(_):
        try:
            pid, state = cell(name, "pid"), cell(name, "state")
        except Exception:
            return False
        return pid.isdigit() and pid != other_than and state == "up" and pid
    return wait.until(check)


try:
    driver.get(URL)
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    first = up_with_pid("app")
    seen["first_pid"] = int(first)
    seen["live"] = driver.find_element(By.ID, "live").text
    os.kill(int(first), signal.SIGKILL)
    second = up_with_pid("app", other_than=first)
    seen["after_kill_pid"] = int(second)
    seen["restarts_shown"] = cell("app", "restarts")
    seen["last_exit_shown"] = driver.find_element(
        By.CSS_SELECTOR, 'tr[data-watch="app"] td.exit').text
    seen["exit_event_shown"] = wait.until(lambda d: [
        e.text for e in d.find_elements(By.CSS_SELECTOR, '#events li[data-kind="exit"]')])
    buttons = driver.find_elements(By.CSS_SELECTOR, "button[data-action]")
    seen["buttons"] = len(buttons)
    if TOKEN is None:
        assert not buttons, "a page without a token has buttons"
    else:
        restart = driver.find_element(
            By.CSS_SELECTOR, 'button[data-action="restart"][data-watch="app"]')
        restart.click()
        seen["without_token"] = wait.until(
            lambda d: d.find_element(By.ID, "said").text)
        driver.find_element(By.ID, "token").send_keys("not-the-token-at-all")
        driver.find_element(By.CSS_SELECTOR, "#unlock button").click()
        restart.click()
        seen["wrong_token"] = wait.until(
            lambda d: "wrong token" in d.find_element(By.ID, "said").text
            and d.find_element(By.ID, "said").text)
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#unlock button").click()
        driver.find_element(
            By.CSS_SELECTOR, 'button[data-action="restart"][data-watch="app"]').click()
        third = up_with_pid("app", other_than=second)
        seen["after_button_pid"] = int(third)
        seen["said"] = wait.until(
            lambda d: "done" in d.find_element(By.ID, "said").text
            and d.find_element(By.ID, "said").text)
    seen["text"] = driver.find_element(By.TAG_NAME, "body").text
    driver.save_screenshot(SCREENSHOT)
finally:
    driver.quit()
print(json.dumps(seen))
