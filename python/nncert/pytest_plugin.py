"""pytest plugin (entry point ``nncert`` in pytest11): ``--nncert-timeout`` sets the default timeout of
``nncert.testing`` assertions, and the ``nncert`` marker tags model-verification tests
(``@pytest.mark.nncert(timeout=30)`` overrides the timeout for one test)."""

from __future__ import annotations

import pytest

_current: list[float | None] = [None]


def current_timeout() -> float | None:
    return _current[-1]


def pytest_addoption(parser):
    group = parser.getgroup("nncert")
    group.addoption("--nncert-timeout", type=float, default=None,
                    help="default timeout (s) of nncert.testing assertions (default 60)")


def pytest_configure(config):
    config.addinivalue_line("markers", "nncert(timeout=None): a model-verification test using nncert.testing")
    _current[0] = config.getoption("--nncert-timeout", default=None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("nncert")
    pushed = m is not None and m.kwargs.get("timeout") is not None
    if pushed:
        _current.append(float(m.kwargs["timeout"]))
    try:
        yield
    finally:
        if pushed:
            _current.pop()
