"""The operator console in a real browser: headless Chromium (Debian's packages, installed
when missing) driven by Selenium, against the real daemon (`bridge run`, tests/daemon.py).

A support employee signs in, watches the overview update by itself, corrects a place in a
review item and sees the notice change as they type, approves it (the subscriber gets the
corrected notice), edits a template and sees the preview change, and pauses all sending.
Screenshots of each page go to tmp_path, or to the folder in BRIDGE_SCREENSHOTS
(``BRIDGE_SCREENSHOTS=docs/img pytest tests/test_console_browser.py`` makes the pictures
of docs/console.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from browser import chromium
from daemon import Daemon, bridge, wait_for
from helpers import ROOT, free_port, no_ticket_mail, read_outbox, sample_now, write_config

PASSWORD = "een lang wachtwoord"


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("BRIDGE_SCREENSHOTS") or tmp_path / "shots")
    if not d.is_absolute():
        d = ROOT / d
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_a_support_employee_uses_the_console_in_a_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    port = free_port()
    cfg = write_config(tmp_path, rate=50, extra=f"""\
        [web]
        port = {port}
        console = true
        """)
    p = subprocess.run([sys.executable, "-m", "bridge", "users", "add", "anna", "--config",
                        str(cfg)], input=PASSWORD + "\n", capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    for n in ("0612345678", "0612345679", "0612345670"):
        bridge(cfg, "subscribers", "add", n)
    shots = shots_dir(tmp_path)
    base = f"http://127.0.0.1:{port}/console"
    daemon = Daemon(cfg, port=port).start()
    try:
        assert "console: http://127.0.0.1:" in daemon.log()
        # a real notice went out earlier (so the pages have something to show); mails dated
        # now: the daemon may process what `bridge ingest` stored before the CLI does
        f = tmp_path / "nieuw.eml"
        f.write_bytes(sample_now("01"))
        bridge(cfg, "ingest", str(f))
        wait_for(lambda: len(read_outbox(tmp_path)) == 3, what="the first notice sent")

        with chromium(tmp_path) as driver:
            wait = WebDriverWait(driver, 20)

            def shot(name: str) -> None:
                """The whole page (up to 1,800 pixels high), 1,200 wide."""
                time.sleep(0.3)  # let the live parts settle
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1200, min(1800, max(700, height)))
                driver.save_screenshot(str(shots / f"console-{name}.png"))
                driver.set_window_size(1200, 860)

            # --- sign in (no page without it) ---
            driver.get(base + "/")
            wait.until(ec.url_contains("/console/login"))
            shot("aanmelden")
            driver.find_element(By.ID, "naam").send_keys("anna")
            driver.find_element(By.ID, "wachtwoord").send_keys(PASSWORD + Keys.ENTER)
            wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overzicht"))

            # --- the overview updates by itself: a mail for review arrives ---
            vague = no_ticket_mail(tmp_path)
            vague.write_bytes(vague.read_bytes().replace(b"inc12345678.1@", b"vague.1@"))
            bridge(cfg, "ingest", str(vague))
            wait.until(ec.text_to_be_present_in_element((By.ID, "nav-review-count"), "1"))
            assert "no ticket found" in driver.find_element(By.ID, "live-mails").text
            shot("overzicht")

            # --- review: correct a place, see the notice change, approve ---
            driver.find_element(By.PARTIAL_LINK_TEXT, "Controle").click()
            wait.until(ec.presence_of_element_located((By.PARTIAL_LINK_TEXT, "Storingsmelding")))
            shot("controle-lijst")
            driver.find_element(By.PARTIAL_LINK_TEXT, "Storingsmelding").click()
            places = wait.until(ec.presence_of_element_located((By.ID, "places")))
            assert "Amersfoort" in driver.find_element(By.ID, "voorbeeld").text
            places.clear()
            places.send_keys("Zeewolde en Harderwijk")
            wait.until(ec.text_to_be_present_in_element((By.ID, "voorbeeld"), "Zeewolde"))
            assert "Amersfoort" not in driver.find_element(By.ID, "voorbeeld").text
            shot("controle")
            driver.find_element(By.ID, "goedkeuren").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "melding-klaar"),
                                                        "goedgekeurd"))
            wait_for(lambda: sum("Zeewolde" in m["text"] for m in read_outbox(tmp_path)) == 3,
                     what="the corrected notice sent to all three")
            driver.refresh()
            wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "verstuurd"))
            shot("melding")

            # --- templates: edit, the preview changes, save ---
            driver.get(base + "/templates/notices/storing_nieuw.j2")
            source = wait.until(ec.presence_of_element_located((By.ID, "bron")))
            wait.until(ec.text_to_be_present_in_element((By.ID, "sjabloon-voorbeeld"),
                                                        "Geen fouten"))
            source.send_keys(Keys.CONTROL, Keys.HOME)
            source.send_keys("PROEFTEKST ")
            wait.until(ec.text_to_be_present_in_element((By.ID, "sjabloon-voorbeeld"),
                                                        "PROEFTEKST"))
            shot("tekst-bewerken")
            source.send_keys("{{ kapot }")  # a syntax error: shown with its line
            wait.until(ec.text_to_be_present_in_element((By.ID, "sjabloon-voorbeeld"),
                                                        "notices/storing_nieuw.j2:1: syntax"))
            for _ in range(len("{{ kapot }")):
                source.send_keys(Keys.BACKSPACE)
            wait.until(ec.text_to_be_present_in_element((By.ID, "sjabloon-voorbeeld"),
                                                        "Geen fouten"))
            driver.find_element(By.ID, "bewaren").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "melding-klaar"),
                                                        "Bewaard"))
            edited = tmp_path / "var" / "templates" / "notices" / "storing_nieuw.j2"
            assert edited.read_text().startswith("PROEFTEKST ")

            # --- other pages, for the pictures and to see they render ---
            for path, name, needle in (
                    ("/mails", "meldingen", "Mails"), ("/templates", "teksten", "Teksten"),
                    ("/subscribers", "abonnees", "Abonnees: 3"),
                    ("/mails/1", "mail", "De tekst die de bridge las"),
                    ("/incidents/1", "incident", "Tijdlijn")):
                driver.get(base + path)
                wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), needle))
                shot(name)
            driver.get(base + "/send")
            text = wait.until(ec.presence_of_element_located((By.ID, "tekst")))
            text.send_keys("*Let op*: vannacht onderhoud aan ons netwerk tussen 01:00 en"
                           " 03:00. Internet kan dan kort wegvallen.")
            wait.until(ec.text_to_be_present_in_element((By.ID, "bericht"), "3 abonnees"))
            shot("zelf-versturen")

            # --- pause all sending, confirmed ---
            driver.get(base + "/")
            driver.find_element(By.ID, "reden-pauze").send_keys("storing bij de provider")
            driver.find_element(By.ID, "pauzeren").click()
            wait.until(ec.presence_of_element_located((By.ID, "bevestigen"))).click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "gepauzeerd"),
                                                        "Het versturen is gepauzeerd"))
            assert "PAUSED by anna" in bridge(cfg, "status").stdout
            sent = len(read_outbox(tmp_path))
            g = tmp_path / "onderhoud.eml"
            g.write_bytes(sample_now("05"))
            assert "queued" in bridge(cfg, "ingest", str(g)).stdout
            time.sleep(1.5)
            assert len(read_outbox(tmp_path)) == sent  # held
            shot("gepauzeerd")
            driver.get(base + "/audit")
            wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"),
                                                        "versturen gepauzeerd"))
            shot("logboek")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-3000:]
    print(f"browser test: {time.monotonic() - started:.1f} s")
