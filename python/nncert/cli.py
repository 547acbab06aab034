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


def _add_lipschitz_options(p: argparse.ArgumentParser) -> None:
    _add_model_options(p)
    p.add_argument("--norm", default="2", choices=["2", "inf"], help="input norm (l-inf SDP bounds need --output)")
    p.add_argument("--method", default="auto",
                   choices=["auto", "naive", "lipsdp-neuron", "lipsdp-layer", "nsr"], help="formulation")
    p.add_argument("--output", type=int, default=None, help="bound the scalar map x -> f(x)[k]")
    p.add_argument("--solver", default=None, choices=["SCS", "CLARABEL", "MOSEK"], help="SDP solver (default SCS)")
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
