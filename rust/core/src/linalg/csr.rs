//! Borrowed CSR matrices (the arrays of a scipy.sparse.csr_matrix, read in place) and parallel SpMV.

use rayon::prelude::*;

use super::LinOp;
use crate::error::{invalid_err, shape_err, Result};

/// Index types scipy uses for indptr/indices.
pub trait SpIndex: Copy + Send + Sync + 'static {
    fn idx(self) -> usize;
    /// Raw value as i64, for validation messages and range checks.
    fn raw(self) -> i64;
}
impl SpIndex for i32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
    fn raw(self) -> i64 {
        self as i64
    }
}
impl SpIndex for i64 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
    fn raw(self) -> i64 {
        self
    }
}

/// A CSR matrix over borrowed arrays. Built only through [`CsrRef::new`], which validates the structure
/// so that SpMV can index without bounds checks failing.
#[derive(Clone, Copy)]
pub struct CsrRef<'a, I: SpIndex> {
    nrows: usize,
    ncols: usize,
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [f64],
}

impl<'a, I: SpIndex> CsrRef<'a, I> {
    /// Checks indptr (starts at 0, nondecreasing, ends at nnz), column indices in range, finite data.
    pub fn new(ncols: usize, indptr: &'a [I], indices: &'a [I], data: &'a [f64]) -> Result<Self> {
        if indptr.is_empty() {
            return Err(shape_err!("CSR indptr is empty (it must have nrows + 1 entries)"));
        }
        let nrows = indptr.len() - 1;
        if indices.len() != data.len() {
            return Err(shape_err!("CSR indices has {} entries but data has {}", indices.len(), data.len()));
        }
        if indptr[0].raw() != 0 || indptr[nrows].raw() != data.len() as i64 {
            return Err(invalid_err!(
                "CSR indptr must run from 0 to nnz = {}, got {}..{}",
                data.len(),
                indptr[0].raw(),
                indptr[nrows].raw()
            ));
        }
        if let Some(i) = (0..nrows).find(|&i| indptr[i + 1].raw() < indptr[i].raw()) {
            return Err(invalid_err!("CSR indptr decreases at row {i}"));
        }
        if let Some(k) = indices.iter().position(|c| c.raw() < 0 || c.raw() >= ncols as i64) {
            return Err(invalid_err!("CSR column index {} at position {k} is out of range 0..{ncols}", indices[k].raw()));
        }
        if let Some(k) = data.iter().position(|v| !v.is_finite()) {
            return Err(invalid_err!("matrix entry {k} (in CSR order) is {} (entries must be finite)", data[k]));
        }
        Ok(Self { nrows, ncols, indptr, indices, data })
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// (column, value) pairs of row i.
    #[inline]
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (s, e) = (self.indptr[i].idx(), self.indptr[i + 1].idx());
        self.indices[s..e].iter().zip(&self.data[s..e]).map(|(c, v)| (c.idx(), *v))
    }

    #[inline]
    fn row_dot(&self, i: usize, x: &[f64]) -> f64 {
        let (s, e) = (self.indptr[i].idx(), self.indptr[i + 1].idx());
        let mut acc = 0.0;
        for k in s..e {
            // Safety: column indices were checked against ncols == x.len() in `new`/`matvec`.
            acc += self.data[k] * unsafe { *x.get_unchecked(self.indices[k].idx()) };
        }
        acc
    }

    /// y = A x, rows split across rayon threads.
    pub fn matvec(&self, x: &[f64], y: &mut [f64]) {
        assert_eq!(x.len(), self.ncols, "matvec: x has the wrong length");
        assert_eq!(y.len(), self.nrows, "matvec: y has the wrong length");
        const ROWS: usize = 4096;
        if self.nrows < 2 * ROWS {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi = self.row_dot(i, x);
            }
            return;
        }
        y.par_chunks_mut(ROWS).enumerate().for_each(|(c, yc)| {
            let base = c * ROWS;
            for (j, yi) in yc.iter_mut().enumerate() {
                *yi = self.row_dot(base + j, x);
            }
        });
    }
}

impl<I: SpIndex> LinOp for CsrRef<'_, I> {
    fn dim(&self) -> usize {
        self.nrows
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.matvec(x, y)
    }
    fn bytes_per_apply(&self) -> usize {
        self.nnz() * (8 + std::mem::size_of::<I>()) + (self.nrows + 1) * std::mem::size_of::<I>() + 16 * self.nrows
    }
    fn diagonal(&self) -> Option<Vec<f64>> {
        Some(
            (0..self.nrows)
                .map(|i| self.row(i).filter(|&(c, _)| c == i).map(|(_, v)| v).sum())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_matches_dense() {
        // [[4,1,0],[1,3,0],[0,0,2]]
        let indptr = [0i64, 2, 4, 5];
        let indices = [0i64, 1, 0, 1, 2];
        let data = [4.0, 1.0, 1.0, 3.0, 2.0];
        let a = CsrRef::new(3, &indptr, &indices, &data).unwrap();
        let mut y = vec![0.0; 3];
        a.matvec(&[1.0, 2.0, 3.0], &mut y);
        assert_eq!(y, vec![6.0, 7.0, 6.0]);
        assert_eq!(a.diagonal().unwrap(), vec![4.0, 3.0, 2.0]);
    }

    #[test]
    fn rejects_bad_structure() {
        let indptr = [0i32, 2, 1];
        let indices = [0i32, 1];
        assert!(CsrRef::new(2, &indptr, &indices, &[1.0, 2.0]).is_err());
        let indptr = [0i32, 1, 2];
        let indices = [0i32, 5];
        assert!(CsrRef::new(2, &indptr, &indices, &[1.0, 2.0]).is_err());
        let indices = [0i32, 1];
        assert!(CsrRef::new(2, &indptr, &indices, &[1.0, f64::NAN]).is_err());
    }
}
