//! The matrix-free 7-point Laplacian on an nx*ny*nz grid (C order: index = (i*ny + j)*nz + k), Dirichlet
//! outside the box, optional solid cells with Neumann walls. Same operator as `poisson3d`'s CSR matrix
//! (over all cells; solid cells map to 0, so a right-hand side that is 0 there keeps them decoupled).

use rayon::prelude::*;

use super::LinOp;
use crate::error::{shape_err, Result};

pub struct Stencil7 {
    n: [usize; 3],
    solid: Option<Vec<bool>>,
    diag: Vec<f64>,
}

impl Stencil7 {
    pub fn new(nx: usize, ny: usize, nz: usize, solid: Option<Vec<bool>>) -> Result<Self> {
        let len = nx * ny * nz;
        if len == 0 {
            return Err(shape_err!("stencil grid {nx}x{ny}x{nz} is empty"));
        }
        if let Some(s) = &solid {
            if s.len() != len {
                return Err(shape_err!("solid mask has {} cells, grid has {len}", s.len()));
            }
        }
        let is_solid = |i: usize| solid.as_ref().is_some_and(|s| s[i]);
        let mut diag = vec![0.0; len];
        for i in 0..nx {
            for j in 0..ny {
                for k in 0..nz {
                    let c = (i * ny + j) * nz + k;
                    if is_solid(c) {
                        continue;
                    }
                    // A neighbour outside the box is a Dirichlet wall (counts); a solid one is Neumann (does not).
                    let mut d = 0.0;
                    let nb = [
                        (i > 0).then(|| c - ny * nz),
                        (i + 1 < nx).then(|| c + ny * nz),
                        (j > 0).then(|| c - nz),
                        (j + 1 < ny).then(|| c + nz),
                        (k > 0).then(|| c - 1),
                        (k + 1 < nz).then(|| c + 1),
                    ];
                    for m in nb {
                        match m {
                            None => d += 1.0,
                            Some(m) if !is_solid(m) => d += 1.0,
                            _ => {}
                        }
                    }
                    diag[c] = d;
                }
            }
        }
        Ok(Self { n: [nx, ny, nz], solid, diag })
    }

    pub fn shape(&self) -> [usize; 3] {
        self.n
    }
}

impl LinOp for Stencil7 {
    fn dim(&self) -> usize {
        self.diag.len()
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let [nx, ny, nz] = self.n;
        assert_eq!(x.len(), nx * ny * nz);
        let plane = ny * nz;
        let solid = self.solid.as_deref();
        y.par_chunks_mut(plane).enumerate().for_each(|(i, yp)| {
            for j in 0..ny {
                for k in 0..nz {
                    let c = i * plane + j * nz + k;
                    let fluid = |m: usize| solid.is_none_or(|s| !s[m]);
                    if !fluid(c) {
                        yp[j * nz + k] = 0.0;
                        continue;
                    }
                    let mut acc = self.diag[c] * x[c];
                    if i > 0 && fluid(c - plane) {
                        acc -= x[c - plane];
                    }
                    if i + 1 < nx && fluid(c + plane) {
                        acc -= x[c + plane];
                    }
                    if j > 0 && fluid(c - nz) {
                        acc -= x[c - nz];
                    }
                    if j + 1 < ny && fluid(c + nz) {
                        acc -= x[c + nz];
                    }
                    if k > 0 && fluid(c - 1) {
                        acc -= x[c - 1];
                    }
                    if k + 1 < nz && fluid(c + 1) {
                        acc -= x[c + 1];
                    }
                    yp[j * nz + k] = acc;
                }
            }
        });
    }

    fn bytes_per_apply(&self) -> usize {
        // x read, y written, diagonal read (+ the mask when present)
        self.dim() * (24 + if self.solid.is_some() { 1 } else { 0 })
    }

    fn diagonal(&self) -> Option<Vec<f64>> {
        Some(self.diag.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_in_interior_is_zero_and_boundary_counts_walls() {
        let s = Stencil7::new(3, 3, 3, None).unwrap();
        let x = vec![1.0; 27];
        let mut y = vec![0.0; 27];
        s.apply(&x, &mut y);
        assert_eq!(y[13], 0.0); // centre: 6 - 6
        assert_eq!(y[0], 3.0); // corner: three Dirichlet walls
    }

    #[test]
    fn solid_neighbours_are_neumann() {
        let mut solid = vec![false; 27];
        solid[13] = true;
        let s = Stencil7::new(3, 3, 3, Some(solid)).unwrap();
        let x = vec![1.0; 27];
        let mut y = vec![0.0; 27];
        s.apply(&x, &mut y);
        assert_eq!(y[13], 0.0);
        // face centre (1,1,0)=4: neighbours (0,1,0),(2,1,0),(1,0,0),(1,2,0) fluid, (1,1,1) solid, wall below
        assert_eq!(s.diagonal().unwrap()[4], 5.0);
        assert_eq!(y[4], 1.0);
    }
}
