//! The certificate of the full LipSDP-NSR LMI: one block-tridiagonal matrix over (dz_0, ..., dz_L)
//! for a chain of plain GroupSort / MaxMin / Householder stages, with the S and P multipliers.
//!
//! Quadratic constraints of stage k (w = W_k z_k, z_{k+1} = phi(w); per group j of size g, with the
//! group indicator matrix E_g (m x G) and l = E_g^T (dz_{k+1} - W_k dz_k) in R^G):
//! - lambda_j (||dw_j||^2 - ||dz_{k+1,j}||^2) >= 0 (lambda_j >= 0: phi is 1-Lipschitz per group);
//! - gamma_j ((1^T dw_j)^2 - (1^T dz_{k+1,j})^2) = 0 (GroupSort permutes each group, so the sum is kept;
//!   Householder: E = I - vv^T instead of 11^T);
//! - 2 l^T (S_k^T dz_k + P_k^T dz_{k+1}) = 0 for any S_k (n_k x G), P_k (m_k x G): every entry of l is
//!   zero because each group's sum is kept, so this term vanishes for every pair of inputs. It is only
//!   allowed for GroupSort / MaxMin groups (E = 11^T exactly); Householder stages must pass S = P = 0.
//!
//! With A = E_g S^T (m x n) and B = E_g P^T (m x m) the last term is the quadratic form of
//! [[-(W^T A + A^T W), A^T - W^T B], [A - B^T W, B + B^T]] over (dz_k, dz_{k+1}). The LMI is
//!   M = diag(X_0, 0, ..., 0) - sum_k [QC_k] + sum_k [S/P_k] - [final]  >= 0
//! with X_0 = rho I (l2) or diag(d) (l-inf) and the final term R^T R at dz_L (l2) or the border
//! [[., R^T], [R, rho]] (l-inf, one extra row). Then dz_0^T X_0 dz_0 >= (R dz_L)^2 (l2 directly; l-inf
//! by the Schur complement) for every pair of inputs: the same bounds as the chain. With S = P = 0, M
//! is block-diagonal and its blocks are exactly the chain's LMIs.
//!
//! The check and the rounding margin are those of `certify.rs` (exact symmetric eigenvalues of M in
//! float64, margin from the absolute-value matrix). Repair: raise lambda of the last stage, then of
//! each earlier stage by enough to cover the W^T W it subtracts, then rho (or d), so that M grows by
//! at least delta I; repeat with doubling delta until the check passes.

use faer::Mat;

use super::certify::{abs_mat, bound_of, fro, matmul_new, min_eig, rounding_margin, stage_q, validate};
use super::certify::{Certificate, LmiReport, Multipliers};
use super::chain::{Act, Chain};
use super::Norm;
use crate::error::{shape_err, Error, Result};

/// Multipliers of the full LMI: the chain's (rho, d, lambda = `t`, gamma) and per stage S_k (n_k x G_k),
/// P_k (m_k x G_k) (n_0 = the input width).
#[derive(Clone, Debug)]
pub struct FullMult {
    pub base: Multipliers,
    pub s: Vec<Mat<f64>>,
    pub p: Vec<Mat<f64>>,
}

fn all_ones(e: &Mat<f64>) -> bool {
    (0..e.nrows()).all(|i| (0..e.ncols()).all(|j| e[(i, j)] == 1.0))
}

fn check(chain: &Chain, norm: Norm, mu: &mut FullMult) -> Result<()> {
    if chain.stages.is_empty() {
        return Err(Error::Unsupported("the full NSR LMI needs at least one GroupSort/MaxMin/Householder stage".into()));
    }
    for (k, st) in chain.stages.iter().enumerate() {
        if st.residual || !matches!(st.act, Act::Groups { .. }) {
            return Err(Error::Unsupported(format!(
                "the full NSR LMI handles chains of plain GroupSort / MaxMin / Householder layers; stage {k} ({}) is not one \
                 (use method='nsr')",
                st.layer
            )));
        }
    }
    validate(chain, norm, &mut mu.base)?;
    if mu.s.len() != chain.stages.len() || mu.p.len() != chain.stages.len() {
        return Err(shape_err!("full NSR certificate: {} S and {} P for {} stages", mu.s.len(), mu.p.len(), chain.stages.len()));
    }
    for (k, st) in chain.stages.iter().enumerate() {
        let Act::Groups { groups, e } = &st.act else { unreachable!() };
        let (m, n, g) = (st.w.nrows(), st.w.ncols(), groups.len());
        let (s, p) = (&mu.s[k], &mu.p[k]);
        if s.nrows() != n || s.ncols() != g || p.nrows() != m || p.ncols() != g {
            return Err(shape_err!(
                "full NSR certificate: stage {k} has S {}x{} and P {}x{}, expected {n}x{g} and {m}x{g}",
                s.nrows(),
                s.ncols(),
                p.nrows(),
                p.ncols()
            ));
        }
        let vals = || (0..s.ncols()).flat_map(move |j| (0..s.nrows()).map(move |i| s[(i, j)]));
        let valp = || (0..p.ncols()).flat_map(move |j| (0..p.nrows()).map(move |i| p[(i, j)]));
        if vals().chain(valp()).any(|v| !v.is_finite()) {
            return Err(Error::Solver("the solver returned non-finite S / P multipliers".into()));
        }
        if !all_ones(e) && vals().chain(valp()).any(|v| v != 0.0) {
            return Err(crate::error::invalid_err!(
                "full NSR certificate: stage {k} ({}) is a Householder layer; its S and P must be zero",
                st.layer
            ));
        }
    }
    Ok(())
}

fn offsets(chain: &Chain) -> Vec<usize> {
    let mut o = vec![0, chain.input_dim];
    for st in &chain.stages {
        o.push(o.last().unwrap() + st.w.nrows());
    }
    o
}

fn add_block(m: &mut Mat<f64>, r0: usize, c0: usize, b: &Mat<f64>, sign: f64) {
    for j in 0..b.ncols() {
        for i in 0..b.nrows() {
            m[(r0 + i, c0 + j)] += sign * b[(i, j)];
        }
    }
}

/// The full LMI matrix (`abs`: from absolute values with every sign positive, for the rounding bound),
/// and the longest sum of products in its entries.
fn build(chain: &Chain, norm: Norm, mu: &FullMult, abs: bool) -> (Mat<f64>, usize) {
    let sg = |s: f64| if abs { s.abs() } else { s };
    let f = |a: &Mat<f64>| if abs { abs_mat(a.as_ref()) } else { a.clone() };
    let off = offsets(chain);
    let nl = chain.stages.len();
    let extra = usize::from(norm == Norm::Linf);
    let nt = off[nl + 1] + extra;
    let mut m = Mat::<f64>::zeros(nt, nt);
    let b = &mu.base;
    for i in 0..chain.input_dim {
        m[(i, i)] += match norm {
            Norm::L2 => sg(b.rho),
            Norm::Linf => sg(b.d[i]),
        };
    }
    let mut p = 16;
    for (k, st) in chain.stages.iter().enumerate() {
        let Act::Groups { groups, .. } = &st.act else { unreachable!() };
        let w = f(&st.w);
        let (rows, cols) = (w.nrows(), w.ncols());
        p = p.max(2 * rows.max(cols) + 32);
        let q = stage_q(chain, norm, k, b, abs);
        let wqw = matmul_new(w.transpose(), matmul_new(q.as_ref(), w.as_ref()).as_ref());
        add_block(&mut m, off[k], off[k], &wqw, sg(-1.0));
        add_block(&mut m, off[k + 1], off[k + 1], &q, 1.0);
        let mut grp = vec![usize::MAX; rows];
        for (j, g) in groups.iter().enumerate() {
            for &r in g {
                grp[r] = j;
            }
        }
        let (s, pm) = (f(&mu.s[k]), f(&mu.p[k]));
        // A = E_g S^T, B = E_g P^T: row r is row group(r) of S^T / P^T (exact selections).
        let a = Mat::from_fn(rows, cols, |r, c| if grp[r] == usize::MAX { 0.0 } else { s[(c, grp[r])] });
        let bb = Mat::from_fn(rows, rows, |r, c| if grp[r] == usize::MAX { 0.0 } else { pm[(c, grp[r])] });
        let wta = matmul_new(w.transpose(), a.as_ref());
        let wtb = matmul_new(w.transpose(), bb.as_ref());
        let kk = Mat::from_fn(cols, cols, |i, j| wta[(i, j)] + wta[(j, i)]);
        add_block(&mut m, off[k], off[k], &kk, sg(-1.0));
        let ll = Mat::from_fn(rows, rows, |i, j| bb[(i, j)] + bb[(j, i)]);
        add_block(&mut m, off[k + 1], off[k + 1], &ll, 1.0);
        // upper block (dz_k, dz_{k+1}) = A^T - W^T B, lower = its transpose.
        let up = Mat::from_fn(cols, rows, |i, j| a[(j, i)] + sg(-1.0) * wtb[(i, j)]);
        add_block(&mut m, off[k], off[k + 1], &up, 1.0);
        let lo = Mat::from_fn(rows, cols, |i, j| up[(j, i)]);
        add_block(&mut m, off[k + 1], off[k], &lo, 1.0);
    }
    let r = f(&chain.final_rows());
    p = p.max(r.nrows() + 8);
    let last = off[nl];
    match norm {
        Norm::L2 => {
            let g = matmul_new(r.transpose(), r.as_ref());
            add_block(&mut m, last, last, &g, sg(-1.0));
        }
        Norm::Linf => {
            let n = r.ncols();
            for i in 0..n {
                m[(last + i, nt - 1)] = r[(0, i)];
                m[(nt - 1, last + i)] = r[(0, i)];
            }
            m[(nt - 1, nt - 1)] = sg(b.rho);
        }
    }
    (m, p)
}

fn evaluate(chain: &Chain, norm: Norm, mu: &FullMult) -> Result<(Mat<f64>, f64, f64)> {
    let (m, p) = build(chain, norm, mu, false);
    let (ma, _) = build(chain, norm, mu, true);
    let margin = rounding_margin(m.as_ref(), ma.as_ref(), p);
    let lam = min_eig(m.as_ref())?;
    Ok((m, lam, margin))
}

/// Checks (and with `repair`, fixes) the full LMI's multipliers; see the module docs.
pub fn certify_full(chain: &Chain, norm: Norm, mut mu: FullMult, repair: bool) -> Result<Certificate> {
    check(chain, norm, &mut mu)?;
    let solver_bound = bound_of(chain, norm, &mu.base);
    let (_, before, _) = evaluate(chain, norm, &mu)?;
    // Upper estimates of ||W_k||_2^2 for the repair's bookkeeping (the final check does not rely on them).
    let mut nw2 = Vec::with_capacity(chain.stages.len());
    for st in &chain.stages {
        let s = st.w.singular_values().map_err(|e| Error::Solver(format!("SVD failed: {e:?}")))?;
        let v = s.first().copied().unwrap_or(0.0);
        nw2.push(v * v * (1.0 + 1e-6) + 1e-300);
    }
    let mut repaired = false;
    if repair {
        let mut slack = 1.0;
        for _ in 0..80 {
            let (m, lam, margin) = evaluate(chain, norm, &mu)?;
            if lam >= margin {
                break;
            }
            repaired = true;
            let delta = slack * (2.0 * margin - lam.min(0.0) + 1e-15 * (1.0 + fro(m.as_ref())));
            let b = &mut mu.base;
            if norm == Norm::Linf {
                b.rho += delta;
            }
            let mut a = delta;
            for k in (0..chain.stages.len()).rev() {
                b.stages[k].t.iter_mut().for_each(|t| *t += a);
                a = delta + a * nw2[k];
            }
            match norm {
                Norm::L2 => b.rho += a,
                Norm::Linf => b.d.iter_mut().for_each(|d| *d += a),
            }
            slack *= 2.0;
            if !slack.is_finite() {
                break;
            }
        }
    }
    let (m, after, margin) = evaluate(chain, norm, &mu)?;
    let bound = bound_of(chain, norm, &mu.base);
    let ok = after >= margin && after.is_finite() && bound.is_finite();
    let lmis = vec![LmiReport {
        name: "full block-tridiagonal NSR LMI".into(),
        size: m.nrows(),
        min_eig_before: before,
        min_eig_after: after,
        margin,
    }];
    let message = if ok {
        if repaired { "certified after repair".into() } else { "certified".into() }
    } else {
        "could not certify: the full LMI is not PSD with margin".into()
    };
    Ok(Certificate { bound, certified: ok, solver_bound, rho: mu.base.rho, lmis, repaired, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lipschitz::StageMult;
    use crate::network::{Layer, Network, Pairing};

    fn net() -> Network {
        let w1 = Mat::from_fn(4, 3, |i, j| ((i * 3 + j) as f64 * 0.7).sin());
        let w2 = Mat::from_fn(2, 4, |i, j| ((i * 4 + j) as f64 * 1.3).cos());
        Network::new(
            vec![Layer::dense(w1, None).unwrap(), Layer::maxmin(Pairing::Adjacent), Layer::dense(w2, None).unwrap()],
            None,
        )
        .unwrap()
    }

    fn zero_mult(chain: &Chain) -> FullMult {
        let st = &chain.stages[0];
        FullMult {
            base: Multipliers { rho: 0.0, d: vec![], stages: vec![StageMult { t: vec![0.0; 2], gamma: vec![0.0; 2], x_next: None }] },
            s: vec![Mat::zeros(st.w.ncols(), 2)],
            p: vec![Mat::zeros(st.w.nrows(), 2)],
        }
    }

    #[test]
    fn repair_from_zero_certifies_and_matches_the_chain_at_s_p_zero() {
        let net = net();
        let chain = Chain::new(&net, None).unwrap();
        let cert = certify_full(&chain, Norm::L2, zero_mult(&chain), true).unwrap();
        assert!(cert.certified && cert.repaired);
        let (lower, _) = crate::lipschitz::lower::lower_bound(&net, Norm::L2, None, 8, 50, 0).unwrap();
        assert!(cert.bound >= lower, "{} < {lower}", cert.bound);
        // unrepaired zero multipliers fail
        assert!(!certify_full(&chain, Norm::L2, zero_mult(&chain), false).unwrap().certified);
        // with S = P = 0 the full matrix is block-diagonal with the chain's LMIs: its lambda_min is theirs.
        let base = Multipliers {
            rho: 2.0,
            d: vec![],
            stages: vec![StageMult { t: vec![0.8, 0.9], gamma: vec![0.1, -0.2], x_next: None }],
        };
        let ch = crate::lipschitz::certify(&chain, Norm::L2, base.clone(), false).unwrap();
        let want = ch.lmis.iter().map(|l| l.min_eig_before).fold(f64::INFINITY, f64::min);
        let full = certify_full(&chain, Norm::L2, FullMult { base, ..zero_mult(&chain) }, false).unwrap();
        assert!((full.lmis[0].min_eig_before - want).abs() < 1e-12, "{} vs {want}", full.lmis[0].min_eig_before);
    }

    #[test]
    fn householder_rejects_nonzero_s() {
        let w1 = Mat::from_fn(2, 2, |i, j| if i == j { 1.0 } else { 0.0 });
        let net = Network::new(
            vec![Layer::dense(w1, None).unwrap(), Layer::Householder { theta: 0.4, pairing: Pairing::Adjacent }],
            None,
        )
        .unwrap();
        let chain = Chain::new(&net, None).unwrap();
        let mu = FullMult {
            base: Multipliers { rho: 1.0, d: vec![], stages: vec![StageMult { t: vec![1.0], gamma: vec![0.0], x_next: None }] },
            s: vec![Mat::from_fn(2, 1, |_, _| 0.5)],
            p: vec![Mat::zeros(2, 1)],
        };
        assert!(certify_full(&chain, Norm::L2, mu, true).is_err());
    }
}
