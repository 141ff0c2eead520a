"""Small fixes to what Jupyter Book 1.x puts in a page, found by the browser check (scripts/check_book.py).

* sphinx-thebe's configuration script (``const THEBE_JS_URL = ...``) is added twice to every page with code
  cells, and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the reader's
  browser: identical inline scripts are kept once.
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # an inline script is registered once with filename None and once with "" (Sphinx's registry): the same script
        key = (getattr(script, "filename", None) or "", tuple(sorted((getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
