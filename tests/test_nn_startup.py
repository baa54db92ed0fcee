"""When fit runs compiled epochs (numbce._config.COMPILED_EPOCHS), the background compile
that fills the cache for later fits, and the notice printed while compiling."""

import io
import json
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from numbce import _cache, _config
from numbce.nn import MLP, compiled, training

FAMILY, DTYPE = "binary_cross_entropy_with_logits", "float64"


@pytest.fixture
def data(rng):
    X = rng.normal(size=(64, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def _fit(data, **options):
    network = MLP([3, 4, 1], seed=0, dtype=np.float64)
    return network, network.fit(*data, epochs=3, batch_size=16, seed=0, **options)


@pytest.mark.parametrize("cached", [False, True])
def test_auto_runs_compiled_epochs_only_where_compiled(monkeypatch, data, cached):
    """Not compiled: the Python loop, and one background compile of the family and
    dtype; compiled: the compiled epochs, and no background compile. The same bits."""
    launched = []
    monkeypatch.setattr(compiled.CompiledFit, "ready", lambda self: cached)
    monkeypatch.setattr(
        compiled, "compile_in_background", lambda *key: launched.append(key)
    )
    monkeypatch.setattr(_config, "COMPILED_EPOCHS", "auto")
    network, history = _fit(data)
    assert history.params["compiled"] is cached
    assert launched == ([] if cached else [(FAMILY, DTYPE)])
    monkeypatch.setattr(_config, "COMPILED_EPOCHS", "never")
    reference, _ = _fit(data)
    for a, b in zip(network.parameters(), reference.parameters()):
        np.testing.assert_array_equal(a, b)


def test_a_bad_compiled_epochs_setting(monkeypatch, data):
    monkeypatch.setattr(_config, "COMPILED_EPOCHS", "sometimes")
    with pytest.raises(ValueError, match="COMPILED_EPOCHS must be 'auto', 'always' or"):
        _fit(data)


def test_a_compile_in_another_process_serves_a_later_fit():
    """``compile_epochs`` in one process; a later process's fit finds the epochs in the
    cache (``ready`` before the fit) and runs them: what the background compile is
    for. The processes share the suite's cache, so that this costs one compile."""
    subprocess.run(
        [sys.executable, "-c",
         (f"from numbce.nn.network import compile_epochs; compile_epochs({FAMILY!r}, "
         f"{DTYPE!r})")],
        check=True, timeout=600,
    )  # fmt: skip
    script = textwrap.dedent(
        """
        import json, numpy as np
        from numbce.nn import MLP, compiled
        from numbce.optim import Adam
        X = np.random.default_rng(0).normal(size=(50, 5))
        y = (X[:, 0] > 0).astype(np.int64)
        net = MLP([5, 7, 1], seed=0, dtype=np.float64)
        net._allocate(16, (5,))
        runner = compiled.CompiledFit(net, Adam(net.parameters()),
                                      (X, y.reshape(-1, 1).astype(float), None, None),
                                      (X, y.reshape(-1, 1).astype(float)), 16, 0.0)
        ready = runner.ready()
        history = net.fit(X, y, epochs=2, batch_size=16, validation_split=0.2)
        print(json.dumps([ready, history.params["compiled"]]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert json.loads(out.stdout.splitlines()[-1]) == [True, True]


def test_background_compiles_start_once_with_a_spare_core(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(_config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(compiled, "_LAUNCHED", set())
    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(
        compiled.subprocess, "Popen", lambda argv, **kw: started.append((argv, kw))
    )
    monkeypatch.setattr(compiled, "_spare_core", lambda: False)
    assert compiled.compile_in_background(FAMILY, "float32") is None
    assert not started
    monkeypatch.setattr(compiled, "_spare_core", lambda: True)
    compiled.compile_in_background(FAMILY, "float32")
    compiled.compile_in_background(FAMILY, "float32")  # once per process
    assert len(started) == 1
    argv, options = started[0]
    assert argv[0] == sys.executable and "compile_epochs('" + FAMILY in argv[2]
    assert options["start_new_session"] and options["stdout"] == subprocess.DEVNULL
    # Another process's compile under way (its lock file is fresh): none started.
    monkeypatch.setattr(compiled, "_LAUNCHED", set())
    assert compiled.compile_in_background(FAMILY, "float32") is None
    assert len(started) == 1
    # Off in the settings: none.
    monkeypatch.setattr(_config, "BACKGROUND_COMPILE", False)
    monkeypatch.setattr(compiled, "_LAUNCHED", set())
    compiled.lock_path(FAMILY, "float32").unlink()
    assert compiled.compile_in_background(FAMILY, "float32") is None


def test_the_compile_notice_is_printed_once_and_only_on_a_compile(monkeypatch):
    monkeypatch.setattr(_cache.CompileNotice, "said", False)

    def add_one(x):
        return x + 1

    add_one.__module__ = "numbce.test_notice"
    kernel = numba.njit(add_one)
    stream = io.StringIO()
    with _cache.CompileNotice(stream, "compiling ..."):
        kernel(1)
        kernel(1.5)  # a second compile: no second notice
        kernel(2)  # compiled already
    assert stream.getvalue() == "compiling ...\n"
    with _cache.CompileNotice(stream, "compiling ..."):
        numba.njit(add_one)(3)
    assert stream.getvalue() == "compiling ...\n"  # once per process


def test_fit_announces_compiling_with_verbose(monkeypatch, data, capsys):
    monkeypatch.setattr(_cache.CompileNotice, "said", False)
    notices = []

    class Recording(_cache.CompileNotice):
        def __enter__(self):
            notices.append(self.message)
            return super().__enter__()

    monkeypatch.setattr(training, "CompileNotice", Recording)
    _fit(data, verbose=2)
    _fit(data, verbose=0)
    assert notices == [training.COMPILE_NOTICE]


def test_a_compile_process_that_cannot_start_leaves_no_lock(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(_config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(compiled, "_LAUNCHED", set())
    monkeypatch.setattr(compiled.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(compiled, "_spare_core", lambda: True)
    monkeypatch.setattr(compiled.subprocess, "Popen", refuse)
    assert compiled.compile_in_background(FAMILY, "float32") is None
    assert not compiled.lock_path(FAMILY, "float32").exists()
    assert not compiled._LAUNCHED  # the next fit tries again
