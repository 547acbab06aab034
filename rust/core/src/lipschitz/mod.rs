//! Norms, power iteration, LMI certification and repair, first-order solvers (Lipschitz issue).
