//! Preconditioners z = M^{-1} r for PCG: identity, Jacobi, and incomplete Cholesky IC(0).

use rayon::prelude::*;

use super::csr::{CsrRef, SpIndex};
use super::vecops::CHUNK;
use crate::error::{invalid_err, Error, Result};

pub trait Preconditioner: Sync {
    fn apply(&self, r: &[f64], z: &mut [f64]);
    fn name(&self) -> &'static str;
}

pub struct Identity;
impl Preconditioner for Identity {
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        z.copy_from_slice(r);
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

pub struct Jacobi {
    inv_diag: Vec<f64>,
}

impl Jacobi {
    pub fn new(diag: &[f64]) -> Result<Self> {
        if let Some(i) = diag.iter().position(|&d| !(d > 0.0)) {
            return Err(invalid_err!(
                "Jacobi preconditioner: diagonal entry {i} is {} (an SPD matrix has a positive diagonal)",
                diag[i]
            ));
        }
        Ok(Self { inv_diag: diag.iter().map(|d| 1.0 / d).collect() })
    }
}

impl Preconditioner for Jacobi {
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        z.par_chunks_mut(CHUNK)
            .zip(r.par_chunks(CHUNK).zip(self.inv_diag.par_chunks(CHUNK)))
            .for_each(|(zc, (rc, dc))| zc.iter_mut().zip(rc.iter().zip(dc)).for_each(|(zi, (ri, di))| *zi = ri * di));
    }
    fn name(&self) -> &'static str {
        "jacobi"
    }
}

/// IC(0): L L^T ~ A with L restricted to the sparsity of A's lower triangle. Stored row-wise
/// (strictly lower part in CSR, diagonal apart). When a pivot is not positive (possible for SPD
/// matrices that are not M-matrices), the factorisation is retried on A + shift * diag(A).
pub struct Ic0 {
    n: usize,
    indptr: Vec<usize>,
    cols: Vec<usize>,
    vals: Vec<f64>,
    diag: Vec<f64>,
    /// The diagonal shift that made the factorisation succeed (0 for plain IC(0)).
    pub shift: f64,
}

impl Ic0 {
    pub fn new<I: SpIndex>(a: &CsrRef<'_, I>) -> Result<Self> {
        let n = a.nrows();
        if a.ncols() != n {
            return Err(invalid_err!("IC(0) needs a square matrix, got {}x{}", n, a.ncols()));
        }
        // Lower pattern, sorted by column, duplicates summed.
        let mut indptr = vec![0usize; n + 1];
        let mut cols = Vec::new();
        let mut avals = Vec::new();
        let mut adiag = vec![0.0; n];
        let mut row: Vec<(usize, f64)> = Vec::new();
        for i in 0..n {
            row.clear();
            for (c, v) in a.row(i) {
                if c < i {
                    row.push((c, v));
                } else if c == i {
                    adiag[i] += v;
                }
            }
            row.sort_unstable_by_key(|e| e.0);
            let start = cols.len();
            for &(c, v) in row.iter() {
                if cols.len() > start && *cols.last().unwrap() == c {
                    *avals.last_mut().unwrap() += v;
                } else {
                    cols.push(c);
                    avals.push(v);
                }
            }
            indptr[i + 1] = cols.len();
        }
        if let Some(i) = adiag.iter().position(|&d| !(d > 0.0)) {
            return Err(invalid_err!("IC(0): diagonal entry {i} is {} (an SPD matrix has a positive diagonal)", adiag[i]));
        }
        let mut shift = 0.0;
        for _ in 0..12 {
            match Self::factor(n, &indptr, &cols, &avals, &adiag, shift) {
                Ok((vals, diag)) => return Ok(Self { n, indptr, cols, vals, diag, shift }),
                Err(_) => shift = if shift == 0.0 { 1e-3 } else { shift * 4.0 },
            }
        }
        Err(Error::Solver("IC(0) factorisation broke down even with a diagonal shift; is the matrix SPD?".into()))
    }

    fn factor(
        n: usize,
        indptr: &[usize],
        cols: &[usize],
        avals: &[f64],
        adiag: &[f64],
        shift: f64,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut l = avals.to_vec();
        let mut d = vec![0.0; n];
        for i in 0..n {
            let (s, e) = (indptr[i], indptr[i + 1]);
            for p in s..e {
                let k = cols[p];
                // sum_{j<k} L[i,j] L[k,j] over the shared pattern (both rows sorted by column)
                let (mut a, mut b) = (s, indptr[k]);
                let kb = indptr[k + 1];
                let mut acc = 0.0;
                while a < p && b < kb {
                    match cols[a].cmp(&cols[b]) {
                        std::cmp::Ordering::Less => a += 1,
                        std::cmp::Ordering::Greater => b += 1,
                        std::cmp::Ordering::Equal => {
                            acc += l[a] * l[b];
                            a += 1;
                            b += 1;
                        }
                    }
                }
                l[p] = (l[p] - acc) / d[k];
            }
            let piv = adiag[i] * (1.0 + shift) - l[s..e].iter().map(|v| v * v).sum::<f64>();
            if !(piv > 0.0) || !piv.is_finite() {
                return Err(invalid_err!("non-positive IC(0) pivot at row {i}"));
            }
            d[i] = piv.sqrt();
        }
        Ok((l, d))
    }
}

impl Preconditioner for Ic0 {
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        // L y = r
        for i in 0..self.n {
            let mut acc = r[i];
            for p in self.indptr[i]..self.indptr[i + 1] {
                acc -= self.vals[p] * z[self.cols[p]];
            }
            z[i] = acc / self.diag[i];
        }
        // L^T z = y, column sweep over the rows of L
        for i in (0..self.n).rev() {
            let zi = z[i] / self.diag[i];
            z[i] = zi;
            for p in self.indptr[i]..self.indptr[i + 1] {
                z[self.cols[p]] -= self.vals[p] * zi;
            }
        }
    }
    fn name(&self) -> &'static str {
        "ic0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ic0_is_exact_on_tridiagonal() {
        // tridiagonal SPD: IC(0) has no fill to drop, so M = A and M^{-1} A r = r
        let n = 6;
        let mut indptr = vec![0i64];
        let mut idx = vec![];
        let mut data = vec![];
        for i in 0..n {
            if i > 0 {
                idx.push(i as i64 - 1);
                data.push(-1.0);
            }
            idx.push(i as i64);
            data.push(2.5);
            if i + 1 < n {
                idx.push(i as i64 + 1);
                data.push(-1.0);
            }
            indptr.push(idx.len() as i64);
        }
        let a = CsrRef::new(n, &indptr, &idx, &data).unwrap();
        let ic = Ic0::new(&a).unwrap();
        assert_eq!(ic.shift, 0.0);
        let r: Vec<f64> = (0..n).map(|i| (i as f64).sin() + 1.0).collect();
        let mut z = vec![0.0; n];
        ic.apply(&r, &mut z);
        let mut az = vec![0.0; n];
        a.matvec(&z, &mut az);
        for i in 0..n {
            assert!((az[i] - r[i]).abs() < 1e-12);
        }
    }
}
