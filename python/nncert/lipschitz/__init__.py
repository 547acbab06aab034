"""Certified Lipschitz upper bounds: naive, LipSDP-Neuron / -Layer (Fazlyab et al. 2019), LipSDP-NSR for
GroupSort / MaxMin / Householder (Pauli et al., ICLR 2024), mixed and residual networks, l2 and l-inf.

Every SDP bound is re-checked by the Rust core after the solver returns (exact eigenvalues of each LMI at
the solver's multipliers, repaired until positive semidefinite with a rounding margin), so
``certified=True`` means the bound holds whatever the solver's accuracy.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .. import _core
from .._arrays import as_float_array, check_finite
from ..devices import require_torch, resolve_device
from ..errors import Error, InvalidInputError, ShapeError, SolverError, UnsupportedModelError
from ..layers import reject_implicit
from ..network import Network
from .result import LipschitzResult

log = logging.getLogger("nncert.lipschitz")

#: "nsr-full": the full block-tridiagonal NSR LMI with the S and P multipliers (plain grouped chains).
METHODS = ("auto", "naive", "lipsdp-neuron", "lipsdp-layer", "nsr", "nsr-full")
SOLVERS = ("SCS", "CLARABEL", "MOSEK", "IPM")
BACKENDS = ("auto", "core", "torch")
#: auto uses an SDP only while every LMI is at most this wide (wider: the naive bound).
AUTO_MAX_LMI = 1200
#: auto switches from per-neuron to per-layer sector multipliers above this many neurons.
AUTO_MAX_NEURONS = 2000


def _norm(norm: Any) -> str:
    if norm in (2, "2", "l2"):
        return "2"
    if norm in ("inf", "linf", float("inf")) or (isinstance(norm, float) and np.isinf(norm)):
        return "inf"
    raise InvalidInputError(f"norm must be 2 or 'inf', got {norm!r}")


def _output_vector(net: Network, output: Any) -> np.ndarray | None:
    if output is None:
        return None
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
        k = int(output)
        if not -net.output_dim <= k < net.output_dim:
            raise ShapeError(f"output={k} is out of range for a network with {net.output_dim} outputs")
        c = np.zeros(net.output_dim)
        c[k] = 1.0
        return c
    c = as_float_array(output, "output", ndim=1)
    if c.shape[0] != net.output_dim:
        raise ShapeError(f"output vector has length {c.shape[0]} but the network has {net.output_dim} outputs")
    check_finite(c, "output")
    return np.ascontiguousarray(c, dtype=np.float64)


def _solver(solver: str | None, chain: dict[str, Any], norm: str) -> str:
    """None: nncert's own interior-point solver (``ipm``) where it applies (chains of grouped layers, plain or
    residual, and linear stages), else SCS."""
    from . import ipm

    if solver is None:
        return "IPM" if ipm.applies(chain, norm) else "SCS"
    name = str(solver).upper()
    if name not in SOLVERS:
        raise InvalidInputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if name == "IPM":
        if not ipm.applies(chain, norm):
            raise UnsupportedModelError("solver='IPM' handles chains of grouped layers (MaxMin, GroupSort, "
                                        "Householder; plain or residual blocks, with linear stages) only; use SCS, "
                                        "CLARABEL or MOSEK for this network")
        return name
    if name == "SCS":  # SCS is a dependency; its direct path needs no cvxpy (the cvxpy backend imports it itself)
        return name
    import cvxpy as cp

    if name not in cp.installed_solvers():
        raise InvalidInputError(f"solver {name} is not installed (installed: {', '.join(cp.installed_solvers())})")
    return name


def _pick_method(chain: dict[str, Any] | None, why_no_chain: str | None, norm: str, scalar: bool,
                 naive_reason: str | None = None) -> tuple[str, str]:
    """(method, why). ``naive_reason``: why the naive bound is unavailable (an implicit layer without a
    contraction), or None; then no fallback to naive exists and UnsupportedModelError says so."""
    if chain is None:
        if naive_reason is not None:
            raise UnsupportedModelError(f"no method applies: no SDP formulation ({why_no_chain}) and {naive_reason}")
        return "naive", f"no SDP formulation applies: {why_no_chain}"
    if norm == "inf" and not scalar:
        if naive_reason is not None:
            raise UnsupportedModelError(f"no method applies: l-inf SDP bounds need a scalar output (pass output=k "
                                        f"or a vector c) and {naive_reason}")
        return "naive", "l-inf SDP bounds need a scalar output (pass output=k or a vector c)"
    stages = chain["stages"]
    two_block = lambda st: st["kind"] in ("sector", "implicit") or st["residual"]  # noqa: E731
    widths = [st["W"].shape[1] + (st["W"].shape[0] if two_block(st) else 0) for st in stages]
    if norm == "2" and stages and not stages[0]["residual"]:
        W0 = stages[0]["W"]
        widths[0] = min(W0.shape) + (W0.shape[0] if two_block(stages[0]) else 0)
    if widths and max(widths) > AUTO_MAX_LMI:
        if naive_reason is not None:
            raise UnsupportedModelError(f"the largest LMI would be {max(widths)} wide (> {AUTO_MAX_LMI}, too large for "
                                        f"method='auto') and {naive_reason}; pass an SDP method explicitly")
        return "naive", f"largest LMI would be {max(widths)} wide (> {AUTO_MAX_LMI})"
    kinds = {st["kind"] for st in stages} | {st["act"] for st in stages if st["kind"] == "implicit"}
    if "groups" in kinds:
        return "nsr", "GroupSort/MaxMin/Householder layers: LipSDP-NSR chain (sector layers, if any, per neuron)"
    neurons = sum(st["W"].shape[0] for st in stages if "sector" in (st["kind"], st.get("act")))
    if neurons > AUTO_MAX_NEURONS:
        return "lipsdp-layer", f"{neurons} neurons (> {AUTO_MAX_NEURONS}): one multiplier per layer"
    return "lipsdp-neuron", "slope-restricted activations: one multiplier per neuron (tightest LipSDP variant offered)"


def _lower_budget(net: Network, scalar: bool, starts: int | None, steps: int | None) -> tuple[int, int]:
    """Multi-start budget for the sampled lower bound: 16 x 100 Jacobians for small networks, fewer (about
    5e9 flops in all) for large ones, unless given."""
    cost = 2.0 * (1 if scalar else net.output_dim) * max(net.num_params, 1)
    evals = int(min(1600, max(64, 5e9 / cost)))
    s = 16 if starts is None else int(starts)
    k = max(1, evals // s) if steps is None else int(steps)
    if s < 1 or k < 0:
        raise InvalidInputError(f"lower_bound_starts must be >= 1 and lower_bound_steps >= 0, got {starts}, {steps}")
    return s, min(k, 100) if steps is None else k


def _check_method(chain: dict[str, Any], method: str) -> None:
    if method.startswith("lipsdp"):
        for st in chain["stages"]:
            if st["kind"] == "groups" or (st["kind"] == "implicit" and st["act"] == "groups"):
                raise UnsupportedModelError(
                    f"{method} needs slope-restricted activations (ReLU, LeakyReLU, Tanh, Sigmoid); "
                    f"{st['layer']} is a grouped activation: use method='nsr'")


def lipschitz(net: Network, norm: Any = 2, method: str = "auto", output: Any = None, solver: str | None = None,
              certify: bool = True, device: Any = None, lower_bound_starts: int | None = None,
              lower_bound_steps: int | None = None,
              solver_options: dict[str, Any] | None = None, verbose: bool = False,
              gamma: bool = True, time_limit: float | None = None, backend: str = "auto") -> LipschitzResult:
    """An upper bound on the Lipschitz constant of ``net`` (or of x -> c^T net(x)).

    norm: 2 or "inf". method: "auto", "naive", "lipsdp-neuron", "lipsdp-layer", "nsr", "nsr-full".
    "nsr" is the decoupled layer-by-layer NSR chain (S = P = 0); "nsr-full" solves the full block-tridiagonal
    LMI over (x, z_1, ..., z_L) with the S and P multipliers that couple consecutive layers through the
    sum-preservation of each group (see ``sdp_full``): never looser than "nsr", slower (one LMI of size
    n_0 + sum of widths); plain GroupSort / MaxMin / Householder chains only, solver CLARABEL (default),
    SCS or MOSEK through cvxpy, certified in the Rust core like the chain (``details["lmis"]`` has the one LMI).
    output: None (whole output map), int k (output row k) or a vector c (the scalar map c^T f).
    solver: None (default: "IPM", nncert's own interior-point solver, for chains of grouped layers, plain or
    residual, with linear stages; "SCS" otherwise), "IPM", "SCS" (problem data built directly; ``solver_options={"backend": "cvxpy"}`` for the cvxpy
    model), "CLARABEL", "MOSEK" (through cvxpy). certify: re-check and repair the solver's multipliers in
    the Rust core (``certified`` is True only then); with certify=False the solver's bound is returned as is.
    time_limit: seconds for the SDP solver (SCS time_limit_secs / CLARABEL time_limit); a solver stopped by it
    returns its current multipliers, which the certificate then repairs (a valid, possibly looser bound).
    gamma: for nsr, use the gamma_j 11^T (Householder: I - vv^T) term of the group multipliers; False keeps
    only lambda_j I (a looser bound, for comparison). solver_options go to the solver (SCS settings such as eps_abs;
    cvxpy's solve for CLARABEL / MOSEK; tol, time_limit, threads, newton ("auto", "dense", "cg") for IPM).
    device: None / "cpu" (the Rust core) or "cuda" / "cuda:k": the naive bound's spectral norms, the sampled
    lower bound (batched local Jacobian norms) and the certificate's LMI eigenvalue checks run with torch ops
    on that device in float64 (the whole certificate: check, repair, re-check); the SDP solve stays on the
    CPU. backend: "auto" (by device), "core" or "torch" ("torch" with device "cpu" runs
    the torch path on the CPU, for testing).
    Raises UnsupportedModelError when the method does not apply to the network, SolverError when the solver
    fails or the certificate cannot be established.
    """
    t0 = time.perf_counter()
    if not isinstance(net, Network):
        raise InvalidInputError(f"net must be an nncert.Network, got {type(net).__name__}")
    dev = resolve_device(device, output)
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "core" and dev.type != "cpu":
        raise InvalidInputError(f"backend='core' runs on the CPU; device {dev} needs backend 'torch' or 'auto'")
    tl = None
    if backend == "torch" or dev.type == "cuda":
        require_torch("lipschitz")
        from ..torch_backend import lipschitz as tl
    nrm = _norm(norm)
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    c = _output_vector(net, output)
    if c is None and net.output_dim == 1:
        c_eff = np.ones(1)
    else:
        c_eff = c
    scalar = c_eff is not None
    details: dict[str, Any] = {"device": f"{dev} (torch)" if tl else "cpu (Rust core)"}
    starts, steps = _lower_budget(net, scalar, lower_bound_starts, lower_bound_steps)
    if tl is not None:
        reject_implicit(net.layers, "the torch (device) Lipschitz path")
    naive_reason = None
    if tl is not None:
        naive = tl.naive_bound(net, nrm, c_eff, dev)
        lower, x_star = tl.lower_bound(net, nrm, c_eff, starts, steps, 0, dev)
        x_star = x_star[None]
    else:
        try:
            naive = float(_core.lipschitz_naive(net._core, nrm, c_eff))
        except UnsupportedModelError as e:  # an implicit layer that is not a contraction in this norm
            naive, naive_reason = float("inf"), str(e)
            details["naive_unavailable"] = naive_reason
        lower, x_star = _core.lipschitz_lower(net._core, nrm, c_eff, starts, steps, 0)
    details["lower_bound_search"] = {"starts": starts, "steps": steps}
    details["lower_bound_point"] = x_star[0].tolist() if x_star.size <= 64 else None

    chain, why = None, None
    try:
        chain = _core.lipschitz_chain(net._core, c_eff)
    except UnsupportedModelError as e:
        why = str(e)
    if method == "auto":
        method_used, reason = _pick_method(chain, why, nrm, scalar, naive_reason)
        details["auto_reason"] = reason
    else:
        method_used = method
    if method_used == "naive":
        if naive_reason is not None:
            raise UnsupportedModelError(f"naive: {naive_reason}")
        return LipschitzResult(bound=naive, certified=True, naive_bound=naive, lower_bound=float(lower),
                               method="naive", norm=nrm, seconds=time.perf_counter() - t0, output=output,
                               details=details)
    if chain is None:
        raise UnsupportedModelError(f"{method_used}: {why}")
    if nrm == "inf" and not scalar:
        raise UnsupportedModelError(f"{method_used}: l-inf SDP bounds need a scalar output "
                                    f"(output=k or a vector c); the network has {net.output_dim} outputs")
    _check_method(chain, method_used)
    if method_used == "nsr-full":
        return _nsr_full(net, chain, nrm, c_eff, solver, certify, time_limit, solver_options, verbose, gamma,
                         details, naive, float(lower), output, t0)
    name = _solver(solver, chain, nrm)
    if time_limit is not None:
        if not time_limit > 0:
            raise InvalidInputError(f"time_limit must be positive, got {time_limit!r}")
        key = {"SCS": "time_limit_secs", "CLARABEL": "time_limit", "MOSEK": "mosek_params",
               "IPM": "time_limit"}[name]
        solver_options = dict(solver_options or {})
        if name == "MOSEK":
            solver_options[key] = {"MSK_DPAR_OPTIMIZER_MAX_TIME": float(time_limit)}
        else:
            solver_options[key] = float(time_limit)
    multipliers = "layer" if method_used == "lipsdp-layer" else "neuron"
    from . import direct, ipm, sdp

    log.info("lipschitz: %s, %d LMIs, solver %s", method_used, len(chain["stages"]) + 1, name)
    ts = time.perf_counter()
    opts = dict(solver_options or {})
    backend = opts.pop("backend", "direct" if name == "SCS" else "cvxpy")
    if backend not in ("direct", "cvxpy") or (backend == "direct" and name != "SCS"):
        raise InvalidInputError(f"solver_options['backend'] must be 'cvxpy', or 'direct' with SCS; got {backend!r} "
                                f"with {name}")
    if name == "IPM":
        unknown = set(opts) - {"tol", "time_limit", "threads", "newton"}
        if unknown:
            raise InvalidInputError(f"solver='IPM' takes solver_options tol, time_limit, threads and newton, got {sorted(unknown)}")
        rho, d, mults, status, info = ipm.solve(chain, nrm, use_gamma=gamma, verbose=verbose, **opts)
    elif backend == "direct":
        rho, d, mults, status, info = direct.solve(chain, nrm, multipliers, verbose=verbose, solver_options=opts,
                                                   use_gamma=gamma)
    else:
        rho, d, mults, status, info = sdp.solve(chain, nrm, multipliers, name, verbose=verbose,
                                               solver_options=opts, use_gamma=gamma)
    details.update(info)
    details["solver_seconds"] = time.perf_counter() - ts
    details["scale"] = chain["scale"]
    tc = time.perf_counter()
    if tl is not None:
        cert = tl.certify(chain, nrm, rho, d, mults, dev, certify)
    else:
        cert = _core.lipschitz_certify(net._core, nrm, rho, mults, d, c_eff, certify)
    details["certify_seconds"] = time.perf_counter() - tc
    return _certified_result(cert, certify=certify, method=method_used, status=status, solver=name, nrm=nrm,
                             naive=naive, lower=lower, output=output, details=details, t0=t0)


def _certified_result(cert: dict[str, Any], *, certify: bool, method: str, status: str, solver: str, nrm: str,
                      naive: float, lower: float, output: Any, details: dict[str, Any], t0: float) -> LipschitzResult:
    """The result from the core's certificate: its bound when certified (an error when it could not be, or
    when it lies below the sampled lower bound, which would be a bug), the solver's bound otherwise."""
    details["solver_bound"] = cert["solver_bound"]
    details["lmis"] = cert["lmis"]
    details["repaired"] = cert["repaired"]
    details["certificate"] = cert["message"]
    if certify:
        if not cert["certified"]:
            raise SolverError(f"{method}: the solver's multipliers could not be certified "
                              f"({cert['message']}); solver status {status!r}")
        bound, certified = float(cert["bound"]), True
        if bound < lower * (1 - 1e-9):
            raise Error(f"internal error: certified bound {bound} is below the sampled lower bound {lower} "
                        f"(please report)")
    else:
        bound, certified = float(cert["solver_bound"]), False
    return LipschitzResult(bound=bound, certified=certified, naive_bound=naive, lower_bound=float(lower),
                           method=method, norm=nrm, seconds=time.perf_counter() - t0, solver_status=status,
                           solver=solver, output=output, details=details)


def _nsr_full(net: Network, chain: dict[str, Any], nrm: str, c_eff: np.ndarray | None, solver: str | None,
              certify: bool, time_limit: float | None, solver_options: dict[str, Any] | None, verbose: bool,
              gamma: bool, details: dict[str, Any], naive: float, lower: float, output: Any,
              t0: float) -> LipschitzResult:
    """method="nsr-full": the full LMI through cvxpy, certified by ``_core.lipschitz_certify_full``."""
    import cvxpy as cp

    from . import sdp_full

    if not sdp_full.applies(chain):
        raise UnsupportedModelError("nsr-full handles chains of plain GroupSort / MaxMin / Householder layers "
                                    "(no residual blocks or slope-restricted activations); use method='nsr'")
    name = "CLARABEL" if solver is None else str(solver).upper()
    if name not in ("CLARABEL", "SCS", "MOSEK"):
        raise InvalidInputError(f"nsr-full takes solver CLARABEL, SCS or MOSEK, got {solver!r}")
    if name not in cp.installed_solvers():
        raise InvalidInputError(f"solver {name} is not installed (installed: {', '.join(cp.installed_solvers())})")
    opts = dict(solver_options or {})
    if time_limit is not None:
        if not time_limit > 0:
            raise InvalidInputError(f"time_limit must be positive, got {time_limit!r}")
        if name == "MOSEK":
            opts["mosek_params"] = {"MSK_DPAR_OPTIMIZER_MAX_TIME": float(time_limit)}
        else:
            opts["time_limit_secs" if name == "SCS" else "time_limit"] = float(time_limit)
    log.info("lipschitz: nsr-full, one LMI, solver %s", name)
    ts = time.perf_counter()
    rho, d, mults, Ss, Ps, status, info = sdp_full.solve(chain, nrm, name, verbose=verbose, solver_options=opts,
                                                        use_gamma=gamma)
    details.update(info)
    details["solver_seconds"] = time.perf_counter() - ts
    details["scale"] = chain["scale"]
    details["device"] = "cpu (Rust core)"
    tc = time.perf_counter()
    cert = _core.lipschitz_certify_full(net._core, nrm, rho, mults, Ss, Ps, d, c_eff, certify)
    details["certify_seconds"] = time.perf_counter() - tc
    return _certified_result(cert, certify=certify, method="nsr-full", status=status, solver=name, nrm=nrm,
                             naive=naive, lower=lower, output=output, details=details, t0=t0)


__all__ = ["lipschitz", "LipschitzResult", "METHODS"]


class _CallableModule(__import__("types").ModuleType):
    """Keeps ``nncert.lipschitz(net, ...)`` working even where the name resolves to this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> LipschitzResult:
        return lipschitz(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
