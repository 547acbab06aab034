"""torch stays optional: with torch unimportable, nncert imports, the CPU paths of verify, lipschitz and ConvexReLU run,
and asking for the torch backend is a clear InvalidInputError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
sys.modules["torch"] = None  # every `import torch` now fails
import numpy as np, nncert
from nncert import Property
net = nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense([[1.0, 1.0]])])
prop = Property([(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))], [(np.array([[-1.0]]), np.array([-2.5]))])
assert nncert.verify(net, prop).status == "holds"
assert abs(nncert.lipschitz(net, method="naive").bound - 8 ** 0.5) < 1e-9
import nncert.torch_backend
X = np.random.default_rng(0).normal(size=(20, 2))
assert np.isfinite(nncert.ConvexReLU(n_patterns=4, max_iter=50).fit(X, X[:, 0]).objective_)
for call in (lambda: nncert.verify(net, prop, backend="torch"), lambda: nncert.lipschitz(net, backend="torch"),
             lambda: nncert.ConvexReLU(backend="torch").fit(X, X[:, 0])):
    try:
        call()
    except nncert.InvalidInputError as e:
        assert "needs torch" in str(e), e
    else:
        raise AssertionError("no error without torch")
print("OK")
"""


def test_nncert_works_without_torch():
    import nncert
    env = dict(os.environ, PYTHONPATH=str(Path(nncert.__file__).resolve().parent.parent))
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr
