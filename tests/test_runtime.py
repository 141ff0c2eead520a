import ipywidgets

import mi_lib as mi


def test_static_interact_calls_once_with_the_initial_values(monkeypatch):
    monkeypatch.setenv("MI_STATIC_WIDGETS", "1")
    calls = []

    def show(label, k, scale=2.0):
        calls.append((label, k, scale))
        return "drawn"

    out = mi.interact(show, label=ipywidgets.Dropdown(options=["b", "a"], value="a"), k=["x", "y"], scale=(1.0, 5.0))
    assert out == "drawn" and calls == [("a", "x", 2.0)]  # scale keeps the function's default, as interact does


def test_live_interact_returns_the_widget(monkeypatch):
    monkeypatch.delenv("MI_STATIC_WIDGETS", raising=False)
    calls = []
    out = mi.interact(lambda k: calls.append(k), k=["x", "y"])
    assert calls == ["x"]  # interact runs the function once on display, with the first option
    assert isinstance(out.widget, ipywidgets.interactive)  # live controls, unlike the static path's plain result



def test_mi_lib_reads_the_environment_in_one_module():
    """Every os.environ / os.getenv of the package is in mi_lib/environment.py (which lists the variables)."""
    import re
    from pathlib import Path

    package = Path(mi.__file__).parent
    readers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if re.search(r"os\.environ|os\.getenv|getenv\(", p.read_text()))
    assert readers == ["environment.py"], readers


def test_a_switch_that_is_neither_on_nor_off_is_one_clear_error(monkeypatch):
    import pytest

    from mi_lib import environment

    monkeypatch.setenv("MI_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match=r"\$MI_PROGRESS='sometimes': set it to 0 or 1"):
        environment.progress()
    for value, expected in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv("MI_PROGRESS", value)
        assert environment.progress() is expected
    monkeypatch.delenv("MI_PROGRESS")
    assert environment.progress() is True
    monkeypatch.setenv("MI_STATIC_WIDGETS", "yes")
    assert environment.static_widgets() is True


def test_the_library_takes_its_settings_as_arguments():
    """Settings.from_environment is called at the boundary (the chapters' setup cells, the scripts), never inside
    mi_lib; the modules that ask mi_lib.environment anything are the few that describe the process, not a run."""
    import re
    from pathlib import Path

    package = Path(mi.__file__).parent
    texts = {str(p.relative_to(package)): p.read_text() for p in package.rglob("*.py")}
    assert [name for name, text in texts.items() if "from_environment(" in text] == ["settings.py"]
    askers = sorted(name for name, text in texts.items()
                    if re.search(r"^from \.+ import .*\benvironment\b|^from \.+environment import", text, re.M))
    assert askers == ["diffusion/fused.py", "runtime.py", "settings.py", "storage/cache.py"], askers
