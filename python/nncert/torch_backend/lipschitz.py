"""Lipschitz computations with torch ops on a device: the naive bound (guarded spectral / l-inf norms),
local Jacobian norms and a batched multi-start lower-bound search, and the certificate's LMI eigenvalue
checks at the SDP solver's multipliers. Mirrors ``rust/core/src/lipschitz/{norms,lower,certify}.rs``;
the SDP itself stays in cvxpy on the CPU."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ShapeError, SolverError
from ..layers import Dense, GroupSort, Householder, LeakyReLU, ReLU, Residual, Sigmoid, Tanh
from .network_ops import torch_module

EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------------------- naive bound
def spectral_norm(W: Any) -> float:
    """Largest singular value of W (a torch tensor), rounded up by the core's backward-error guard."""
    import torch

    if W.numel() == 0:
        return 0.0
    n = max(W.shape)
    s = float(torch.linalg.svdvals(W)[0])
    return s * (1 + 4 * n * EPS) + 8 * n * EPS * float(torch.linalg.norm(W))


def inf_norm(W: Any) -> float:
    return float(W.abs().sum(1).max()) * (1 + 2 * (W.shape[1] + 1) * EPS) if W.numel() else 0.0


def _act_constant(layer: Any, norm: str) -> float:
    if isinstance(layer, LeakyReLU):
        return max(abs(layer.slope), 1.0)
    if isinstance(layer, (ReLU, Tanh, GroupSort)):
        return 1.0
    if isinstance(layer, Sigmoid):
        return 0.25
    if isinstance(layer, Householder):
        if norm == "2":
            return 1.0
        v0, v1 = math.sin(layer.theta / 2), -math.cos(layer.theta / 2)
        r = [1 - 2 * v0 * v0, -2 * v0 * v1, 1 - 2 * v1 * v1]
        return max(abs(r[0]) + abs(r[1]), abs(r[1]) + abs(r[2]), 1.0) * (1 + 8 * EPS)
    raise AssertionError(type(layer).__name__)


def _product(layers: Any, norm: str, t) -> float:
    b = 1.0
    for l in layers:
        if isinstance(l, Dense):
            W = t(l.W)
            b *= spectral_norm(W) if norm == "2" else inf_norm(W)
        elif isinstance(l, Residual):
            s = 1.0 if l.skip is None else (spectral_norm(t(l.skip)) if norm == "2" else inf_norm(t(l.skip)))
            b *= (s + _product(l.layers, norm, t)) * (1 + 2 * EPS)
        else:
            b *= _act_constant(l, norm)
    return b * (1 + 2 * (len(layers) + 1) * EPS)


def naive_bound(net: Any, norm: str, c: np.ndarray | None, device: Any) -> float:
    """Product of layer norms (residual blocks: ||S|| + inner bound, ||I|| = 1); with ``c``, of the scalar map
    c^T f."""
    import torch

    dev = device.torch()
    t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), device=dev)  # noqa: E731
    layers = list(net.layers)
    if c is None:
        return _product(layers, norm, t)
    c = np.asarray(c, dtype=np.float64)
    if c.shape != (net.output_dim,):
        raise ShapeError(f"output vector c has length {c.size} but the network has {net.output_dim} outputs")
    if isinstance(layers[-1], Dense):
        W = t(layers[-1].W)
        row = t(c) @ W
        last = (float(torch.linalg.norm(row)) if norm == "2" else float(row.abs().sum()))
        last *= 1 + 2 * (W.shape[0] + W.shape[1] + 2) * EPS
        head = _product(layers[:-1], norm, t) if len(layers) > 1 else 1.0
        return head * last * (1 + 4 * EPS)
    cn = (float(np.sqrt(np.sum(c * c))) if norm == "2" else float(np.abs(c).sum())) * (1 + 2 * (c.size + 1) * EPS)
    return _product(layers, norm, t) * cn * (1 + 4 * EPS)


# ---------------------------------------------------------------------------------------- lower bound
def local_norms(net: Any, X: Any, norm: str, c: np.ndarray | None, device: Any) -> Any:
    """The local operator norm of the Jacobian at each row of X (B, n) (a torch tensor on the device):
    l2 -> top singular value (or ||c^T J||_2), l-inf -> largest row l1 norm (or ||c^T J||_1)."""
    import torch

    module = torch_module(net, device, X.dtype)
    if c is not None:
        cc = torch.as_tensor(np.asarray(c, dtype=np.float64), dtype=X.dtype, device=X.device)
        Xg = X.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad((module(Xg) @ cc).sum(), Xg)
        return g.norm(dim=1) if norm == "2" else g.abs().sum(1)
    J = torch.func.vmap(torch.func.jacrev(lambda x: module(x[None])[0]))(X.detach())  # (B, m, n)
    return torch.linalg.svdvals(J)[:, 0] if norm == "2" else J.abs().sum(2).max(1).values


def lower_bound(net: Any, norm: str, c: np.ndarray | None, starts: int, steps: int, seed: int,
                device: Any) -> tuple[float, np.ndarray]:
    """Multi-start accept-if-better search (the core's scheme: start scales 1, 0.1, 10; radius shrinking by
    0.97 on a rejection), all starts advanced together as one batch. Returns the best norm and its point."""
    import torch

    dev = device.torch()
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    S, n = max(1, int(starts)), net.input_dim
    sigma = torch.tensor([[1.0, 0.1, 10.0][s % 3] for s in range(S)], dtype=torch.float64, device=dev)[:, None]
    X = sigma * torch.randn((S, n), generator=gen, dtype=torch.float64, device=dev)
    best = local_norms(net, X, norm, c, device)
    radius = 0.5 * sigma
    for _ in range(int(steps)):
        Y = X + radius * torch.randn((S, n), generator=gen, dtype=torch.float64, device=dev)
        val = local_norms(net, Y, norm, c, device)
        up = val > best
        X = torch.where(up[:, None], Y, X)
        best = torch.where(up, val, best)
        radius = torch.where(up[:, None], radius, radius * 0.97)
        radius = torch.where(radius < 1e-3 * sigma, 0.5 * sigma, radius)
    k = int(best.argmax())
    return float(best[k]), X[k].cpu().numpy()


# ---------------------------------------------------------------------------------------- LMI checks
def _validate(chain: dict, norm: str, rho: float, d: Any, mults: list[dict]) -> tuple[float, Any, list[dict]]:
    """The core's validation: finite multipliers, t / lambda / rho / d clipped at 0, X symmetrised."""
    if len(mults) != len(chain["stages"]):
        raise ShapeError(f"certificate: {len(mults)} stage multipliers for {len(chain['stages'])} stages")
    vals = [np.asarray([rho], dtype=np.float64)] + ([np.asarray(d, dtype=np.float64)] if norm == "inf" else [])
    out = []
    for k, (st, sm) in enumerate(zip(chain["stages"], mults)):
        t = np.maximum(np.asarray(sm.get("t", []) if sm.get("t") is not None else [], dtype=np.float64), 0.0)
        g = np.asarray(sm.get("gamma", []) if sm.get("gamma") is not None else [], dtype=np.float64)
        X = sm.get("X")
        X = None if X is None else np.asarray(X, dtype=np.float64)
        vals += [t, g] + ([X.ravel()] if X is not None else [])
        out.append({"t": t, "gamma": g, "X": None if X is None else 0.5 * (X + X.T)})
    if not all(np.all(np.isfinite(v)) for v in vals):
        raise SolverError("the solver returned non-finite multipliers")
    return max(float(rho), 0.0), None if d is None else np.maximum(np.asarray(d, dtype=np.float64), 0.0), out


def _x_is_q(chain: dict, k: int) -> bool:
    return k >= 1 and not chain["stages"][k - 1]["residual"] and chain["stages"][k - 1]["kind"] == "groups"


class _Builder:
    """The LMI matrices of ``rust/core/src/lipschitz/certify.rs`` (Builder::build_one) as torch tensors."""

    def __init__(self, chain: dict, norm: str, rho: float, d: Any, mults: list[dict], dev: Any):
        import torch

        self.torch, self.chain, self.norm, self.rho, self.d, self.dev = torch, chain, norm, rho, d, dev
        self.t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev)  # noqa: E731
        self.mults = [{"t": sm["t"].copy(), "gamma": sm["gamma"],
                       "X": None if sm["X"] is None else self.t(sm["X"]).clone()} for sm in mults]

    def q(self, k: int, ab: bool) -> Any:
        torch, st, sm = self.torch, self.chain["stages"][k], self.mults[k]
        m = st["W"].shape[0]
        f = (lambda v: np.abs(v)) if ab else (lambda v: v)  # noqa: E731
        if st["kind"] == "sector":
            return torch.diag(self.t(f(sm["t"])))
        if st["kind"] == "groups":
            q = np.zeros((m, m))
            E = f(np.asarray(st["E"], dtype=np.float64))
            for j, g in enumerate(st["groups"]):
                q[np.ix_(g, g)] = f(sm["t"][j]) * np.eye(len(g)) + f(sm["gamma"][j]) * E
            return self.t(q)
        return torch.zeros((m, m), dtype=torch.float64, device=self.dev)

    def x(self, k: int, ab: bool) -> Any:
        torch = self.torch
        if k == 0:
            n = self.chain["input_dim"]
            if self.norm == "2":
                return abs(self.rho) * torch.eye(n, dtype=torch.float64, device=self.dev) if ab else \
                    self.rho * torch.eye(n, dtype=torch.float64, device=self.dev)
            return torch.diag(self.t(np.abs(self.d) if ab else self.d))
        if _x_is_q(self.chain, k):
            return self.q(k - 1, ab)
        X = self.mults[k - 1]["X"]
        return X.abs() if ab else X

    def build(self, k: int, ab: bool) -> tuple[Any, int, int]:
        torch, chain = self.torch, self.chain
        sg = (lambda s: abs(s)) if ab else (lambda s: s)  # noqa: E731
        xk = self.x(k, ab)
        if k == len(chain["stages"]):
            R = self.t(chain["final"])
            R = R.abs() if ab else R
            p = R.shape[0] + 8
            if self.norm == "2":
                return xk + sg(-1.0) * (R.T @ R), xk.shape[0], p
            n = xk.shape[0]
            rho = abs(self.rho) if ab else self.rho
            top = torch.cat([xk, R.T], 1)
            bot = torch.cat([R, torch.full((1, 1), rho, dtype=torch.float64, device=self.dev)], 1)
            return torch.cat([top, bot]), n, p
        st = chain["stages"][k]
        W = self.t(st["W"])
        W = W.abs() if ab else W
        m, n = W.shape
        p = 2 * max(m, n) + 16
        if st["kind"] == "linear":
            return xk + sg(-1.0) * (W.T @ self.x(k + 1, ab) @ W), n, p
        q = self.q(k, ab)
        if st["kind"] == "groups" and not st["residual"]:
            return xk + sg(-1.0) * (W.T @ q @ W), n, p
        if st["kind"] == "sector":
            a2, apb, cq = 2 * st["alpha"] * st["beta"], st["alpha"] + st["beta"], 2.0
        else:
            a2, apb, cq = -1.0, 0.0, 1.0
        wqw, wq, xn = W.T @ q @ W, W.T @ q, self.x(k + 1, ab)
        if st["residual"]:  # z' = S z + G w
            G = self.t(st["G"])
            G = G.abs() if ab else G
            xg = xn @ G
            gxg = G.T @ xg
            sxs = xn
            if st.get("S") is not None:
                S = self.t(st["S"])
                S = S.abs() if ab else S
                sxs, xg = S.T @ xn @ S, S.T @ xg
            A = xk + sg(-1.0) * sxs + sg(a2) * wqw
            Bm = sg(-1.0) * xg + sg(-apb) * wq
        else:
            gxg = xn
            A = xk + sg(a2) * wqw
            Bm = sg(-apb) * wq
        C = cq * q + sg(-1.0) * gxg
        return torch.cat([torch.cat([A, Bm], 1), torch.cat([Bm.T, C], 1)]), n, p


    def lmi(self, k: int) -> tuple[Any, int, float]:
        """LMI k, its A-block size and the core's rounding margin (certified when min_eig >= margin)."""
        torch = self.torch
        M, na, p = self.build(k, False)
        Ma, _, _ = self.build(k, True)
        N = M.shape[0]
        gamma = p * EPS / (1 - p * EPS)
        margin = 2 * (2 * gamma * float(torch.linalg.norm(Ma)) + 8 * N * EPS * float(torch.linalg.norm(M))) \
            + float(np.finfo(np.float64).tiny)
        return M, na, margin

    def name(self, k: int) -> str:
        return "final" if k == len(self.chain["stages"]) else f"stage {k}: {self.chain['stages'][k]['layer']}"

    def raise_x(self, k: int, delta: float) -> None:
        """Adds delta I to X_k (the core's ``raise_x``)."""
        if k == 0:
            if self.norm == "2":
                self.rho += delta
            else:
                self.d = self.d + delta
        elif _x_is_q(self.chain, k):
            self.mults[k - 1]["t"] = self.mults[k - 1]["t"] + delta
        else:
            X = self.mults[k - 1]["X"]
            X.diagonal().add_(delta)

    def x_is_free(self, k: int) -> bool:
        """Whether X_k is a free symmetric multiplier (not rho I / diag(d), not a group multiplier Q)."""
        return k >= 1 and not _x_is_q(self.chain, k)

    def free_x_fix(self, M: Any, na: int, tau: float) -> tuple[Any, float] | None:
        """The core's ``free_x_fix``: the negative part P of the Schur complement of M - tau I (of M - tau I itself
        without a C block), with its largest eigenvalue; None when the shifted C block is not positive definite."""
        torch = self.torch
        n = M.shape[0]
        shifted = M - tau * torch.eye(n, dtype=M.dtype, device=M.device)
        if na == n:
            S = shifted
        else:
            if _min_eig(shifted[na:, na:]) <= 0:
                return None
            S = _schur(shifted, na)
        ev, U = torch.linalg.eigh(S)
        neg = ev < 0
        pmax = float((-ev[neg]).max()) if bool(neg.any()) else 0.0
        scaled = U[:, neg] * torch.sqrt(-ev[neg])
        P = scaled @ scaled.T
        if not (math.isfinite(pmax) and bool(torch.isfinite(P).all())):
            return None
        return 0.5 * (P + P.T), pmax

    def add_to_x(self, k: int, P: Any) -> None:
        self.mults[k - 1]["X"] = self.mults[k - 1]["X"] + P

    def state(self) -> tuple:
        return (self.rho, None if self.d is None else np.array(self.d, copy=True),
                [{"t": np.array(m["t"], copy=True), "gamma": m["gamma"],
                  "X": None if m["X"] is None else m["X"].clone()} for m in self.mults])

    def restore(self, state: tuple) -> None:
        self.rho, self.d, self.mults = state

    def raise_own(self, k: int, delta: float) -> None:
        """Raises the multiplier that owns LMI k's C block so that C grows by delta I."""
        if k == len(self.chain["stages"]):
            self.rho += delta
            return
        gain = 2.0 if self.chain["stages"][k]["kind"] == "sector" else 1.0
        self.mults[k]["t"] = self.mults[k]["t"] + delta / gain


def _min_eig(M: Any) -> float:
    import torch
    return float(torch.linalg.eigvalsh(M)[0]) if M.shape[0] else math.inf


def _schur(M: Any, na: int) -> Any:
    """A - B C^{-1} B^T of a 2x2-block symmetric matrix (C positive definite), through C's eigenvectors."""
    import torch

    A, B, C = M[:na, :na], M[:na, na:], M[na:, na:]
    s, U = torch.linalg.eigh(C)
    scaled = (B @ U) / torch.sqrt(s)
    return A - scaled @ scaled.T


def lmi_checks(chain: dict, norm: str, rho: float, d: Any, mults: list[dict], device: Any) -> list[dict]:
    """Every LMI of the chain at the (validated) multipliers, evaluated on the device: name, size, the
    smallest eigenvalue, and the core's rounding margin (the LMI is certified when min_eig >= margin)."""
    rho, d, mults = _validate(chain, norm, rho, d, mults)
    b = _Builder(chain, norm, rho, d, mults, device.torch())
    out = []
    for k in range(len(chain["stages"]) + 1):
        M, _, margin = b.lmi(k)
        lam = _min_eig(M)
        out.append({"name": b.name(k), "size": M.shape[0], "min_eig": lam, "margin": margin,
                    "ok": lam >= margin and math.isfinite(lam)})
    return out


def certify(chain: dict, norm: str, rho: float, d: Any, mults: list[dict], device: Any, repair: bool = True) -> dict:
    """The core's certificate (``rust/core/src/lipschitz/certify.rs``: check, repair from the last LMI
    back, re-check) with every LMI built and every eigenvalue computed on the device. Returns the dict
    ``_core.lipschitz_certify`` returns."""
    rho, d, mults = _validate(chain, norm, rho, d, mults)
    b = _Builder(chain, norm, rho, d, mults, device.torch())
    nl = len(chain["stages"]) + 1
    solver_bound = bound_of(chain, norm, b.rho, b.d)
    before = [_min_eig(b.lmi(k)[0]) for k in range(nl)]
    repaired = False
    if repair:
        for k in reversed(range(nl)):
            slack = 1.0
            for _ in range(60):
                M, na, margin = b.lmi(k)
                lam = _min_eig(M)
                if lam >= margin:
                    break
                repaired = True
                e = slack * (2 * margin - min(lam, 0.0) + 1e-15 * (1 + float(M.norm())))
                n = M.shape[0]
                fix = b.free_x_fix(M, na, e + min(lam, 0.0)) if b.x_is_free(k) else None
                if fix is not None and (na == n or fix[1] <= e):
                    b.add_to_x(k, fix[0])
                    slack *= 2
                    continue
                saved = b.state() if fix is not None else None
                if na == n:
                    a = e
                else:
                    nc = n - na
                    b.raise_own(k, 2 * e)
                    delta = b.lmi(k)[0] - M
                    shifted = delta.clone()
                    shifted[na:, na:].diagonal().sub_(e)
                    cd = shifted[na:, na:]
                    if _min_eig(cd) > 0:
                        a = e - min(_min_eig(_schur(shifted, na)), 0.0)
                    else:
                        a = e * 4
                    del nc
                if fix is not None and fix[1] <= max(a, e):
                    b.restore(saved)
                    b.add_to_x(k, fix[0])
                else:
                    b.raise_x(k, max(a, e))
                slack *= 2
                if not math.isfinite(slack):
                    break
    lmis, ok = [], True
    for k in range(nl):
        M, _, margin = b.lmi(k)
        after = _min_eig(M)
        ok &= after >= margin and math.isfinite(after)
        lmis.append({"name": b.name(k), "size": M.shape[0], "min_eig_before": before[k], "min_eig_after": after,
                     "margin": margin})
    bound = bound_of(chain, norm, b.rho, b.d)
    ok &= math.isfinite(bound)
    if ok:
        message = "certified after repair" if repaired else "certified"
    else:
        worst = [l["name"] for l in lmis if not l["min_eig_after"] >= l["margin"]]
        message = f"could not certify: LMI(s) {', '.join(worst)} not PSD with margin"
    return {"bound": bound, "certified": bool(ok), "solver_bound": solver_bound, "rho": b.rho, "repaired": repaired,
            "message": message, "lmis": lmis}


def bound_of(chain: dict, norm: str, rho: float, d: Any) -> float:
    """The bound the multipliers imply (the core's ``bound_of``, with its rounding guards)."""
    rho = max(float(rho), 0.0)
    if norm == "2":
        sq = rho
    else:
        d = np.maximum(np.asarray(d, dtype=np.float64), 0.0)
        sq = rho * (float(np.sum(d)) * (1 + 2 * (d.size + 1) * EPS)) * (1 + 2 * EPS)
    return math.sqrt(sq) * (1 + 2 * EPS) * chain["scale"] * (1 + 2 * EPS)
