"""Type stubs for the Rust extension ``nncert._core`` (hand-written; keep in step with rust/py/src)."""

from typing import Sequence

import numpy as np
import numpy.typing as npt

__version__: str

def _raise_core_error(kind: str) -> None:
    """Test hook: raises the exception a core error maps to ("shape", "invalid", "unsupported", "solver",
    "time"), or panics inside the core (any other kind), which surfaces as nncert.Error."""

class Network:
    """The core network. Built from layer specs produced by ``nncert.layers.Layer.spec()`` (a residual block is
    ``("residual", [specs])`` or ``("residual", [specs], S)`` with S the (d, d) skip of y = S x + f(x))."""

    def __init__(self, specs: Sequence[tuple], input_dim: int | None = None) -> None: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def num_params(self) -> int: ...
    def forward_f64(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Batched forward pass of a 2-D float64 array (any memory order, read in place; GIL released)."""
    def forward_f32(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Batched forward pass of a 2-D float32 array, computed in float32."""
    def jacobian(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The Jacobian (output_dim, input_dim) at one point."""
    def vjp_batch(self, xs: npt.NDArray[np.float64], cs: npt.NDArray[np.float64]
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(f(x_i), grad of c_i^T f at x_i) for each row; cs has 1 row or one per row of xs."""
    def implicit_info(self) -> list[dict]:
        """One dict per Implicit layer: path, units, activation, certificate ("contraction" | "monotone" | "weighted-monotone"),
        contraction (beta ||W||_2), monotone_margin (lambda_min(I - sym W) or None), rate, max_iters."""


# bound propagation and branch and bound (rust/py/src/bounds.rs)
def output_bounds(net: Network, lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64],
                  a_y: npt.NDArray[np.float64], a_x: npt.NDArray[np.float64], method: str = "crown",
                  slopes_: str = "adaptive", opt_iters: int = 0,
                  splits: list[tuple[int, int, bool]] | None = None) -> dict:
    """Lower bounds of the rows of a_y f(x) + a_x x over the box (restricted by ReLU splits (act, unit,
    active)); opt_iters > 0 optimises slopes (alpha-CROWN) and split multipliers (beta-CROWN). Keys lower
    (inf where the splits make the box empty), out_lo, out_hi, pre."""
def branch_and_bound(net: Network, problems: list[tuple], mode: str = "input", time_limit: float = 60.0,
                     max_nodes: int | None = None, margin: float = 1e-8, method: str = "crown",
                     slopes_: str = "adaptive", batch: int = 0, min_width: float = 1e-7,
                     max_leaves: int = 10000, opt_iters: int | None = None,
                     opt_gate: float | None = None, lookahead: bool = True, keep_open: bool = False,
                     relu_share: float | None = None, relu_below: int | None = None) -> dict:
    """Best-first parallel BaB over (lo, hi, a_y, a_x, c[, scale]) problems (scale: the side lengths input
    splitting measures the box against, e.g. the original root's when resuming); keys outcome, x, problem,
    leaves, stats (nodes, pruned, ..., proved_volume, relu_below) and, with keep_open, open: the nodes left
    after a timeout or node limit as (problem, lo, hi, splits, score), most undecided first.
    opt_iters: optimised-bound steps per row and node (None: the default, 20; 0: off). opt_gate: optimise a
    node only when its gap is at most opt_gate times the last gain on its path (None: 1 for input splits,
    every node for ReLU splits). lookahead: input splitting picks the side whose worse half bounds best.
    relu_share: input splitting hands a node whose unstable ReLUs are at most this share of its root's to
    ReLU splitting (None: 0.2; 0: never); relu_below: that unit count given directly."""

# --- sparse matrices and Krylov solvers (rust/py/src/linalg.rs) ---
# CSR arguments are scipy's (indptr, indices, data, ncols): int32 or int64 indices (both the same type),
# float64 data, all contiguous; they are read in place. Solvers return (x, info dict) with keys iterations,
# residuals, true_residual, converged, reason, seconds, matvecs, false_convergences, fallbacks, method,
# bytes_per_matvec. progress: a callable (iteration, relative residual) -> bool | None (False stops).

def csr_matvec(indptr: np.ndarray, indices: np.ndarray, data: npt.NDArray[np.float64], ncols: int,
               x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def csr_cg(indptr: np.ndarray, indices: np.ndarray, data: npt.NDArray[np.float64], ncols: int,
           b: npt.NDArray[np.float64], x0: npt.NDArray[np.float64] | None = None, tol: float = 1e-6,
           maxiter: int = 10000, precond: str = "none", recompute_every: int = 50, time_limit: float | None = None,
           progress: object = None) -> tuple[npt.NDArray[np.float64], dict]: ...
def stencil_cg(shape: tuple[int, int, int], solid: npt.NDArray[np.bool_] | None, b: npt.NDArray[np.float64],
               x0: npt.NDArray[np.float64] | None = None, tol: float = 1e-6, maxiter: int = 10000,
               precond: str = "none", recompute_every: int = 50, time_limit: float | None = None,
               progress: object = None) -> tuple[npt.NDArray[np.float64], dict]: ...
def op_cg(n: int, matvec: object, b: npt.NDArray[np.float64], x0: npt.NDArray[np.float64] | None = None,
          tol: float = 1e-6, maxiter: int = 10000, recompute_every: int = 50, time_limit: float | None = None,
          progress: object = None) -> tuple[npt.NDArray[np.float64], dict]: ...
def csr_dcdm(indptr: np.ndarray, indices: np.ndarray, data: npt.NDArray[np.float64], ncols: int,
             b: npt.NDArray[np.float64], oracle: object, k: int = 2, x0: npt.NDArray[np.float64] | None = None,
             tol: float = 1e-6, maxiter: int = 1000, recompute_every: int = 50, time_limit: float | None = None,
             progress: object = None) -> tuple[npt.NDArray[np.float64], dict]: ...
def csr_lanczos(indptr: np.ndarray, indices: np.ndarray, data: npt.NDArray[np.float64], ncols: int,
                v0: npt.NDArray[np.float64], m: int
                ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def stream_triad(n: int, reps: int) -> float:
    """Best-of-reps STREAM triad bandwidth (bytes/second) over three float64 arrays of length n."""

# --- convex training (rust/py/src/convex.rs) ---
def convex_admm(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], patterns: npt.NDArray[np.float64],
                beta: float, loss: str = "squared", rho: float = 1.0, max_iter: int = 10000,
                eps_abs: float = 1e-7, eps_rel: float = 1e-6, u_solver: str = "auto", pcg_tol: float = 1e-10,
                memory_limit: float = 4294967296.0, time_limit: float = ..., callback: object | None = None,
                callback_every: int = 50, adapt_every: int = 25, relaxation: float = 1.6,
                z_weight: float = 1.0, project: bool = True, anderson: int = 0,
                anderson_safeguard: float = 1.0) -> list[dict]:
    """ADMM for each column of y (n, C), sharing one u-step factorisation; project: a converged run's groups are
    projected onto their cones (the last history row is after the projection); anderson: memory of the safeguarded
    type-II Anderson acceleration (0: off). Each dict has v, w (d, P),
    objective, iterations, status, anderson_accepted, anderson_rejected, u_solver, factor_seconds, solve_seconds and history (k, 7): iter,
    objective, primal_residual, dual_residual, violation, seconds, inner_iterations."""
def convex_admm_robust(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], patterns: npt.NDArray[np.float64],
                       feat: list[bool], eps: float, beta: float, loss: str = "squared", rho: float = 1.0,
                       max_iter: int = 10000, eps_abs: float = 1e-7, eps_rel: float = 1e-6, u_solver: str = "auto",
                       pcg_tol: float = 1e-10, memory_limit: float = 4294967296.0, time_limit: float = ...,
                       callback: object | None = None, callback_every: int = 50, adapt_every: int = 25,
                       relaxation: float = 1.6, z_weight: float = 1.0, project: bool = True) -> list[dict]:
    """ADMM for the l-inf adversarial program (radius eps on the coordinates where feat is True; Bai et al. 2022,
    Section 4) for each column of y; u_solver 'auto' | 'dense' | 'pcg' ('woodbury' raises UnsupportedModelError).
    Dicts as in convex_admm; objective and history hold the robust objective and the violation of the robust
    cone constraints (2D_j - I) X u_j >= eps ||u_j[feat]||_1."""
def convex_scp(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], h: npt.NDArray[np.float64], beta: float,
               loss: str = "squared", rho: float = 1.0, max_iter: int = 10000, eps_abs: float = 1e-8,
               eps_rel: float = 1e-7, time_limit: float = ..., callback: object | None = None,
               callback_every: int = 50, adapt_every: int = 20, relaxation: float = 1.6) -> list[dict]:
    """Sampled convex program min loss((X H)_+ a, y) + beta ||a||_1 for each column of y (n, C), H (d, N) the
    sampled unit-norm neurons; one factorisation shared. Each dict has a (N,), objective, iterations, status,
    factor_seconds, solve_seconds and history (k, 7) as in convex_admm."""
def convex_ustep_memory(kind: str, n: int, d: int, p: int) -> float:
    """Bytes the 'dense' | 'woodbury' | 'pcg' u-step would allocate."""
def convex_ustep_choose(kind: str, n: int, d: int, p: int, memory_limit: float, time_limit: float = ...) -> str:
    """The u-step 'auto' picks ('dense' | 'woodbury' | 'pcg'), or the explicit kind checked against
    memory_limit bytes (InvalidInputError when it does not fit); under a finite time_limit (seconds) a
    factorisation must fit in half of it at 10 GFlop/s."""
def convex_project_cones(x: npt.NDArray[np.float64], patterns: npt.NDArray[np.float64],
                         u: npt.NDArray[np.float64], max_sweeps: int = 2000) -> tuple[npt.NDArray[np.float64], float]:
    """Each column j of u (d x 2P) projected onto {v : (2D_j - I) X v >= 0} (pattern j mod P; Hildreth);
    returns (projected u, largest remaining violation)."""

# Lipschitz bounds (rust/py/src/lipschitz.rs)
def lipschitz_naive(net: Network, norm: str, c: npt.NDArray[np.float64] | None = None) -> float:
    """Product of layer norms (residual blocks: ||S|| + inner bound, ||I|| = 1); norm '2' or 'inf'; c: scalar output
    c^T f."""
def spectral_norm(w: npt.NDArray[np.float64]) -> float:
    """Largest singular value, rounded up by a rounding-error guard."""
def lipschitz_chain(net: Network, c: npt.NDArray[np.float64] | None = None) -> dict:
    """The chain decomposition: {'stages': [{'W', 'kind', 'residual', 'scale', 'layer', 'alpha'/'beta' or
    'groups'/'E', residual stages: 'G' and, with a skip, 'S' (z' = S z + G act(W z))}], 'final': rows, 'scale':
    product of powers of two, 'input_dim'}."""
def lipschitz_certify(net: Network, norm: str, rho: float, stages: list[dict],
                      d: npt.NDArray[np.float64] | None = None, c: npt.NDArray[np.float64] | None = None,
                      repair: bool = True) -> dict:
    """Evaluates and repairs the chain LMIs at the multipliers ({'t', 'gamma', 'X'} per stage):
    {'bound', 'certified', 'solver_bound', 'rho', 'repaired', 'message', 'lmis': [...]}."""
def lipschitz_certify_full(net: Network, norm: str, rho: float, stages: list[dict],
                           s: list[npt.NDArray[np.float64]], p: list[npt.NDArray[np.float64]],
                           d: npt.NDArray[np.float64] | None = None, c: npt.NDArray[np.float64] | None = None,
                           repair: bool = True) -> dict:
    """Evaluates and repairs the full block-tridiagonal NSR LMI (plain grouped chains) at the multipliers
    ({'t' (lambda), 'gamma'} per stage, S_k (n_k x G_k) and P_k (m_k x G_k)); same dict as lipschitz_certify."""
def lipschitz_lower(net: Network, norm: str, c: npt.NDArray[np.float64] | None = None, starts: int = 16,
                    steps: int = 100, seed: int = 0) -> tuple[float, npt.NDArray[np.float64]]:
    """Largest local Jacobian norm found by multi-start search, and the point (1, input_dim)."""
