//! CSR matrices, CG/PCG/DCDM iterations, Lanczos, Poisson grids (linear solvers issue).
