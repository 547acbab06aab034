"""The ``nncert`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from . import __version__
from .errors import Error


def load_model(path: str, **kw: Any):
    """Reads a model file by its extension (.onnx, .nnet, .npz)."""
    from .network import Network

    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        return Network.from_onnx(path)
    if ext == ".nnet":
        return Network.from_nnet(path)
    if ext == ".npz":
        return Network.from_npz(path, **{k: v for k, v in kw.items() if v is not None})
    raise Error(f"{path}: unknown model format {ext!r} (expected .onnx, .nnet or .npz)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: .onnx, .nnet, or .npz")
    p.add_argument("--activation", default=None,
                   help="for plain .npz weight files (W0, W1, ...): the activation between layers "
                        "(relu, leaky_relu, tanh, sigmoid, maxmin)")
    p.add_argument("--residual", action="store_true", default=None,
                   help="for plain .npz weight files: residual layout x + act(W x)")


def cmd_info(args: argparse.Namespace) -> int:
    from .devices import available_devices

    net = load_model(args.model, activation=args.activation, residual=args.residual)
    if args.json:
        print(json.dumps({"model": args.model, "input_dim": net.input_dim, "output_dim": net.output_dim,
                          "num_params": net.num_params, "layers": [repr(l) for l in net.layers],
                          "devices": available_devices()}))
    else:
        print(net.summary())
        print(f"devices: {', '.join(available_devices())}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo()
    return 0


# Subcommands: name -> (help, add-arguments, run). Capabilities register theirs here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "info": ("summary of a model: layers, shapes, parameter count",
             lambda p: (_add_model_options(p), p.add_argument("--json", action="store_true")), cmd_info),
    "demo": ("a tour of every capability on small built-in examples", lambda p: None, cmd_demo),
}


# verify (issue 4)
from .verify.cli import add_batch_args, add_verify_args, cmd_verify, cmd_verify_batch  # noqa: E402

COMMANDS["verify"] = ("decide a VNN-LIB property for a model: holds / violated / timeout / unknown",
                      add_verify_args, cmd_verify)
COMMANDS["verify-batch"] = ("run a VNN-COMP instances CSV with a progress bar and a summary table",
                            add_batch_args, cmd_verify_batch)

def _add_dcdm_train(p: argparse.ArgumentParser) -> None:
    from .solvers.train import TrainConfig

    d = TrainConfig()
    p.add_argument("--grid", type=int, default=d.grid, help=f"training grid side N (N^3 cells; default {d.grid})")
    p.add_argument("--dim", type=int, choices=(2, 3), default=d.dim)
    p.add_argument("--obstacles", choices=("random", "none"), default=d.obstacles)
    p.add_argument("--layouts", type=int, default=d.layouts, help="training matrices (obstacle layouts)")
    p.add_argument("--ritz", type=int, default=d.ritz, help="Lanczos steps (Ritz vectors) per matrix")
    p.add_argument("--channels", type=int, default=d.channels)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--device", default=d.device, help="where to train: cpu, cuda or cuda:k (default cpu)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds; write the model trained so far when reached (resume continues it)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing OUT.ckpt checkpoint")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    p.add_argument("--json", action="store_true")


def cmd_dcdm_train(args: argparse.Namespace) -> int:
    from .solvers.train import TrainConfig, train

    cfg = TrainConfig(grid=args.grid, dim=args.dim, obstacles=args.obstacles, layouts=args.layouts, ritz=args.ritz,
                      channels=args.channels, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      threads=args.threads, device=args.device)
    meta = train(cfg, args.out, resume=not args.no_resume, log=(lambda *a: None) if args.json else print,
                 time_limit=args.time_limit)
    if args.json:
        print(json.dumps({"out": args.out, **meta}))
    return 0


def _add_solve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", type=int, default=32, help="3D Poisson grid side N")
    p.add_argument("--obstacles", choices=("random", "none"), default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--methods", default="cg,ic0,dcdm", help="comma list of cg, jacobi, ic0, dcdm")
    p.add_argument("--model", default="pretrained", help="DCDM model: 'pretrained' or a .pt file")
    p.add_argument("--json", action="store_true")


def cmd_solve(args: argparse.Namespace) -> int:
    import numpy as np

    from . import solvers

    A = solvers.poisson3d(args.grid, None if args.obstacles == "none" else "random", seed=args.seed)
    b = np.random.default_rng(args.seed).standard_normal(A.shape[0])
    rows = []
    for m in args.methods.split(","):
        if m == "dcdm":
            _, info = solvers.DCDM(model=args.model).solve(A, b, tol=args.tol)
        else:
            _, info = solvers.cg(A, b, tol=args.tol, precond=None if m == "cg" else m)
        rows.append({"method": info.method, "iterations": info.iterations, "seconds": info.seconds,
                     "converged": info.converged, "true_residual": info.true_residual})
    if args.json:
        print(json.dumps({"n": A.shape[0], "rows": rows}))
    else:
        print(f"3D Poisson {args.grid}^3, obstacles={args.obstacles}, {A.shape[0]} unknowns, tol {args.tol:g}")
        print(f"{'method':<12}{'iterations':>11}{'seconds':>10}{'converged':>11}{'residual':>11}")
        for r in rows:
            print(f"{r['method']:<12}{r['iterations']:>11}{r['seconds']:>10.3f}{str(r['converged']):>11}"
                  f"{r['true_residual']:>11.2e}")
    return 0


COMMANDS["dcdm-train"] = ("train the DCDM direction network on Ritz vectors of Poisson matrices",
                          _add_dcdm_train, cmd_dcdm_train)
COMMANDS["solve"] = ("solve a 3D Poisson system with obstacles by CG, PCG and DCDM; compare", _add_solve, cmd_solve)

def _add_lipschitz_options(p: argparse.ArgumentParser) -> None:
    _add_model_options(p)
    p.add_argument("--norm", default="2", choices=["2", "inf"], help="input norm (l-inf SDP bounds need --output)")
    p.add_argument("--method", default="auto",
                   choices=["auto", "naive", "lipsdp-neuron", "lipsdp-layer", "nsr", "nsr-full"], help="formulation")
    p.add_argument("--output", type=int, default=None, help="bound the scalar map x -> f(x)[k]")
    p.add_argument("--solver", default=None, choices=["IPM", "SCS", "CLARABEL", "MOSEK"],
                   help="SDP solver (default: IPM for chains of grouped layers, plain or residual, else SCS)")
    p.add_argument("--no-certify", action="store_true", help="skip the certificate (report the solver's bound)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_lipschitz(args: argparse.Namespace) -> int:
    from .lipschitz import lipschitz

    net = load_model(args.model, activation=args.activation, residual=args.residual)
    res = lipschitz(net, norm=args.norm, method=args.method, output=args.output, solver=args.solver,
                    certify=not args.no_certify)
    if args.json:
        d = res.to_dict()
        d["model"] = args.model
        print(json.dumps(d))
    else:
        print(f"model        {args.model}")
        print(res.summary())
    return 0


COMMANDS["lipschitz"] = ("certified upper bound on a model's Lipschitz constant (LipSDP / LipSDP-NSR)",
                         _add_lipschitz_options, cmd_lipschitz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nncert", description="Verification and analysis of neural networks.")
    parser.add_argument("--version", action="version", version=f"nncert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except (Error, FileNotFoundError) as e:
        print(f"nncert {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _convex_fit(args: argparse.Namespace) -> int:
    from .convex.cli import run
    return run(args)


def _convex_fit_args(p: argparse.ArgumentParser) -> None:
    from .convex.cli import add_arguments
    add_arguments(p)


COMMANDS["convex-fit"] = ("train a two-layer ReLU network to global optimality (convex reformulation)",
                          _convex_fit_args, _convex_fit)
