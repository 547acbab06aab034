"""The forward pass reads a million-row batch in place: peak memory grows by the output, not the input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

import nncert
from nncert._arrays import as_float_array

SCRIPT = textwrap.dedent("""
    import numpy as np, nncert
    from nncert.network import sequential
    def status_mb(key):  # VmRSS now, VmHWM peak (per process image; ru_maxrss is inherited across exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) / 1024
    net = sequential([64, 32, 32, 4], nncert.ReLU, seed=0)
    x = np.empty((1_000_000, 64), dtype=np.{dtype}, order="{order}")   # {size} MiB, no temporaries
    for i in range(0, 1_000_000, 100_000):
        x[i:i + 100_000] = (i % 7) / 7.0
    before = status_mb("VmRSS")
    y = net(x)
    peak = status_mb("VmHWM")
    print(peak - before, y.nbytes / 2**20)
""")


def _peak_growth(dtype: str, order: str) -> tuple[float, float]:
    size = 1_000_000 * 64 * (8 if dtype == "float64" else 4) // 2**20
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(dtype=dtype, order=order, size=size)],
                         capture_output=True, text=True, check=True)
    growth, out_mb = map(float, out.stdout.split())
    return growth, out_mb


def test_million_row_batch_is_not_copied():
    for dtype, order, input_mb in (("float64", "C", 488), ("float64", "F", 488), ("float32", "C", 244)):
        growth, out_mb = _peak_growth(dtype, order)
        # output + per-thread chunk scratch; a copy of the input would add input_mb on top
        assert growth < out_mb + 0.3 * input_mb, (dtype, order, growth)


def test_conversion_keeps_views():
    x = np.asfortranarray(np.ones((10, 3)))
    assert np.shares_memory(as_float_array(x, "x"), x)
    v = np.ones((10, 6))[:, ::2]
    assert np.shares_memory(as_float_array(v, "x"), v)
    f = np.ones((4, 3), dtype=np.float32)
    assert np.shares_memory(as_float_array(f, "x", allow_float32=True), f)
    net = nncert.Network([nncert.Dense(np.eye(3))])
    np.testing.assert_array_equal(net(v), v)
