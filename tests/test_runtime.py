import ipywidgets

import mi_lib as mi
from mi_lib.runtime import STATIC_WIDGETS_ENV


def test_static_interact_calls_once_with_the_initial_values(monkeypatch):
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "1")
    calls = []

    def show(label, k, scale=2.0):
        calls.append((label, k, scale))
        return "drawn"

    out = mi.interact(show, label=ipywidgets.Dropdown(options=["b", "a"], value="a"), k=["x", "y"], scale=(1.0, 5.0))
    assert out == "drawn" and calls == [("a", "x", 2.0)]  # scale keeps the function's default, as interact does


def test_live_interact_returns_the_widget(monkeypatch):
    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    calls = []
    out = mi.interact(lambda k: calls.append(k), k=["x", "y"])
    assert calls == ["x"]  # interact runs the function once on display, with the first option
    assert isinstance(out.widget, ipywidgets.interactive)  # live controls, unlike the static path's plain result

