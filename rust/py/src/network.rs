//! `nncert._core.Network`: the core network, built from layer specs that python/nncert/network.py
//! produces (tuples: ("dense", W, b) | ("relu",) | ("leaky_relu", slope) | ("tanh",) | ("sigmoid",) |
//! ("groupsort", g, pairing) | ("householder", theta, pairing) | ("residual", [specs]) |
//! ("residual", [specs], S or None) with S the (d, d) float64 skip matrix of y = S x + f(x)).

use faer::Mat;
use nncert_core::network::Implicit;
use nncert_core::{Layer, Network, Pairing};
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::arrays::{mat_to_numpy, numpy_to_mat, RawMat, RawMatMut};
use crate::errors::{run_detached, to_pyerr};

#[pyclass(module = "nncert._core", name = "Network", frozen)]
pub struct PyNetwork {
    pub inner: Network,
}

fn pairing(s: &str) -> PyResult<Pairing> {
    match s {
        "adjacent" => Ok(Pairing::Adjacent),
        "halves" => Ok(Pairing::Halves),
        other => Err(PyValueError::new_err(format!("pairing must be 'adjacent' or 'halves', got {other:?}"))),
    }
}

/// One layer from its spec; also ("implicit", W, U, b, activation spec, lam or None) for Implicit layers.
fn layer_from_spec(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Layer> {
    let t = spec.cast::<PyTuple>()?;
    let kind: String = t.get_item(0)?.extract()?;
    Ok(match kind.as_str() {
        "dense" => {
            let w: PyReadonlyArray2<f64> = t.get_item(1)?.extract()?;
            let b: PyReadonlyArray1<f64> = t.get_item(2)?.extract()?;
            let wv = w.as_array();
            let weight = Mat::from_fn(wv.nrows(), wv.ncols(), |i, j| wv[[i, j]]);
            let bias = b.as_array().to_vec();
            Layer::dense(weight, Some(bias)).map_err(|e| to_pyerr(py, e))?
        }
        "relu" => Layer::ReLU,
        "leaky_relu" => Layer::LeakyReLU { slope: t.get_item(1)?.extract()? },
        "tanh" => Layer::Tanh,
        "sigmoid" => Layer::Sigmoid,
        "groupsort" => Layer::GroupSort {
            group_size: t.get_item(1)?.extract()?,
            pairing: pairing(&t.get_item(2)?.extract::<String>()?)?,
        },
        "householder" => Layer::Householder {
            theta: t.get_item(1)?.extract()?,
            pairing: pairing(&t.get_item(2)?.extract::<String>()?)?,
        },
        "residual" => {
            let inner = t.get_item(1)?;
            let inner = inner.cast::<PyList>()?;
            let inner = inner.iter().map(|s| layer_from_spec(py, &s)).collect::<PyResult<_>>()?;
            let skip = if t.len() > 2 && !t.get_item(2)?.is_none() {
                Some(numpy_to_mat(&t.get_item(2)?.extract::<PyReadonlyArray2<f64>>()?))
            } else {
                None
            };
            Layer::residual(inner, skip).map_err(|e| to_pyerr(py, e))?
        }
        "implicit" => {
            let mat = |k: usize| -> PyResult<Mat<f64>> {
                let a: PyReadonlyArray2<f64> = t.get_item(k)?.extract()?;
                Ok(numpy_to_mat(&a))
            };
            let (w, u) = (mat(1)?, mat(2)?);
            let b: PyReadonlyArray1<f64> = t.get_item(3)?.extract()?;
            let act = layer_from_spec(py, &t.get_item(4)?)?;
            let b = b.as_array().to_vec();
            let lam: Option<Vec<f64>> = match t.len() > 5 {
                true if !t.get_item(5)?.is_none() => {
                    Some(t.get_item(5)?.extract::<PyReadonlyArray1<f64>>()?.as_array().to_vec())
                }
                _ => None,
            };
            let imp = run_detached(py, move || Implicit::with_weights(w, u, Some(b), act, lam))?;
            Layer::Implicit(Box::new(imp))
        }
        other => return Err(PyValueError::new_err(format!("unknown layer kind {other:?}"))),
    })
}

fn forward_typed<'py, T>(
    py: Python<'py>,
    net: &Network,
    x: PyReadonlyArray2<'py, T>,
) -> PyResult<Bound<'py, PyArray2<T>>>
where
    T: nncert_core::network::NetScalar + numpy::Element,
{
    let raw = RawMat::of(&x);
    let (out, raw_out) = RawMatMut::<T>::alloc(py, raw.nrows(), net.output_dim());
    // Safety: `x` stays borrowed and `out` unshared until this function returns.
    run_detached(py, move || unsafe { net.forward_into(raw.view(), raw_out.view()) })?;
    Ok(out)
}

#[pymethods]
impl PyNetwork {
    #[new]
    #[pyo3(signature = (specs, input_dim=None))]
    fn new(py: Python<'_>, specs: &Bound<'_, PyList>, input_dim: Option<usize>) -> PyResult<Self> {
        let layers = specs
            .iter()
            .enumerate()
            .map(|(k, s)| {
                layer_from_spec(py, &s).map_err(|e| {
                    // name the layer in errors from an Implicit layer's checks (well-posedness, shapes)
                    let msg = e.value(py).to_string();
                    if msg.starts_with("Implicit") {
                        let prefixed = format!("layer {k}: {msg}");
                        let cls = e.get_type(py);
                        cls.call1((prefixed,)).map(PyErr::from_value).unwrap_or(e)
                    } else {
                        e
                    }
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let inner = Network::new(layers, input_dim).map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }

    #[getter]
    fn output_dim(&self) -> usize {
        self.inner.output_dim()
    }

    #[getter]
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }

    /// One dict per Implicit layer: path, units, activation, certificate ("contraction" | "monotone" | "weighted-monotone"),
    /// contraction (beta ||W||_2, rounded up), monotone_margin (lambda_min(I - sym W), rounded down, or None),
    /// iteration ("picard" | "peaceman-rachford"), rate (its guaranteed contraction factor), max_iters.
    fn implicit_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (path, imp) in self.inner.implicit_layers() {
            let d = pyo3::types::PyDict::new(py);
            d.set_item("path", path)?;
            d.set_item("units", imp.out_dim())?;
            d.set_item("activation", imp.activation().kind())?;
            d.set_item("certificate", imp.certificate().name())?;
            d.set_item("contraction", imp.contraction())?;
            d.set_item("monotone_margin", imp.monotone_margin())?;
            d.set_item("iteration", imp.iteration())?;
            d.set_item("rate", imp.rate())?;
            d.set_item("max_iters", imp.max_iters())?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Batched forward pass of a 2-D float64 array (any memory order, read in place).
    fn forward_f64<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        forward_typed(py, &self.inner, x)
    }

    /// The Jacobian (output_dim, input_dim) at one point, float64.
    fn jacobian<'py>(&self, py: Python<'py>, x: PyReadonlyArray1<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let x = x.as_array().to_vec();
        let net = &self.inner;
        let j = run_detached(py, move || net.jacobian(&x))?;
        Ok(mat_to_numpy(py, &j))
    }

    /// Rows f(x_i) and gradients of x -> c_i^T f(x) at each row of xs; cs has one row or one per x.
    fn vjp_batch<'py>(
        &self,
        py: Python<'py>,
        xs: PyReadonlyArray2<'py, f64>,
        cs: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<f64>>)> {
        let (xs, cs) = (numpy_to_mat(&xs), numpy_to_mat(&cs));
        let net = &self.inner;
        let (ys, gs) = run_detached(py, move || net.vjp_batch(&xs, &cs))?;
        Ok((mat_to_numpy(py, &ys), mat_to_numpy(py, &gs)))
    }

    /// Batched forward pass of a 2-D float32 array, computed in float32.
    fn forward_f32<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'py, f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        forward_typed(py, &self.inner, x)
    }
}
