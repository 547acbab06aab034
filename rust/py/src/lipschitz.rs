//! Bindings for Lipschitz norms, the chain decomposition, LMI certificates and the sampled lower bound.

use faer::Mat;
use nncert_core::lipschitz::{self, Act, Chain, FullMult, Multipliers, Norm, StageMult};
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{mat_to_numpy, numpy_to_mat};
use crate::errors::{run_detached, to_pyerr};
use crate::network::PyNetwork;

/// An activation family's data in a stage dict (an implicit stage adds its F, the inner family's name and data).
fn act_items(py: Python<'_>, d: &Bound<'_, PyDict>, act: &Act) -> PyResult<()> {
    match act {
        Act::Sector { alpha, beta } => {
            d.set_item("alpha", alpha)?;
            d.set_item("beta", beta)?;
        }
        Act::Groups { groups, e } => {
            d.set_item("groups", groups.clone())?;
            d.set_item("E", mat_to_numpy(py, e))?;
        }
        Act::Linear => {}
        Act::Implicit { f, inner, .. } => {
            d.set_item("F", mat_to_numpy(py, f))?;
            d.set_item("act", inner.name())?;
            act_items(py, d, inner)?;
        }
    }
    Ok(())
}

fn parse_norm(py: Python<'_>, s: &str) -> PyResult<Norm> {
    Norm::parse(s).map_err(|e| to_pyerr(py, e))
}

fn vec_of(c: Option<PyReadonlyArray1<'_, f64>>) -> Option<Vec<f64>> {
    c.map(|a| a.as_array().to_vec())
}

/// Naive bound: product of layer norms (residual blocks: ||S|| + inner bound, ||I|| = 1).
#[pyfunction]
#[pyo3(signature = (net, norm, c=None))]
fn lipschitz_naive(py: Python<'_>, net: &Bound<'_, PyNetwork>, norm: &str, c: Option<PyReadonlyArray1<'_, f64>>) -> PyResult<f64> {
    let norm = parse_norm(py, norm)?;
    let c = vec_of(c);
    let net = &net.get().inner;
    run_detached(py, move || lipschitz::norms::naive_bound(net, norm, c.as_deref()))
}

/// Exact (guarded) spectral norm of a matrix.
#[pyfunction]
fn spectral_norm(py: Python<'_>, w: PyReadonlyArray2<'_, f64>) -> PyResult<f64> {
    let w = numpy_to_mat(&w);
    run_detached(py, move || lipschitz::norms::spectral_norm(w.as_ref()))
}

/// The chain decomposition as a list of stage dicts plus the final rows and the total scale.
#[pyfunction]
#[pyo3(signature = (net, c=None))]
fn lipschitz_chain<'py>(py: Python<'py>, net: &Bound<'py, PyNetwork>, c: Option<PyReadonlyArray1<'py, f64>>) -> PyResult<Bound<'py, PyDict>> {
    let c = vec_of(c);
    let inner = &net.get().inner;
    let chain = run_detached(py, move || Chain::new(inner, c.as_deref()))?;
    let out = PyDict::new(py);
    let stages = PyList::empty(py);
    for st in &chain.stages {
        let d = PyDict::new(py);
        d.set_item("W", mat_to_numpy(py, &st.w))?;
        d.set_item("kind", st.act.name())?;
        d.set_item("residual", st.residual)?;
        d.set_item("scale", st.scale)?;
        d.set_item("layer", &st.layer)?;
        if let Some(g) = &st.g {
            d.set_item("G", mat_to_numpy(py, g))?;
        }
        if let Some(sk) = &st.skip {
            d.set_item("S", mat_to_numpy(py, sk))?;
        }
        act_items(py, &d, &st.act)?;
        stages.append(d)?;
    }
    out.set_item("stages", stages)?;
    out.set_item("final", mat_to_numpy(py, &chain.final_rows()))?;
    out.set_item("scale", chain.scale)?;
    out.set_item("input_dim", chain.input_dim)?;
    Ok(out)
}

fn stage_mults(py: Python<'_>, stages: &Bound<'_, PyList>) -> PyResult<Vec<StageMult>> {
    let _ = py;
    stages
        .iter()
        .map(|s| {
            let d = s.cast::<PyDict>()?;
            let get_vec = |k: &str| -> PyResult<Vec<f64>> {
                match d.get_item(k)? {
                    Some(v) if !v.is_none() => Ok(v.extract::<PyReadonlyArray1<f64>>()?.as_array().to_vec()),
                    _ => Ok(Vec::new()),
                }
            };
            let x_next: Option<Mat<f64>> = match d.get_item("X")? {
                Some(v) if !v.is_none() => Some(numpy_to_mat(&v.extract::<PyReadonlyArray2<f64>>()?)),
                _ => None,
            };
            Ok(StageMult { t: get_vec("t")?, gamma: get_vec("gamma")?, x_next })
        })
        .collect()
}

/// Evaluates every LMI of the chain at the given multipliers, repairs them (when `repair`), and
/// returns the certificate as a dict.
#[pyfunction]
#[pyo3(signature = (net, norm, rho, stages, d=None, c=None, repair=true))]
#[allow(clippy::too_many_arguments)]
fn lipschitz_certify<'py>(
    py: Python<'py>,
    net: &Bound<'py, PyNetwork>,
    norm: &str,
    rho: f64,
    stages: &Bound<'py, PyList>,
    d: Option<PyReadonlyArray1<'py, f64>>,
    c: Option<PyReadonlyArray1<'py, f64>>,
    repair: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let norm = parse_norm(py, norm)?;
    let mu = Multipliers { rho, d: vec_of(d).unwrap_or_default(), stages: stage_mults(py, stages)? };
    let c = vec_of(c);
    let inner = &net.get().inner;
    let cert = run_detached(py, move || {
        let chain = Chain::new(inner, c.as_deref())?;
        lipschitz::certify(&chain, norm, mu, repair)
    })?;
    cert_dict(py, cert)
}

fn cert_dict(py: Python<'_>, cert: lipschitz::Certificate) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("bound", cert.bound)?;
    out.set_item("certified", cert.certified)?;
    out.set_item("solver_bound", cert.solver_bound)?;
    out.set_item("rho", cert.rho)?;
    out.set_item("repaired", cert.repaired)?;
    out.set_item("message", cert.message)?;
    let lmis = PyList::empty(py);
    for l in cert.lmis {
        let e = PyDict::new(py);
        e.set_item("name", l.name)?;
        e.set_item("size", l.size)?;
        e.set_item("min_eig_before", l.min_eig_before)?;
        e.set_item("min_eig_after", l.min_eig_after)?;
        e.set_item("margin", l.margin)?;
        lmis.append(e)?;
    }
    out.set_item("lmis", lmis)?;
    Ok(out)
}

fn mats_of(list: &Bound<'_, PyList>) -> PyResult<Vec<Mat<f64>>> {
    list.iter().map(|v| Ok(numpy_to_mat(&v.extract::<PyReadonlyArray2<f64>>()?))).collect()
}

/// The full block-tridiagonal LipSDP-NSR LMI (with the S and P multipliers): check, repair, certificate dict.
#[pyfunction]
#[pyo3(signature = (net, norm, rho, stages, s, p, d=None, c=None, repair=true))]
#[allow(clippy::too_many_arguments)]
fn lipschitz_certify_full<'py>(
    py: Python<'py>,
    net: &Bound<'py, PyNetwork>,
    norm: &str,
    rho: f64,
    stages: &Bound<'py, PyList>,
    s: &Bound<'py, PyList>,
    p: &Bound<'py, PyList>,
    d: Option<PyReadonlyArray1<'py, f64>>,
    c: Option<PyReadonlyArray1<'py, f64>>,
    repair: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let norm = parse_norm(py, norm)?;
    let base = Multipliers { rho, d: vec_of(d).unwrap_or_default(), stages: stage_mults(py, stages)? };
    let mu = FullMult { base, s: mats_of(s)?, p: mats_of(p)? };
    let c = vec_of(c);
    let inner = &net.get().inner;
    let cert = run_detached(py, move || {
        let chain = Chain::new(inner, c.as_deref())?;
        lipschitz::certify_full(&chain, norm, mu, repair)
    })?;
    cert_dict(py, cert)
}

/// Multi-start search for the largest local Jacobian norm: (value, x).
#[pyfunction]
#[pyo3(signature = (net, norm, c=None, starts=16, steps=100, seed=0))]
fn lipschitz_lower<'py>(
    py: Python<'py>,
    net: &Bound<'py, PyNetwork>,
    norm: &str,
    c: Option<PyReadonlyArray1<'py, f64>>,
    starts: usize,
    steps: usize,
    seed: u64,
) -> PyResult<(f64, Bound<'py, PyArray2<f64>>)> {
    let norm = parse_norm(py, norm)?;
    let c = vec_of(c);
    let inner = &net.get().inner;
    let (v, x) = run_detached(py, move || lipschitz::lower::lower_bound(inner, norm, c.as_deref(), starts, steps, seed))?;
    let xm = Mat::from_fn(1, x.len(), |_, j| x[j]);
    Ok((v, mat_to_numpy(py, &xm)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lipschitz_naive, m)?)?;
    m.add_function(wrap_pyfunction!(spectral_norm, m)?)?;
    m.add_function(wrap_pyfunction!(lipschitz_chain, m)?)?;
    m.add_function(wrap_pyfunction!(lipschitz_certify, m)?)?;
    m.add_function(wrap_pyfunction!(lipschitz_certify_full, m)?)?;
    m.add_function(wrap_pyfunction!(lipschitz_lower, m)?)?;
    Ok(())
}
