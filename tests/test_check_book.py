"""scripts/check_book.py, the browser check of the built book: each check fails on a page built to break it, and
a clean page passes. Needs Chromium (make test's scripts/ensure_chromium.sh installs Debian's chromium when it is missing)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)

pytest.importorskip("websocket", reason="websocket-client (requirements.txt) drives Chromium")
if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
    pytest.skip("no Chromium here (make test installs it: scripts/ensure_chromium.sh)", allow_module_level=True)

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000105e00b5c8a0000000049454e44ae426082")  # 1x1 pixel


def _page(folder: Path, name: str, body: str) -> Path:
    from PIL import Image

    (folder / "ok.png").write_bytes(PNG)
    for width in (800, 1000):  # figures 600 px shows at 1/1.33 and 1/1.67 of their width
        Image.new("RGB", (width, 100), "white").save(folder / f"figure{width}.png")
    page = folder / f"{name}.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body><main><article style='width: 600px'>"
                    f"<p>Some prose.</p>{body}</article></main></body></html>")
    return page


BROKEN = {
    "console": ("<script>undefined_function_of_the_page();</script>", "console: ReferenceError"),
    "image": ("<img src='missing.png'>", "image not loaded: missing.png"),
    "math": ("<p>the score \\(\\nabla_x \\log q_t(x)\\) untypeset</p>", "left untypeset"),
    "traceback": ("<pre>Traceback (most recent call last):\n  File ...\nValueError: bad</pre>", "error output"),
    "wide": ("<div style='width: 3000px'>a table too wide for the page</div>", "wider than the main column"),
    "shrunk": ("<div class='cell_output'><img src='figure1000.png' style='max-width: 100%'></div>", "figure shown at 1/1.67"),
    "scrolling": ("<div class='cell'><pre style='overflow-x: auto'>" + "x = 1  " * 200 + "</pre></div>", "scrolls sideways"),
}


@pytest.fixture(scope="module")
def browser():
    b = check_book.Browser(check_book.find_chromium())
    yield b
    b.close()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_check_fails_on_a_page_built_to_break_it(browser, tmp_path, name):
    body, expected = BROKEN[name]
    problems = check_book.check_page(browser, _page(tmp_path, name, body), None)
    assert any(expected in p for p in problems), problems


def test_a_clean_page_passes_and_a_wide_table_may_scroll_in_its_own_box(browser, tmp_path):
    body = ("<img src='ok.png'><div class='cell_output'><img src='figure800.png' style='max-width: 100%'></div><div style='overflow-x: auto'><table style='width: 3000px'><tr><td>a wide table</td></tr>"
            "</table></div><pre style='white-space: pre-wrap'>" + "a printed line that wraps " * 40 + "</pre>"
            "<script>console.error('Got invalid theme mode: . Resetting to auto.');</script>")
    page = _page(tmp_path, "clean", body)
    assert check_book.check_page(browser, page, tmp_path) == []
    assert (tmp_path / "clean.png").stat().st_size > 0  # the screenshot
