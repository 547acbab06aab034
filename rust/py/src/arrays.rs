//! Zero-copy views of numpy arrays as faer matrices.
//!
//! numpy hands over a pointer and byte strides; faer reads any element strides, so C-, F- and
//! non-contiguous arrays are read in place. The raw parts are `Send` so the view can be rebuilt
//! inside a GIL-released closure while the numpy borrow is held by the caller.

use faer::{MatMut, MatRef};
use numpy::{Element, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

#[derive(Clone, Copy)]
pub struct RawMat<T> {
    ptr: *const T,
    nrows: usize,
    ncols: usize,
    rs: isize,
    cs: isize,
}
// Safety: the pointee is kept alive and unaliased-for-writes by the numpy borrow the caller holds.
unsafe impl<T> Send for RawMat<T> {}
unsafe impl<T> Sync for RawMat<T> {}

impl<T> RawMat<T> {
    pub fn of(a: &PyReadonlyArray2<'_, T>) -> Self
    where
        T: Element,
    {
        let shape = a.shape();
        let strides = a.strides();
        let sz = std::mem::size_of::<T>() as isize;
        Self {
            ptr: a.data() as *const T,
            nrows: shape[0],
            ncols: shape[1],
            rs: strides[0] / sz,
            cs: strides[1] / sz,
        }
    }

    /// # Safety
    /// The array this was taken from must still be borrowed by the caller.
    pub unsafe fn view<'a>(self) -> MatRef<'a, T> {
        MatRef::from_raw_parts(self.ptr, self.nrows, self.ncols, self.rs, self.cs)
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }
}

#[derive(Clone, Copy)]
pub struct RawMatMut<T> {
    ptr: *mut T,
    nrows: usize,
    ncols: usize,
}
unsafe impl<T> Send for RawMatMut<T> {}

impl<T: Element> RawMatMut<T> {
    /// A fresh C-ordered array; its raw parts for writing.
    pub fn alloc<'py>(py: Python<'py>, nrows: usize, ncols: usize) -> (Bound<'py, PyArray2<T>>, Self) {
        let arr = unsafe { PyArray2::<T>::new(py, [nrows, ncols], false) };
        let ptr = arr.data();
        (arr, Self { ptr, nrows, ncols })
    }

    /// # Safety
    /// The array must be alive and not otherwise borrowed.
    pub unsafe fn view<'a>(self) -> MatMut<'a, T> {
        MatMut::from_raw_parts_mut(self.ptr, self.nrows, self.ncols, self.ncols as isize, 1)
    }
}

/// An owned faer copy of a 2-D float64 array (for the core's owned-matrix entry points).
pub fn numpy_to_mat(a: &PyReadonlyArray2<'_, f64>) -> faer::Mat<f64> {
    let raw = RawMat::of(a);
    // Safety: `a` is borrowed for the duration of this call.
    unsafe { raw.view() }.to_owned()
}

/// A new C-ordered numpy array holding `m`.
pub fn mat_to_numpy<'py>(py: Python<'py>, m: &faer::Mat<f64>) -> Bound<'py, PyArray2<f64>> {
    let (arr, raw) = RawMatMut::<f64>::alloc(py, m.nrows(), m.ncols());
    // Safety: `arr` was just allocated and is not shared yet.
    unsafe { raw.view() }.copy_from(m.as_ref());
    arr
}
