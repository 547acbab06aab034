"""Linear solvers for sparse SPD systems: CG/PCG in the Rust core and the deep conjugate-direction
method (DCDM, Kaneda et al., ICML 2023) with a 3D convolutional network trained on Ritz vectors.

    A = nncert.solvers.poisson3d(32, obstacles="random", seed=1)
    x, info = nncert.solvers.cg(A, b, tol=1e-6, precond="ic0")
    x, info = nncert.solvers.DCDM(model="pretrained", k=2).solve(A, b, tol=1e-6)
"""

from .dcdm import DCDM, load_model
from .info import SolveInfo
from .krylov import cg
from .problems import Grid, grid_of, poisson2d, poisson3d, random_obstacles
from .train import TrainConfig, ritz_vectors, train

__all__ = ["cg", "DCDM", "SolveInfo", "poisson3d", "poisson2d", "random_obstacles", "Grid", "grid_of",
           "ritz_vectors", "train", "TrainConfig", "load_model"]
