"""Training the DCDM network as in Kaneda et al. (ICML 2023).

Right-hand sides are random combinations of Ritz vectors of the training matrices (Lanczos with full
reorthogonalisation in the Rust core), with 9x weight on the lower half of the spectrum, where CG is
slow. The loss is scale invariant: ||b - A (q.b / q.Aq) q||^2 for q = f(b), ||b|| = 1, i.e. the residual
left after one exact line search along the predicted direction.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidInputError
from ._operator import prepare
from .problems import grid_of, poisson2d, poisson3d


@dataclass
class TrainConfig:
    """The defaults are the recipe of the shipped model (111 s on one H200 with ``device="cuda"``)."""

    grid: int = 32
    dim: int = 3
    obstacles: str = "random"  # "random" or "none"
    layouts: int = 8  # training matrices (obstacle seeds 1000, 1001, ...); the first has no obstacles
    ritz: int = 400  # Lanczos steps per matrix
    channels: int = 12
    steps: int = 3000
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # where the network and the training matrices live ("cuda" trains on the GPU)


def ritz_vectors(A: Any, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(values, vectors (n, k)) of k <= m Ritz pairs of the SPD matrix A, smallest first."""
    op = prepare(A)
    if op.csr is None:
        raise InvalidInputError("ritz_vectors needs an explicit sparse matrix")
    v0 = np.random.default_rng(seed).standard_normal(op.n)
    vals, vecs, _ = _core.csr_lanczos(*op.core_args(), v0, min(m, op.n))
    return vals, vecs


class _Problem:
    def __init__(self, A: Any, m: int, seed: int, device: Any = "cpu") -> None:
        import torch

        self.grid = grid_of(A)
        _, vecs = ritz_vectors(A, m, seed)
        self.ritz = torch.from_numpy(vecs.T.copy()).float().to(device)  # (k, n)
        coo = A.tocoo()
        self.A = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, A.shape,
                                         check_invariants=False).float().coalesce().to(device)
        self.index = torch.from_numpy(self.grid.index).to(device)
        self.mask = torch.from_numpy(self.grid.fluid).float()[None, None].to(device)
        self.n = A.shape[0]

    def rhs(self, batch: int, gen: Any) -> Any:
        import torch

        k = self.ritz.shape[0]
        w = torch.ones(k)
        w[: k // 2] = 9.0
        # drawn on the CPU generator (reproducible on any device, and part of the checkpoint)
        c = (torch.randn(batch, k, generator=gen) * w).to(self.ritz.device)
        b = c @ self.ritz
        return b / b.norm(dim=1, keepdim=True)

    def to_grid(self, v: Any) -> Any:
        import torch

        g = torch.zeros(v.shape[0], int(np.prod(self.grid.shape)), dtype=v.dtype, device=v.device)
        g[:, self.index] = v
        return g.view(v.shape[0], 1, *self.grid.shape)


def _semantic(config: dict) -> dict:
    """The configuration without where it runs: a checkpoint resumes on any device."""
    return {k: v for k, v in config.items() if k not in ("device", "threads")}


def dcdm_loss(model: Any, prob: _Problem, b: Any) -> Any:
    """mean over the batch of ||b - A (q.b / q.Aq) q||^2, q = f(b)."""
    import torch

    q = model(prob.to_grid(b * np.sqrt(prob.n)), prob.mask).flatten(1)[:, prob.index]
    Aq = torch.sparse.mm(prob.A, q.T).T
    alpha = (q * b).sum(1) / (q * Aq).sum(1).clamp_min(1e-30)
    return ((b - alpha[:, None] * Aq) ** 2).sum(1).mean()


def train(cfg: TrainConfig, out: str, resume: bool = True, progress: bool = True, log: Any = print,
          time_limit: float | None = None) -> dict:
    """Trains a :class:`~nncert.solvers.model.DCDMNet` and writes ``out`` (state dict + config).
    A checkpoint ``out + '.ckpt'`` is written every 25 steps and picked up again when ``resume``.
    time_limit: seconds; when reached the model trained so far is written (``meta["stopped_at"]`` says at
    which step) and a later call with ``resume`` continues from the checkpoint."""
    import torch
    from tqdm.auto import tqdm

    from ..devices import resolve_device
    from .model import DCDMNet

    dev = resolve_device(cfg.device).torch()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    make = poisson3d if cfg.dim == 3 else poisson2d
    t0 = time.perf_counter()
    probs = [_Problem(make(cfg.grid, None if (i == 0 or cfg.obstacles == "none") else "random", seed=1000 + i),
                      cfg.ritz, cfg.seed + i, dev) for i in range(cfg.layouts)]
    log(f"built {len(probs)} training matrices with Ritz vectors in {time.perf_counter() - t0:.1f}s")
    model = DCDMNet(cfg.dim, cfg.channels).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, []
    ckpt = out + ".ckpt"
    if resume and os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False, map_location=dev)
        if _semantic(state["config"]) != _semantic(asdict(cfg)):
            raise InvalidInputError(f"{ckpt} was written with a different configuration; remove it or match it")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        step, history = state["step"], state["history"]
        log(f"resumed from {ckpt} at step {step}")
    bar = tqdm(total=cfg.steps, initial=step, desc="dcdm-train", disable=not progress)
    stopped_at = None
    while step < cfg.steps:
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            stopped_at = step
            break
        prob = probs[step % len(probs)]
        loss = dcdm_loss(model, prob, prob.rhs(cfg.batch, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        history.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix_str(f"loss {np.mean(history[-20:]):.4f}", refresh=False)
        if step % 25 == 0 or step == cfg.steps or (time_limit is not None and time.perf_counter() - t0 > time_limit):
            torch.save({"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "gen": gen.get_state(), "step": step, "history": history},
                       ckpt)
    bar.close()
    meta = {"train_config": asdict(cfg), "final_loss": float(np.mean(history[-20:])) if history else None,
            "seconds": time.perf_counter() - t0, "stopped_at": stopped_at}
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"config": model.config(), "state_dict": state, "meta": meta}, out)
    log(f"wrote {out} (loss {meta['final_loss']})" + ("" if stopped_at is None else
        f"; stopped by the time limit at step {stopped_at} of {cfg.steps}"))
    return meta
