"""Open every page of the built book in headless Chromium and check what a reader would see.

    python scripts/check_book.py _build/html [--screenshots _build/screenshots]   # make test runs it after the build

For each HTML page (the book's own pages, not Sphinx's search and index pages) it loads the page from disk
(file://, no server, no network), waits for MathJax to finish typesetting, and checks:

* no console error and no uncaught exception;
* every image loaded (its natural width is above 0);
* every formula typeset: no raw ``\\(`` or ``$$`` left in the page's text, and MathJax ran where there is math;
* no error output of a notebook cell (a traceback in the page);
* no horizontal scrollbar in the main column: nothing wider than the article itself (a wide HTML table may
  scroll inside its own box; the article may not);
* no figure of a notebook shown at less than 1/``MAX_SHRINK`` of its width (the column scales a wide figure down,
  and its labels with it);
* no code cell or printed output that scrolls sideways: every ``pre`` of the article fits its box (the book's
  stylesheet ``_static/book.css`` sizes code so that an 88-character line fits at the default width, and wraps
  printed lines longer than the column).

It saves a screenshot of each page under ``--screenshots`` and prints one line per page; it exits 1 if any
check failed, naming the page and the check. Chromium is driven over its DevTools protocol (websocket-client);
its path is $CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SKIP = {"search.html", "genindex.html", "py-modindex.html"}
#: Console messages that are not errors of the book, each with why (matched exactly).
KNOWN = {
    "Got invalid theme mode: . Resetting to auto.":
        "pydata-sphinx-theme on a reader's first visit, before its localStorage holds a light/dark choice: it uses 'auto', as meant",
}
#: The most a notebook's figure may be scaled down in the column (natural width / shown width) at the 1280-px
#: window: text drawn at 10 pt then reads at 9 px or more (mi_lib.plotting.BOOK_WIDTH keeps figures below it).
MAX_SHRINK = 1.5
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,900", "--remote-debugging-port=0",
         "--allow-file-access-from-files"]

# Run in the page once MathJax is done: what the checks read.
PROBE = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await new Promise(r => setTimeout(r, 100));
  const main = document.querySelector('main') || document.querySelector('.bd-article') || document.body;
  const article = document.querySelector('article') || main;
  const text = article.innerText;
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const wide = [...article.querySelectorAll('*')].filter(e => {
    const r = e.getBoundingClientRect(); const a = article.getBoundingClientRect();
    if (r.width === 0) return false;
    let p = e.parentElement;  // inside a box that scrolls on its own (code, output, table): allowed
    while (p && p !== article) { const s = getComputedStyle(p); if (['auto', 'scroll'].includes(s.overflowX)) return false; p = p.parentElement; }
    return r.right > a.right + 2;
  }).slice(0, 3).map(e => e.tagName + '.' + e.className);
  const shrunk = [...article.querySelectorAll('.cell_output img')].filter(i => i.clientWidth > 0)
    .map(i => ({alt: (i.getAttribute('src') || '').split('/').pop(), factor: i.naturalWidth / i.clientWidth}));
  const scrolling = [...article.querySelectorAll('pre')].filter(p => p.scrollWidth > p.clientWidth + 1)
    .slice(0, 3).map(p => (p.textContent.split('\n').reduce((a, b) => a.length >= b.length ? a : b, '')).slice(0, 60));
  return JSON.stringify({
    images,
    mathjax: document.querySelectorAll('mjx-container').length,
    rawMath: (text.match(/\\\(|\\\[|\$\$/g) || []).length,
    mathSource: document.querySelectorAll('.math, span.math, div.math').length,
    errors: document.querySelectorAll('.output.error, .output_error, div.cell_output .traceback, .ansi-red-fg').length
            + (text.includes('Traceback (most recent call last)') ? 1 : 0),
    wide,
    scrolling,
    shrunk,
  });
})()
"""


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium found (Debian: apt-get install chromium; or set $CHROMIUM)")


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, chromium: str):
        import websocket

        self.profile = tempfile.mkdtemp(prefix="check-book-")
        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().split()) >= 2:
                break
            time.sleep(0.05)
        else:
            self.close()
            raise SystemExit("Chromium did not start (no DevToolsActivePort)")
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as response:  # the browser's own loopback port
            targets = json.loads(response.read().decode())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise RuntimeError(f"{url}: no load event within 60 s")

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("exception", {}).get("description", "uncaught exception").splitlines()[0])
            elif e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])[:200])
            elif e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append(e["params"]["entry"]["text"][:200])
        return out

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def check_page(browser: Browser, page: Path, screenshots: Path | None) -> list[str]:
    """The failed checks of one page (empty: all passed)."""
    browser.open(page.resolve().as_uri())
    result = browser.call("Runtime.evaluate", expression=PROBE, awaitPromise=True, returnByValue=True)
    probe = json.loads(result["result"]["value"])
    problems = [f"console: {e}" for e in browser.console_errors() if e not in KNOWN]
    problems += [f"image not loaded: {i['src']}" for i in probe["images"] if not i["ok"]]
    if probe["rawMath"]:
        problems.append(f"{probe['rawMath']} formula(s) left untypeset (raw \\( or $$ in the text)")
    if probe["mathSource"] and not probe["mathjax"]:
        problems.append("math on the page but MathJax typeset none of it")
    if probe["errors"]:
        problems.append(f"{probe['errors']} error output(s) (a traceback) on the page")
    if probe["wide"]:
        problems.append(f"wider than the main column (a horizontal scrollbar): {', '.join(probe['wide'])}")
    if probe["scrolling"]:
        problems.append(f"code or output that scrolls sideways (a line wider than its box): {' / '.join(probe['scrolling'])}")
    problems += [f"figure shown at 1/{i['factor']:.2f} of its size (its text too small to read; draw it at most "
                 f"plotting.BOOK_WIDTH wide, in rows): {i['alt']}" for i in probe["shrunk"] if i["factor"] > MAX_SHRINK]
    if screenshots is not None:
        height = browser.call("Runtime.evaluate", expression="document.documentElement.scrollHeight", returnByValue=True)["result"]["value"]
        # the whole page (up to 12,000 px) as one tall viewport at half scale: captureBeyondViewport on a page taller
        # than that drew long chapters shifted left, with their sidebars cut off
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=min(int(height), 12000), deviceScaleFactor=0.5,
                     mobile=False)
        try:
            shot = browser.call("Page.captureScreenshot", format="png")
        finally:
            browser.call("Emulation.clearDeviceMetricsOverride")
        target = screenshots / (page.stem + ".png")
        target.write_bytes(base64.b64decode(shot["data"]))
    return problems


def pages(root: Path) -> list[Path]:
    """The book's pages: not Sphinx's search and index pages, and not a page that only redirects (index.html)."""
    return sorted(p for p in root.rglob("*.html") if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts
                  and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built book (_build/html)")
    parser.add_argument("--screenshots", type=Path, default=None, help="save one screenshot per page here")
    args = parser.parse_args(argv)
    found = pages(args.html)
    if not found:
        raise SystemExit(f"{args.html}: no HTML pages")
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    browser = Browser(find_chromium())
    failed = 0
    try:
        for page in found:
            problems = check_page(browser, page, args.screenshots)
            failed += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {page.relative_to(args.html)}" + "".join(f"\n       {p}" for p in problems), flush=True)
    finally:
        browser.close()
    print(f"{len(found) - failed} of {len(found)} pages pass" + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
