"""The `nncert verify` / `verify-batch` commands and nncert.testing assertions."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert.cli import main
from nncert.testing import assert_holds, assert_lipschitz_below, assert_robust

from conftest import data_path


def test_cli_verify_writes_result_and_counterexample(tmp_path, capsys):
    onnx = data_path("vnncomp2021", "test", "test_sat.onnx")
    prop = data_path("vnncomp2021", "test", "test_prop.vnnlib")
    res, ce = tmp_path / "res.txt", tmp_path / "ce.txt"
    assert main(["verify", str(onnx), str(prop), "--timeout", "20", "--result", str(res),
                 "--counterexample", str(ce)]) == 0
    assert capsys.readouterr().out.strip() == "violated"
    assert res.read_text().startswith("violated\n")
    text = ce.read_text()
    assert text.startswith("((X_0 ") and "(Y_4 " in text
    vals = dict((tok.strip("()").split()[0], float(tok.strip("()").split()[1])) for tok in text.split("\n") if tok.strip("()"))
    x = np.array([vals[f"X_{i}"] for i in range(5)])
    y = nncert.Network.from_onnx(onnx)(x)
    assert np.allclose(y, [vals[f"Y_{j}"] for j in range(5)])
    assert np.all(y[0] <= y[1:])  # property 3 unsafe set: Y_0 minimal


def test_cli_verify_error_word_on_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)")
    onnx = data_path("vnncomp2021", "test", "test_nano.onnx")
    assert main(["verify", str(onnx), str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out.strip() == "error" and "bad.vnnlib:2" in out.err


def test_cli_verify_batch_summary_and_csv(tmp_path, capsys):
    csv_in = data_path("vnncomp2021", "test", "test_instances.csv")
    out = tmp_path / "out.csv"
    assert main(["verify-batch", str(csv_in), "--timeout-scale", "0.5", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "TOTAL" in table and "holds" in table
    lines = out.read_text().strip().splitlines()
    assert lines[0].startswith("onnx,vnnlib,status") and len(lines) == 6
    statuses = [l.split(",")[2] for l in lines[1:]]
    assert statuses == ["holds", "holds", "holds", "violated", "holds"]


def test_cli_verify_device(tmp_path, capsys):
    """--device: cpu is the Rust core; cuda where there is none is the protocol's error word with the reason."""
    onnx = data_path("vnncomp2021", "test", "test_sat.onnx")
    prop = data_path("vnncomp2021", "test", "test_prop.vnnlib")
    assert main(["verify", str(onnx), str(prop), "--timeout", "20", "--device", "cpu", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"status": "violated"' in out and "Rust core" in out
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        assert main(["verify", str(onnx), str(prop), "--device", "cuda"]) == 1
        out = capsys.readouterr()
        assert out.out.strip() == "error" and "CUDA" in out.err


def small_net():
    return nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense([[1.0, 1.0]])])


def test_assert_holds_passes_and_fails_with_counterexample():
    box = [(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))]
    ok = nncert.Property(box, [(np.array([[-1.0]]), np.array([-2.5]))])
    assert assert_holds(small_net(), ok, timeout=5).status == "holds"
    bad = nncert.Property(box, [(np.array([[-1.0]]), np.array([-1.5]))])
    with pytest.raises(AssertionError, match=r"violated.*\n  input  x = .*\n  output y = .*\n  unsafe constraints met"):
        assert_holds(small_net(), bad, timeout=5)


def test_assert_robust_and_timeout_message():
    rng = np.random.default_rng(0)
    net = nncert.Network([nncert.Dense(rng.standard_normal((8, 4))), nncert.ReLU(), nncert.Dense(rng.standard_normal((3, 8)))])
    x = np.full(4, 0.5)
    assert_robust(net, x, 1e-4, timeout=5)
    with pytest.raises(AssertionError, match="violated"):
        assert_robust(net, x, 0.5, timeout=5)
    acas = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx"))
    # Property 6 on 1_1 needs seconds of branch and bound (prop_2 there now holds in about 0.3 s).
    p = nncert.Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_6.vnnlib"))
    with pytest.raises(AssertionError, match="TIMED OUT.*not a violation"):
        assert_holds(acas, p, timeout=0.5)


def test_assert_lipschitz_below_imports_lipschitz_lazily(monkeypatch):
    class Res:
        bound, certified, method, lower_bound = 3.0, True, "naive", 2.0

    monkeypatch.setattr(nncert, "lipschitz", lambda net, norm=2, **kw: Res(), raising=False)
    assert_lipschitz_below(small_net(), 4.0)
    with pytest.raises(AssertionError, match="not below 2.*gap 1"):
        assert_lipschitz_below(small_net(), 2.0)


pytest_plugins = ["pytester"]


def test_pytest_plugin_adds_option_and_marker(pytester):
    from importlib.metadata import entry_points

    installed = any(ep.value == "nncert.pytest_plugin" for ep in entry_points(group="pytest11"))
    if not installed:  # running from a source tree: load the plugin the entry point would load
        pytester.makeconftest("pytest_plugins = ['nncert.pytest_plugin']")
    pytester.makepyfile("""
        import pytest
        from nncert import pytest_plugin

        def test_default():
            assert pytest_plugin.current_timeout() == 7.5

        @pytest.mark.nncert(timeout=2)
        def test_marker():
            assert pytest_plugin.current_timeout() == 2.0
    """)
    r = pytester.runpytest_inprocess("--nncert-timeout", "7.5", "-p", "no:cacheprovider", "--strict-markers")
    r.assert_outcomes(passed=2)
