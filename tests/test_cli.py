"""The nncert command: --version, info, demo, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nncert
from nncert.cli import main

from conftest import data_path


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"nncert {nncert.__version__}"


def test_info_onnx(capsys):
    p = data_path("vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx")
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "5 inputs -> 5 outputs" in out and "13,305 parameters" in out and "devices: cpu" in out
    assert main(["info", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["input_dim"], d["output_dim"], d["num_params"]) == (5, 5, 13305)


def test_info_plain_npz(capsys):
    p = data_path("lipschitz", "maxmin_l2trained_2fc_16.npz")
    assert main(["info", str(p), "--activation", "maxmin"]) == 0
    assert "784 inputs -> 10 outputs" in capsys.readouterr().out


def test_errors_exit_1_with_message(capsys, tmp_path):
    assert main(["info", str(tmp_path / "missing.onnx")]) == 1
    assert "error: no such file" in capsys.readouterr().err
    (tmp_path / "m.txt").write_text("x")
    assert main(["info", str(tmp_path / "m.txt")]) == 1
    assert "unknown model format" in capsys.readouterr().err


def test_console_script_runs_demo():
    out = subprocess.run([sys.executable, "-m", "nncert.cli", "demo"], capture_output=True, text=True, check=True)
    assert "Network" in out.stdout and "net(x)" in out.stdout
