"""The twin selector (clfsload._native): both twins of each topic have the same public
surface, the selector exports the loaded one; CLFSLOAD_NO_EXTENSIONS picks the pure
twins, the default the compiled ones."""

import inspect
import os
import subprocess
import sys

import pytest

import clfsload._native

from _twins import TOPICS


# --- the twins and the selector ----------------------------------------------


@pytest.mark.parametrize("topic", TOPICS)
def test_same_public_surface(twins, topic):
    """Same ``__all__``, same parameter names, kinds and defaults, docstrings on every callable."""
    py, c = twins(topic)
    assert list(c.__all__) == list(py.__all__)
    for name in py.__all__:
        py_params = [(p.name, p.kind, p.default) for p in inspect.signature(getattr(py, name)).parameters.values()]
        c_params = [(p.name, p.kind, p.default) for p in inspect.signature(getattr(c, name)).parameters.values()]
        assert c_params == py_params, name
        assert getattr(c, name).__doc__, name


@pytest.mark.parametrize("topic", TOPICS)
def test_selector_exports_the_loaded_twin(topic):
    selector = __import__("clfsload._native.%s" % topic, fromlist=["IMPLEMENTATION"])
    module = selector.IMPLEMENTATION
    assert module.__name__ == "clfsload._native.%s_%s" % (topic, "c" if clfsload._native._compat.LOADED[topic] == "cython" else "py")
    for name in module.__all__:
        assert getattr(selector, name) is getattr(module, name)


def _backend_in_subprocess(**env_changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLFSLOAD_")}
    env.update(env_changes)
    root = os.path.dirname(os.path.dirname(os.path.abspath(clfsload.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = "import clfsload._native as n; print(n.BACKEND, *sorted(n._compat.LOADED.items()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def test_no_extensions_env_selects_pure_twins():
    assert _backend_in_subprocess(CLFSLOAD_NO_EXTENSIONS="1") == "python"


@pytest.mark.c_extension
def test_compiled_twins_preferred_by_default(c_skip_reason):
    if c_skip_reason:
        pytest.skip(c_skip_reason)
    assert _backend_in_subprocess() == "cython"
    assert _backend_in_subprocess(CLFSLOAD_REQUIRE_EXTENSIONS="1") == "cython"
