"""The same algorithms on torch tensors, used when data lives on a CUDA device or ``device=`` names one.

The Rust core stays CPU-only; these modules mirror its semantics with torch ops, one file per algorithm:

- :mod:`.network_ops`: forward pass, Jacobian and input gradients;
- :mod:`.compiled`: the network's layers as tensors on a device (cached);
- :mod:`.relax` and :mod:`.propagate`: interval and linear (CROWN) bounds, batched over many boxes;
- :mod:`.bab`: input-splitting branch and bound in batches; :mod:`.attack`: projected gradient falsification;
- :mod:`.lipschitz`: naive bound, local Jacobian norms and the certificate's LMI eigenvalue checks.

torch is imported lazily: importing nncert never needs it.
"""

from .network_ops import _MODULE_CACHE, forward, input_gradient, jacobian, torch_module

__all__ = ["forward", "jacobian", "input_gradient", "torch_module"]
