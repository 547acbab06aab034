"""``nncert.ConvexReLU``: a two-layer ReLU network trained to global optimality (for its patterns)."""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Any

import numpy as np

from .._arrays import as_float_array, check_finite, is_torch_tensor
from ..devices import available_memory, require_torch, resolve_device
from ..errors import InvalidInputError, ShapeError, SolverError, UnsupportedModelError
from . import formulation as F
from .patterns import check_patterns, enumerate_patterns, robust_nontrivial, sample_gates, sample_patterns

log = logging.getLogger("nncert.convex")

SOLVERS = ("admm", "admm-approx", "scp", "cvxpy", "ipm")
# Newton steps of solver="ipm" at most (max_iter caps it further); it needs 20-40.
IPM_MAX_STEPS = 200
ADVERSARIAL_SOLVERS = ("admm", "cvxpy")
# Residual-balancing period of the robust ADMM (every loss is split off there, so balancing is free). Its default
# penalty is rho = beta clipped to [1e-4, 1], as for the split losses of the standard ADMM (on the 25 x 3 test
# problem, squared loss, eps = 0.05, beta = 0.05: 2,535 iterations to tol 1e-10 against 42,461 with rho = 1).
ROBUST_ADAPT_EVERY = 25
BACKENDS = ("auto", "core", "torch")
# Default memory and safeguard of the Anderson-accelerated ADMM (core path, anderson=None); see bench/README.md.
ANDERSON_MEMORY = 10
ANDERSON_SAFEGUARD = 2.0
# Default period of the core ADMM's convergence checks (residuals, objective: three GEMMs each time).
CHECK_EVERY = 10
# Inexact PCG u-steps (core): iteration k solves to relative residual min(PCG_DECAY / k^1.5, 0.01 x the relative
# ADMM residuals of the last check), never below 1e-10; see AdmmSettings::pcg_decay and bench/README.md.
PCG_DECAY = 1e-2
HISTORY_FIELDS = ("iter", "objective", "primal_residual", "dual_residual", "violation", "seconds",
                  "inner_iterations")


def weight_scale(X: np.ndarray, y: np.ndarray) -> float:
    """The size of a group that explains targets y from features X (rms(y) / rms(X)): the scale below which an
    interior-point solver's groups are round-off."""
    xs = float(np.sqrt(np.mean(X * X))) if X.size else 0.0
    ys = float(np.sqrt(np.mean(y * y))) if y.size else 0.0
    return ys / xs if xs > 0 and ys > 0 else 1.0


def prune_groups(M: np.ndarray, scale: float = 1.0, rel: float = 1e-6) -> np.ndarray:
    """Zeroes the columns an interior-point solver leaves at round-off size instead of exactly zero: norms at most
    rel times the larger of the largest norm and ``scale`` (weight_scale of the data, so that targets of size
    1e-5 keep their groups; the objective is re-evaluated afterwards, so this never hides a change)."""
    norms = np.linalg.norm(M, axis=0)
    out = M.copy()
    out[:, norms <= rel * max(scale, norms.max(initial=0.0))] = 0.0
    return out


class ConvexReLU:
    """Two-layer ReLU network trained by solving its convex reformulation.

    For activation patterns D_1..D_P (sampled from ``n_patterns`` random gates, duplicates removed; given
    as ``patterns``; or ``patterns="all"``: every pattern of the data's hyperplane arrangement, the exact
    formulation, whose optimum is the global optimum over all two-layer ReLU networks of any width; its
    size grows like n^rank(X), so it is for low-dimensional data) it solves
        min loss(sum_i D_i X (v_i - w_i), y) + beta sum_i (||v_i||_2 + ||w_i||_2)
        s.t. (2D_i - I) X v_i >= 0, (2D_i - I) X w_i >= 0
    whose optimum equals the weight-decay-regularised training objective of the ReLU network that
    :meth:`to_network` builds (Pilanci & Ergen 2020). ``loss="squared"`` is 0.5 * sum of squared errors.

    Targets: with ``loss="squared"`` a float ``y`` (n,) or (n, k) is regressed; integer, boolean or
    string labels are classified (two classes: one output with targets -1/+1; more: one output per
    class, one-vs-rest -1/+1). ``loss="logistic"``/``"hinge"`` always classify.

    ``solver``: ``"admm"`` (Bai, Gautam & Sojoudi 2022, in the Rust core; u-step chosen by ``u_solver``),
    ``"admm-approx"`` (the same ADMM on the approximate formulation, i.e. sampled patterns, with the u-step
    fixed to the n x n Woodbury factorisation so that one iteration costs O(n^2 + n d P) after a one-off
    factorisation; it falls back to ``u_solver`` only when the n x n matrix does not fit in memory),
    ``"scp"`` (sampled convex program of Bai et al.: ``n_patterns`` random unit-norm hidden neurons h_j kept
    fixed and the convex output layer min loss((X H)_+ a, y) + beta ||a||_1 solved by ADMM in the Rust core;
    the optimum of that restricted program, never below the cone-constrained one with the patterns
    1[X h_j >= 0]), ``"cvxpy"`` (the reference formulation, Clarabel) or ``"ipm"`` (``loss="squared"`` only: a
    primal-dual interior-point method written for this program, ``nncert.convex.ipm``; each Newton step is one
    dense Cholesky factorisation of a Pd x Pd matrix, or of an n x n one when that is cheaper, and it needs 20-40
    of them whatever the accuracy asked, so it is the fastest exact solver while (Pd)^2 or n^2 doubles fit in memory;
    ``tol`` is its relative duality gap and residual tolerance, ``max_iter`` caps its Newton steps at 200). ``adversarial_eps > 0`` trains
    against l-inf perturbations of the features (robust program of Bai et al., Section 4: patterns held on the
    eps-box by (2D_i - I) X v_i >= eps ||v_i||_1, worst-case losses with eps ||sum_i D_i (v_i - w_i)||_1; then
    ``objective_`` is the network's exact worst-case training loss plus the regulariser) with ``solver="admm"``
    (the robust ADMM of the Rust core; u-step dense or PCG, ``u_solver="woodbury"`` is refused) or ``"cvxpy"``;
    ``"admm-approx"`` and ``"scp"`` raise ``UnsupportedModelError``.

    ``device``: None (where X lives), ``"cpu"``, ``"cuda"`` or ``"cuda:k"``; ``backend``: ``"auto"`` (the Rust
    core on the CPU, torch on a CUDA device), ``"core"`` or ``"torch"`` (``backend="torch", device="cpu"`` runs the
    torch path on the CPU, for testing). On the torch path ``"admm"``/``"admm-approx"`` run the same ADMM as the core
    (``nncert.torch_backend.convex``) on the device, in ``dtype`` (``"float64"``; ``"float32"`` on the torch path
    only, with ``tol`` >= 1e-5 or so); the final cone projection runs in the core on the CPU. ``"cvxpy"`` and
    ``"scp"`` always run on the CPU (a device is then noted in the log, not an error). The fitted weights and
    predictions are numpy arrays whatever the device (torch inputs are accepted everywhere).

    ``check_every``: the ADMM (``"admm"``/``"admm-approx"``, standard program, Rust core) evaluates its residuals,
    objective and stopping test every ``check_every`` iterations (None: 10 on the core; the torch path checks every
    iteration and accepts only None or 1). A check costs three n x d x 2P products besides the iteration's own
    three (with the other changes of that commit: 1.25x cheaper iterations at n = 2000, d = 50, P = 50, see
    bench/README.md); the iterates are the same, the run
    stops at the first check that passes (at most ``check_every - 1`` iterations later), and ``history_`` then has
    one row per check (its ``iter`` column says which iteration; ``inner_iterations`` sums the PCG iterations since
    the previous row). Ignored by the robust ADMM and the SCP.

    ``pcg_decay``: inexact PCG u-steps (core ADMM, only when the u-step is PCG, i.e. for large n and d): iteration k
    solves to relative residual min(pcg_decay / k^1.5, 0.01 x the relative ADMM residuals of the last check), never
    below 1e-10, from the previous iterate. None: 1e-2 on the core (0 on the torch path); 0: every solve to 1e-10.
    The stopping rule and the final cone projection are unchanged.

    ``anderson``: memory of the safeguarded type-II Anderson acceleration of the ADMM fixed-point iteration
    (``"admm"``/``"admm-approx"`` in the Rust core; None: 10 on the core, off on the torch path; 0: the plain ADMM
    with over-relaxation 1.6, as before). An accelerated point whose fixed-point residual is more than twice that
    of the point it came from is rejected and the memory cleared; the returned point is always a plain ADMM step's
    output, projected onto the cones when the run converged. Not available on the torch path (an explicit
    ``anderson > 0`` there raises ``UnsupportedModelError``) nor for ``adversarial_eps > 0`` (ignored).

    Fitted attributes: ``objective_`` (re-evaluated in numpy from the returned weights), ``n_iter_``,
    ``history_`` (dict of arrays, one row per convergence check: every iteration, or every ``check_every``-th for
    the core ADMM), ``patterns_`` (n, P), ``V_``/``W_`` (outputs, d, P; the
    last row is the bias when ``fit_intercept``), ``constraint_violation_``, ``status_``, ``u_solver_``,
    ``anderson_`` (ADMM: dict of memory, accepted and rejected accelerated points),
    ``classes_`` (classification), ``fit_seconds_``, ``device_`` (where the solver ran),
    ``ipm_system_``, ``ipm_gap_`` (relative duality gap reached, the largest over outputs), ``ipm_correctors_`` and
    ``ipm_lower_bound_`` (``solver="ipm"``: a lower bound on the program's optimum from a dual-feasible point built
    from the solver's multipliers after it returns, so ``objective_ - ipm_lower_bound_`` is a checked optimality gap
    of the returned network; its ``history_`` has a ``gap`` column instead of ``violation``),
    ``robust_patterns_`` (``adversarial_eps > 0`` with ``solver="admm"``: which patterns' robust cones are not {0};
    the others' groups are zero in every feasible point and are left out of the solve),
    ``network_objective_`` (the objective of the ReLU network itself on the training data; equal to
    ``objective_`` up to the constraint violation when ``adversarial_eps`` is 0; below it otherwise: it is the
    loss on the unperturbed points).
    """

    def __init__(self, n_patterns: int = 100, beta: float = 1e-3, loss: str = "squared", solver: str = "admm",
                 adversarial_eps: float = 0.0, patterns: Any = None, random_state: Any = 0,
                 fit_intercept: bool = True, standardize: bool = False, max_iter: int = 10000, tol: float = 1e-6,
                 rho: float | None = None, u_solver: str = "auto", time_limit: float | None = None,
                 memory_limit: float | None = None, verbose: bool = False, device: Any = None,
                 backend: str = "auto", dtype: str = "float64", anderson: int | None = None,
                 check_every: int | None = None, pcg_decay: float | None = None):
        self.n_patterns = n_patterns
        self.beta = beta
        self.loss = loss
        self.solver = solver
        self.adversarial_eps = adversarial_eps
        self.patterns = patterns
        self.random_state = random_state
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.rho = rho
        self.u_solver = u_solver
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.verbose = verbose
        self.device = device
        self.backend = backend
        self.dtype = dtype
        self.anderson = anderson
        self.check_every = check_every
        self.pcg_decay = pcg_decay

    # ------------------------------------------------------------------ scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> "ConvexReLU":
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise InvalidInputError(f"ConvexReLU has no parameter {k!r} (valid: {', '.join(valid)})")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = []
        for k in self._param_names():
            v = getattr(self, k)
            dv = defaults[k].default
            if isinstance(v, np.ndarray) or not (v is dv or v == dv):
                changed.append(f"{k}={'<array>' if isinstance(v, np.ndarray) else repr(v)}")
        return f"ConvexReLU({', '.join(changed)})"

    # ------------------------------------------------------------------ input handling
    def _check_params(self) -> None:
        if self.loss not in F.LOSSES:
            raise InvalidInputError(f"loss must be one of {F.LOSSES}, got {self.loss!r}")
        if self.solver not in SOLVERS:
            raise InvalidInputError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        b = self.beta
        if not isinstance(b, (int, float, np.floating, np.integer)) or not np.isfinite(b) or b <= 0:
            raise InvalidInputError(f"beta must be a positive finite number, got {b!r}")
        e = self.adversarial_eps
        if not isinstance(e, (int, float, np.floating, np.integer)) or not np.isfinite(e) or e < 0:
            raise InvalidInputError(f"adversarial_eps must be a finite number >= 0, got {e!r}")
        if isinstance(self.patterns, str) and self.patterns != "all":
            raise InvalidInputError(f"patterns must be None, 'all' or an (n_samples, P) 0/1 matrix, got {self.patterns!r}")
        if self.solver == "scp" and self.patterns is not None:
            raise UnsupportedModelError("solver='scp' samples its own hidden neurons (n_patterns of them); "
                                        "explicit patterns are used by 'admm', 'admm-approx' and 'cvxpy'")
        if self.solver == "ipm" and self.loss != "squared":
            raise UnsupportedModelError(f"solver='ipm' solves the squared-loss program (got loss={self.loss!r}); "
                                        "use solver='admm' or 'cvxpy' for the logistic and hinge losses")
        if e > 0 and self.solver not in ADVERSARIAL_SOLVERS:
            raise UnsupportedModelError(
                f"adversarial_eps > 0 is implemented by solver='admm' (Rust core) and solver='cvxpy' only (got "
                f"solver={self.solver!r}; 'admm-approx' fixes the n x n Woodbury u-step, which does not cover the "
                "robust program, and 'scp' fixes its neurons, which the robust cone constraints would mostly zero)")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise InvalidInputError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise InvalidInputError(f"tol must be positive, got {self.tol!r}")
        a = self.anderson
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 0):
            raise InvalidInputError(f"anderson must be None or an integer >= 0 (0: plain ADMM), got {a!r}")
        c = self.check_every
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1):
            raise InvalidInputError(f"check_every must be None or an integer >= 1, got {c!r}")
        if self.pcg_decay is not None and not (np.isfinite(self.pcg_decay) and self.pcg_decay >= 0):
            raise InvalidInputError(f"pcg_decay must be None or >= 0, got {self.pcg_decay!r}")
        if self.rho is not None and not (np.isfinite(self.rho) and self.rho > 0):
            raise InvalidInputError(f"rho must be positive, got {self.rho!r}")
        if self.standardize and not self.fit_intercept:
            raise InvalidInputError("standardize=True centres X, which needs fit_intercept=True (the centring "
                                    "becomes part of the bias)")
        if self.standardize and self.adversarial_eps > 0:
            raise InvalidInputError("adversarial_eps with standardize=True would measure the perturbation in "
                                    "standardized units; standardize X yourself or set standardize=False")

    def _resolve_backend(self, X: Any):
        """(device, on_torch) for a fit; errors for an unknown backend, CUDA without CUDA, core on a GPU."""
        dev = resolve_device(self.device, X)
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in ("float64", "float32"):
            raise InvalidInputError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        if self.backend == "core" and dev.type != "cpu":
            raise InvalidInputError(f"backend='core' runs on the CPU; device {dev} needs backend 'torch' or 'auto'")
        on_torch = self.backend == "torch" or dev.type == "cuda"
        if on_torch:
            require_torch("ConvexReLU")
        if on_torch and self.adversarial_eps > 0:
            log.info("adversarial_eps > 0: the robust ADMM runs in the Rust core on the CPU (device %s unused)", dev)
            on_torch = False
        if self.dtype == "float32" and not (on_torch and self.solver in ("admm", "admm-approx")):
            raise InvalidInputError("dtype='float32' is for the torch ADMM (solver 'admm'/'admm-approx' with "
                                    "backend='torch' or a CUDA device); the core and cvxpy run in float64")
        if on_torch and self.solver in ("scp", "cvxpy", "ipm"):
            log.info("solver=%r runs on the CPU (the Rust core / cvxpy); device %s is used by 'admm' only",
                     self.solver, dev)
            on_torch = False
        return dev, on_torch

    def _features(self, X: Any, fitting: bool) -> np.ndarray:
        if not fitting:
            resolve_device(self.device, X)
        X = as_float_array(X, "X", ndim=2)
        check_finite(X, "X")
        if fitting:
            self.n_features_in_ = X.shape[1]
            if self.standardize:
                self.mean_ = X.mean(axis=0)
                std = X.std(axis=0)
                self.scale_ = np.where(std > 0, std, 1.0)
        elif X.shape[1] != self.n_features_in_:
            raise ShapeError(f"X has {X.shape[1]} features but the model was fitted with {self.n_features_in_}")
        if self.standardize:
            X = (X - self.mean_) / self.scale_
        if self.fit_intercept:
            X = np.hstack([X, np.ones((X.shape[0], 1))])
        return np.ascontiguousarray(X, dtype=np.float64)

    def _targets(self, y: Any, n: int) -> np.ndarray:
        """(n, k) float targets; sets classes_ for classification."""
        if is_torch_tensor(y):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        if y.shape[0] != n:
            raise ShapeError(f"y has {y.shape[0]} entries but X has {n} rows")
        classify = self.loss != "squared" or y.dtype.kind in "biuOSU"
        self._classify = classify
        if not classify:
            y = as_float_array(y, "y", ndim=(1, 2))
            check_finite(y, "y")
            self._single_output = y.ndim == 1
            return y.reshape(n, -1).astype(np.float64)
        if y.ndim != 1:
            raise ShapeError(f"class labels must be 1-D, got shape {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)):
                raise InvalidInputError("y contains NaN or inf")
            if not np.all(y == np.round(y)):
                raise InvalidInputError(f"the {self.loss} loss needs class labels, but y has non-integer values "
                                        f"(e.g. {y[y != np.round(y)][0]}); use loss='squared' for regression")
        classes = np.unique(y)
        if classes.size < 2:
            raise InvalidInputError(f"y has a single class ({classes[0]!r}); classification needs at least two")
        self.classes_ = classes
        self._single_output = classes.size == 2
        if classes.size == 2:
            return np.where(y == classes[1], 1.0, -1.0)[:, None]
        return np.where(y[:, None] == classes[None, :], 1.0, -1.0)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> "ConvexReLU":
        self._check_params()
        t0 = time.perf_counter()
        self._device, self._on_torch = self._resolve_backend(X)
        Xa = self._features(X, fitting=True)
        Y = self._targets(y, Xa.shape[0])
        n, d = Xa.shape
        H = None
        if self.solver == "scp":
            H = sample_gates(d, self.n_patterns, self.random_state)
            D = np.ascontiguousarray((Xa @ H >= 0).astype(np.float64))
        elif isinstance(self.patterns, str):
            D = enumerate_patterns(Xa)
        elif self.patterns is None:
            D = sample_patterns(Xa, self.n_patterns, self.random_state)
            if D.shape[1] == 0:
                raise InvalidInputError("every sampled pattern was empty; check X")
        else:
            D = check_patterns(self.patterns, n)
        self.patterns_ = D
        self.__dict__.pop("robust_patterns_", None)  # set again by a robust ADMM fit only
        P = D.shape[1]
        feat = np.ones(d, dtype=bool)
        if self.fit_intercept:
            feat[-1] = False
        self._feat = feat
        self._check_memory(n, d, P)
        eps = float(self.adversarial_eps)
        k = Y.shape[1]
        V = np.zeros((k, d, P))
        W = np.zeros((k, d, P))
        if self.solver == "cvxpy":
            from .reference import solve_reference
            iters, statuses, hist = 0, [], []
            for c in range(k):
                sol = solve_reference(Xa, Y[:, c], D, float(self.beta), self.loss, eps, feat)
                ws = weight_scale(Xa, Y[:, c])
                V[c], W[c] = prune_groups(sol.V, ws), prune_groups(sol.W, ws)
                iters = max(iters, sol.iterations)
                statuses.append(sol.status)
                hist.append((c, sol.iterations, sol.objective, sol.seconds))
            self.n_iter_ = iters
            self.status_ = statuses[0] if len(set(statuses)) == 1 else statuses
            self.u_solver_ = None
            self.device_ = "cpu (cvxpy)"
            self.history_ = {"output": np.array([h[0] for h in hist]), "iter": np.array([h[1] for h in hist]),
                             "objective": np.array([h[2] for h in hist]), "seconds": np.array([h[3] for h in hist])}
        elif self.solver == "scp":
            self._fit_scp(Xa, Y, H, V, W)
        elif self.solver == "ipm":
            self._fit_ipm(Xa, Y, D, V, W)
        elif eps > 0:
            self._fit_admm_robust(Xa, Y, D, feat, eps, V, W)
        else:
            self._fit_admm(Xa, Y, D, V, W)
        self.V_, self.W_ = V, W
        # The objective is reported on the data as given: with standardize=True the weights are mapped back to
        # the original coordinates first (X_s v = X_aug v' exactly, so the patterns and predictions are unchanged
        # and only the group norms move).
        Xr, Vr, Wr = (self._unstandardized(X, V, W) if self.standardize else (Xa, V, W))
        self.objective_ = float(sum(F.objective(Xr, D, Vr[c], Wr[c], Y[:, c], float(self.beta), self.loss, eps, feat)
                                    for c in range(k)))
        self.constraint_violation_ = max(F.violation(Xr, D, Vr[c], Wr[c], eps, feat) for c in range(k))
        # The ReLU network's own (non-robust) objective: equals objective_ when the cone constraints hold
        # exactly; an iterative solver's small violations show up as the difference.
        self.network_objective_ = float(sum(
            F.loss_value(self.loss, np.maximum(Xr @ Vr[c], 0).sum(1) - np.maximum(Xr @ Wr[c], 0).sum(1), Y[:, c])
            + float(self.beta) * (np.linalg.norm(Vr[c], axis=0).sum() + np.linalg.norm(Wr[c], axis=0).sum())
            for c in range(k)))
        if not np.isfinite(self.objective_):
            raise SolverError(f"the fitted objective is {self.objective_}")
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _unstandardized(self, X: Any, V: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The augmented original X and the weights in its coordinates: v_f / scale and
        v_b - mean . (v_f / scale), so that X_aug v' = X_standardized,aug v."""
        X0 = np.asarray(as_float_array(X, "X", ndim=2), dtype=np.float64)
        Xr = np.hstack([X0, np.ones((X0.shape[0], 1))])
        return Xr, self._to_original(V), self._to_original(W)

    def _to_original(self, U: np.ndarray) -> np.ndarray:
        """Weights (k, d + 1, P) of standardized features mapped to the original ones (identity without
        standardize)."""
        if not self.standardize:
            return U
        Uf = U[:, :-1, :] / self.scale_[None, :, None]
        Ub = U[:, -1:, :] - np.einsum("j,cjp->cp", self.mean_, Uf)[:, None, :]
        return np.concatenate([Uf, Ub], axis=1)

    def _check_memory(self, n: int, d: int, P: int) -> None:
        limit = float(self.memory_limit) if self.memory_limit is not None else 0.8 * available_memory()
        base = 8.0 * (n * d + n * P + 10 * n * 2 * P + 12 * d * 2 * P)
        if self.solver == "cvxpy":
            base *= 20  # cvxpy's canonicalised problem holds several copies of the data
        if self.solver == "ipm":
            from .ipm import choose_system
            try:
                base = 8.0 * (n * d + 40 * n * P) + choose_system(n, d, P, "auto", limit)[1]
            except MemoryError as e:
                raise InvalidInputError(f"solver='ipm' on this problem (n = {n}, d = {d}, P = {P}): {e}; use "
                                        "solver='admm' (its PCG u-step works in O(n (d + P)) memory)") from None
        if base > limit:
            raise InvalidInputError(f"this problem (n = {n}, d = {d}, P = {P}) needs about {base / 2**30:.2f} GiB "
                                    f"but only {limit / 2**30:.2f} GiB are available; use fewer patterns or samples")
        self._memory_budget = limit - base
        self._memory_limit = limit

    def _fit_admm(self, Xa, Y, D, V, W) -> None:
        from .. import _core
        squared = self.loss == "squared"
        if self.rho is not None:
            rho = float(self.rho)
        elif squared:
            # Balance the loss curvature against the constraint block: rho ~ ||X||_F^2 / n (then adapted).
            rho = max(float(np.sum(Xa * Xa)) / Xa.shape[0], 1e-8)
        else:
            # Fixed rho (no balancing, see below); rho ~ beta keeps the group threshold beta/rho near 1,
            # which converged fastest on small hinge/logistic problems.
            rho = float(np.clip(self.beta, 1e-4, 1.0))
        every, bar, progress = self._progress(Y.shape[1], "ConvexReLU ADMM")

        u_solver = self.u_solver
        budget = self._memory_budget
        if self._on_torch and self._device.type == "cuda":
            import torch
            budget = min(budget, 0.8 * float(torch.cuda.mem_get_info(self._device.torch())[0]))
        if self.solver == "admm-approx":
            n = Xa.shape[0]
            fits = _core.convex_ustep_memory("woodbury", n, Xa.shape[1], D.shape[1]) <= budget
            u_solver = "woodbury" if fits else self.u_solver
        # Anderson acceleration (core only; the torch path mirrors the plain iteration). With it the ADMM runs
        # without over-relaxation, which accelerates better (bench/README.md, "Convex training").
        if self._on_torch:
            if self.anderson:
                raise UnsupportedModelError("anderson > 0 (Anderson-accelerated ADMM) runs in the Rust core only; "
                                            "use backend='core' or anderson=0 on the torch path")
            if self.check_every not in (None, 1):
                raise UnsupportedModelError("check_every > 1 runs in the Rust core only; the torch path checks every "
                                            "iteration (use check_every=None or 1 there)")
            if self.pcg_decay not in (None, 0):
                raise UnsupportedModelError("inexact PCG u-steps (pcg_decay > 0) run in the Rust core only; the torch "
                                            "path solves every u-step to 1e-10 (use pcg_decay=None or 0 there)")
            accel = {}
        else:
            mem = ANDERSON_MEMORY if self.anderson is None else int(self.anderson)
            accel = dict(anderson=mem, anderson_safeguard=ANDERSON_SAFEGUARD, relaxation=1.0) if mem > 0 else {}
            accel["check_every"] = CHECK_EVERY if self.check_every is None else int(self.check_every)
            accel["pcg_decay"] = PCG_DECAY if self.pcg_decay is None else float(self.pcg_decay)
        kw = dict(loss=self.loss, rho=rho, max_iter=int(self.max_iter), eps_abs=0.1 * float(self.tol),
                  eps_rel=float(self.tol), u_solver=u_solver, memory_limit=float(budget),
                  time_limit=float(self.time_limit) if self.time_limit is not None else float("inf"),
                  callback=progress, callback_every=every,
                  # With the loss split off, residual balancing has no scale to balance (see admm.rs): fixed rho.
                  adapt_every=25 if squared else 0)
        try:
            if self._on_torch:
                from ..torch_backend.convex import convex_admm
                results = convex_admm(Xa, np.ascontiguousarray(Y), D, float(self.beta), device=self._device,
                                      dtype=self.dtype, **kw)
            else:
                results = _core.convex_admm(Xa, np.ascontiguousarray(Y), D, float(self.beta), **kw, **accel)
        finally:
            if bar is not None:
                bar.close()
        for c, r in enumerate(results):
            V[c], W[c] = r["v"], r["w"]
        self._record(results, "ADMM")
        self.anderson_ = {"memory": accel.get("anderson", 0),
                          "accepted": sum(int(r.get("anderson_accepted", 0)) for r in results),
                          "rejected": sum(int(r.get("anderson_rejected", 0)) for r in results)}
        self.u_solver_ = results[0]["u_solver"]
        self.device_ = f"{self._device} (torch, {self.dtype})" if self._on_torch else "cpu (Rust core)"

    def _fit_admm_robust(self, Xa, Y, D, feat, eps, V, W) -> None:
        """The l-inf adversarial program by the robust ADMM of the core (every loss split off, so the u-step is
        factored once whatever rho; dense Cholesky, or PCG when that does not fit)."""
        from .. import _core
        rho = float(self.rho) if self.rho is not None else float(np.clip(self.beta, 1e-4, 1.0))
        # Patterns whose robust cone is {0} force v_j = w_j = 0: leave them out of the solve (same optimum, and
        # their cones, which have no interior, are what stalls the ADMM).
        keep = robust_nontrivial(Xa, D, feat, eps)
        self.robust_patterns_ = keep
        if not keep.any():
            # Every cone is {0}: the zero network is the only feasible point (V, W stay zero).
            log.info("adversarial_eps=%g: no pattern can hold on the eps-boxes; the zero network is the only "
                     "feasible point", eps)
            empty = np.zeros((0, len(HISTORY_FIELDS)))
            self._record([dict(history=empty, iterations=0, status="converged")] * Y.shape[1], "robust ADMM")
            self.u_solver_ = None
            self.device_ = "cpu (Rust core)"
            return
        Dk = np.ascontiguousarray(D[:, keep])
        every, bar, progress = self._progress(Y.shape[1], "ConvexReLU robust ADMM")
        try:
            results = _core.convex_admm_robust(
                Xa, np.ascontiguousarray(Y), Dk, [bool(f) for f in feat], float(eps), float(self.beta),
                loss=self.loss, rho=rho, max_iter=int(self.max_iter), eps_abs=0.1 * float(self.tol),
                eps_rel=float(self.tol), u_solver=self.u_solver, memory_limit=float(self._memory_budget),
                time_limit=float(self.time_limit) if self.time_limit is not None else float("inf"),
                callback=progress, callback_every=every, adapt_every=ROBUST_ADAPT_EVERY)
        finally:
            if bar is not None:
                bar.close()
        for c, r in enumerate(results):
            V[c][:, keep], W[c][:, keep] = r["v"], r["w"]
        self._record(results, "robust ADMM")
        self.u_solver_ = results[0]["u_solver"]
        self.device_ = "cpu (Rust core)"

    def _fit_ipm(self, Xa, Y, D, V, W) -> None:
        """The squared-loss program by the structured primal-dual interior-point method (convex/ipm.py): a
        few dozen Newton steps, each one dense Cholesky of a Pd x Pd (or n x n) matrix."""
        from .. import _core
        from .ipm import SquaredLossIPM, dual_lower_bound
        steps = min(int(self.max_iter), IPM_MAX_STEPS)
        every, bar, progress = self._progress(Y.shape[1], "ConvexReLU IPM", total=steps)
        rows, statuses, gaps, steps_taken, n_corr, lower = [], [], [], [], 0, 0.0
        deadline = time.perf_counter() + (float(self.time_limit) if self.time_limit is not None else np.inf)
        try:
            solver = SquaredLossIPM(Xa, Y[:, 0], D, float(self.beta), memory_limit=self._memory_limit)
            self.ipm_system_ = solver.system
            P = D.shape[1]
            for c in range(Y.shape[1]):
                r = solver.set_targets(Y[:, c]).run(tol=float(self.tol), feastol=float(self.tol), max_iter=steps,
                               time_limit=deadline - time.perf_counter(),
                               callback=lambda it, obj, pr, dr, c=c: progress(c, it, obj, pr, dr))
                # Interior points keep every group strictly inside its cone; groups at round-off size are the
                # zero groups of the optimum, and the projection removes what violation rounding left.
                ws = weight_scale(Xa, Y[:, c])
                U = np.hstack([prune_groups(r.v, ws), prune_groups(r.w, ws)])
                U, _ = _core.convex_project_cones(Xa, D, np.ascontiguousarray(U))
                V[c], W[c] = U[:, :P], U[:, P:]
                lower += dual_lower_bound(Xa, Y[:, c], D, float(self.beta), V[c], W[c], r.z)
                h = r.history
                rows.append(np.hstack([np.full((h.shape[0], 1), c), h]))
                statuses.append(r.status)
                gaps.append(r.gap)
                steps_taken.append(r.iterations)
                n_corr += r.stats.get("centrality_correctors", 0)
        finally:
            if bar is not None:
                bar.close()
        H = np.vstack(rows)
        self.history_ = {"output": H[:, 0].astype(int), "iter": H[:, 1].astype(int), "objective": H[:, 2],
                         "primal_residual": H[:, 3], "dual_residual": H[:, 4], "gap": H[:, 5], "seconds": H[:, 6]}
        self.n_iter_ = max(steps_taken)
        self.status_ = statuses[0] if len(set(statuses)) == 1 else statuses
        self.ipm_gap_ = max(gaps)
        self.ipm_lower_bound_ = lower
        self.ipm_correctors_ = n_corr
        self.u_solver_ = None
        self.device_ = "cpu (numpy/LAPACK)"
        if any(st != "converged" for st in statuses):
            log.warning("IPM stopped with status %s after %d Newton steps at relative gap %.2e (tol %g)",
                        self.status_, self.n_iter_, self.ipm_gap_, self.tol)

    def _progress(self, outputs: int, desc: str, total: int | None = None):
        """(callback_every, tqdm bar or None, callback) for the Rust solvers' progress reports."""
        total = self.max_iter if total is None else total
        every = max(1, min(100, total // 100))
        bar = None
        if self.verbose:
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=total * outputs, desc=desc, unit="it")
            except ImportError:  # pragma: no cover
                bar = None
        last = [0]

        def progress(out, it, obj, pres, dres):
            if bar is not None:
                bar.update(it - last[0] if it > last[0] else it)
                bar.set_postfix(obj=f"{obj:.6g}", r_p=f"{pres:.1e}", r_d=f"{dres:.1e}")
            last[0] = it
            log.debug("output %d iter %d objective %.9g primal %.2e dual %.2e", out, it, obj, pres, dres)
        return every, bar, progress

    def _record(self, results: list[dict], what: str) -> None:
        """history_, n_iter_ and status_ from the Rust solvers' result dicts (one per output)."""
        hist = []
        for c, r in enumerate(results):
            h = r["history"]
            hist.append(np.hstack([np.full((h.shape[0], 1), c), h]))
        H = np.vstack(hist)
        self.history_ = {"output": H[:, 0].astype(int)}
        for j, name in enumerate(HISTORY_FIELDS):
            self.history_[name] = H[:, j + 1].astype(int) if name in ("iter", "inner_iterations") else H[:, j + 1]
        self.n_iter_ = max(r["iterations"] for r in results)
        statuses = [r["status"] for r in results]
        self.status_ = statuses[0] if len(set(statuses)) == 1 else statuses
        if "converged" not in statuses:
            log.warning("%s stopped with status %s after %d iterations; raise max_iter or tol",
                        what, self.status_, self.n_iter_)

    def _fit_scp(self, Xa, Y, H, V, W) -> None:
        """Sampled convex program: the output weights a of the fixed unit-norm neurons H; neuron j becomes
        v_j = a_j h_j (a_j > 0) or w_j = -a_j h_j, so ||v_j|| = |a_j| and (2D_j - I) X v_j >= 0 hold exactly."""
        from .. import _core
        every, bar, progress = self._progress(Y.shape[1], "ConvexReLU SCP")
        rho = float(self.rho) if self.rho is not None else 1.0
        try:
            results = _core.convex_scp(Xa, np.ascontiguousarray(Y), H, float(self.beta), loss=self.loss, rho=rho,
                                       max_iter=int(self.max_iter), eps_abs=0.1 * float(self.tol),
                                       eps_rel=float(self.tol),
                                       time_limit=float(self.time_limit) if self.time_limit is not None
                                       else float("inf"), callback=progress, callback_every=every)
        finally:
            if bar is not None:
                bar.close()
        for c, r in enumerate(results):
            a = r["a"]
            V[c], W[c] = H * np.maximum(a, 0.0)[None, :], H * np.maximum(-a, 0.0)[None, :]
        self._record(results, "SCP")
        self.u_solver_ = None
        self.device_ = "cpu (Rust core)"

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "V_"):
            raise InvalidInputError("this ConvexReLU is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: Any) -> np.ndarray:
        """The network's outputs: (n,) for one output, (n, k) for several. Uses the ReLU network itself
        (not the training patterns), so it applies to new data."""
        self._check_fitted()
        Xa = self._features(X, fitting=False)
        out = np.stack([np.maximum(Xa @ self.V_[c], 0).sum(1) - np.maximum(Xa @ self.W_[c], 0).sum(1)
                        for c in range(self.V_.shape[0])], axis=1)
        return out[:, 0] if self._single_output else out

    def predict(self, X: Any) -> np.ndarray:
        f = self.decision_function(X)
        if not self._classify:
            return f
        if f.ndim == 1:
            return np.where(f >= 0, self.classes_[1], self.classes_[0])
        return self.classes_[np.argmax(f, axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for classification, R^2 for regression (scikit-learn's conventions)."""
        pred = self.predict(X)
        y = np.asarray(y.detach().cpu().numpy() if is_torch_tensor(y) else y)
        if self._classify:
            return float(np.mean(pred == y))
        y = y.reshape(pred.shape).astype(np.float64)
        ss_res = np.sum((y - pred) ** 2)
        ss_tot = np.sum((y - y.mean(axis=0)) ** 2)
        return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else 0.0

    # ------------------------------------------------------------------ conversion
    def hidden_weights(self, tol: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, b, A): first-layer weights U (H, n_features), biases b (H,), output weights A (k, H) of the
        equivalent network, with u = v / sqrt(||v||) and output weight +-sqrt(||v||); groups with
        norm <= tol are pruned."""
        self._check_fitted()
        cols_u, outs = [], []
        k = self.V_.shape[0]
        # Balance each neuron in the coordinates of the data as given, so the network's weight-decay
        # objective equals objective_ (balancing first and unstandardizing after would not).
        V, W = self._to_original(self.V_), self._to_original(self.W_)
        for c in range(k):
            for M, sign in ((V[c], 1.0), (W[c], -1.0)):
                norms = np.linalg.norm(M, axis=0)
                for i in np.flatnonzero(norms > tol):
                    r = np.sqrt(norms[i])
                    cols_u.append(M[:, i] / r)
                    outs.append((c, sign * r))
        d = self.V_.shape[1]
        U = np.array(cols_u).reshape(-1, d)
        A = np.zeros((k, U.shape[0]))
        for h, (c, a) in enumerate(outs):
            A[c, h] = a
        if self.fit_intercept:
            Wt, b = U[:, :-1], U[:, -1].copy()
        else:
            Wt, b = U, np.zeros(U.shape[0])
        return Wt, b, A

    def to_network(self, tol: float = 0.0):
        """The fitted model as an ``nncert.Network`` Dense -> ReLU -> Dense. Its weight-decay objective
        loss + beta/2 (||first-layer weights and biases||^2 + ||output weights||^2) equals ``objective_``
        (also with ``standardize``, whose scaling is folded into the first layer); zero groups are pruned
        (a network with no neuron gets one zero neuron)."""
        from ..layers import Dense, ReLU
        from ..network import Network
        Wt, b, A = self.hidden_weights(tol)
        if Wt.shape[0] == 0:
            Wt, b, A = np.zeros((1, self.n_features_in_)), np.zeros(1), np.zeros((A.shape[0], 1))
        return Network([Dense(Wt, b), ReLU(), Dense(A, np.zeros(A.shape[0]))])
