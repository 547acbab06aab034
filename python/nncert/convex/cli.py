"""``nncert convex-fit``: train a two-layer ReLU network to global optimality from an .npz or .csv file."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..errors import InvalidInputError


def _patterns_arg(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of gates or 'all', got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help=".npz with arrays X and y, or .csv whose last column is the target")
    p.add_argument("--patterns", type=_patterns_arg, default=100,
                   help="number of random gates (default 100), or 'all' for every pattern (exact formulation, small d)")
    p.add_argument("--beta", type=float, default=1e-3, help="group-norm weight (default 1e-3)")
    p.add_argument("--loss", default="squared", choices=["squared", "logistic", "hinge"])
    p.add_argument("--solver", default="admm", choices=["admm", "admm-approx", "scp", "cvxpy", "ipm"],
                   help="ipm: interior-point method for the squared loss (fastest while a Pd x Pd or n x n matrix fits)")
    p.add_argument("--eps", type=float, default=0.0, help="l-inf adversarial radius (solver admm or cvxpy)")
    p.add_argument("--classify", action="store_true", help="treat the target as class labels")
    p.add_argument("--standardize", action="store_true")
    p.add_argument("--max-iter", type=int, default=10000)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained network (.npz, nncert.Network.from_npz)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show a progress bar")


def load_xy(path: str) -> tuple[np.ndarray, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise InvalidInputError(f"{path}: expected arrays 'X' and 'y', found {sorted(f.files)}")
            return f["X"], f["y"]
    if path.endswith(".csv"):
        a = np.loadtxt(path, delimiter=",", ndmin=2)
        return a[:, :-1], a[:, -1]
    raise InvalidInputError(f"{path}: expected a .npz or .csv file")


def run(args: argparse.Namespace) -> int:
    from .estimator import ConvexReLU

    X, y = load_xy(args.data)
    if args.classify:
        y = y.astype(np.int64)
    sampled = args.patterns != "all"
    m = ConvexReLU(n_patterns=args.patterns if sampled else 100, patterns=None if sampled else "all", beta=args.beta, loss=args.loss, solver=args.solver,
                   adversarial_eps=args.eps, random_state=args.seed, standardize=args.standardize,
                   max_iter=args.max_iter, tol=args.tol, verbose=args.verbose).fit(X, y)
    net = m.to_network()
    out = {"data": args.data, "n": int(X.shape[0]), "d": int(X.shape[1]), "patterns": int(m.patterns_.shape[1]),
           "neurons": int(net.layers[0].W.shape[0]), "objective": m.objective_, "status": m.status_,
           "iterations": int(m.n_iter_), "u_solver": m.u_solver_, "constraint_violation": m.constraint_violation_,
           "train_score": m.score(X, y), "seconds": m.fit_seconds_}
    if args.save:
        net.save_npz(args.save)
        out["saved"] = args.save
    if args.json:
        print(json.dumps(out))
    else:
        w = max(len(k) for k in out)
        for k, v in out.items():
            print(f"{k.ljust(w)}  {v:.6g}" if isinstance(v, float) else f"{k.ljust(w)}  {v}")
    return 0
