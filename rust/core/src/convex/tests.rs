use faer::Mat;

use super::ops::Ops;
use super::ustep::{USolve, USolver};
use super::*;

/// Deterministic pseudo-random numbers (no rand dependency).
fn lcg(seed: &mut u64) -> f64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

fn problem(n: usize, d: usize, p: usize, seed: u64) -> (Mat<f64>, Mat<f64>, Vec<f64>) {
    let mut s = seed;
    let x = Mat::from_fn(n, d, |_, j| if j + 1 == d { 1.0 } else { lcg(&mut s) });
    let h = Mat::from_fn(d, p, |_, _| lcg(&mut s));
    let xh = &x * &h;
    let dm = Mat::from_fn(n, p, |i, j| if xh[(i, j)] >= 0.0 { 1.0 } else { 0.0 });
    let y = (0..n).map(|_| lcg(&mut s)).collect();
    (x, dm, y)
}

#[test]
fn usteps_agree() {
    let (x, dm, _) = problem(25, 4, 6, 1);
    let ops = Ops { x: x.as_ref(), dm: dm.clone() };
    let mut s = 7;
    let r = Mat::from_fn(4, 12, |_, _| lcg(&mut s));
    let mut sols = Vec::new();
    for kind in [USolve::Dense, USolve::Woodbury, USolve::Pcg] {
        let us = USolver::new(&ops, 0.7, 1.3, kind, 1e-13).unwrap();
        let mut u = Mat::<f64>::zeros(4, 12);
        us.solve(&ops, r.as_ref(), u.as_mut()).unwrap();
        sols.push(u);
    }
    for k in 1..3 {
        let diff = (&sols[k] - &sols[0]).norm_l2() / sols[0].norm_l2();
        assert!(diff < 1e-9, "u-step {k} differs from dense by {diff}");
    }
}

#[test]
fn large_beta_gives_zero_network() {
    let (x, dm, y) = problem(30, 3, 5, 2);
    // beta above max_i ||(D_i X)^T y|| makes zero optimal.
    let mut bmax: f64 = 0.0;
    for j in 0..5 {
        let mut g = vec![0.0; 3];
        for i in 0..30 {
            for c in 0..3 {
                g[c] += dm[(i, j)] * x[(i, c)] * y[i];
            }
        }
        bmax = bmax.max(g.iter().map(|v| v * v).sum::<f64>().sqrt());
    }
    let res = solve_admm(x.as_ref(), &y, dm.as_ref(), 1.01 * bmax, Loss::Squared, &AdmmSettings::default()).unwrap();
    assert_eq!(res.v.norm_l2(), 0.0);
    assert_eq!(res.w.norm_l2(), 0.0);
    let half_sse: f64 = 0.5 * y.iter().map(|v| v * v).sum::<f64>();
    assert!((res.objective - half_sse).abs() < 1e-12);
}

#[test]
fn admm_converges_and_is_feasible() {
    let (x, dm, y) = problem(30, 4, 8, 3);
    let settings = AdmmSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 50_000, ..AdmmSettings::default() };
    let res = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &settings).unwrap();
    assert_eq!(res.status, "converged");
    let last = res.history.last().unwrap();
    assert!(last.violation < 1e-6, "violation {}", last.violation);
    // Objective is monotone-ish at the end and below the zero network's.
    let half_sse: f64 = 0.5 * y.iter().map(|v| v * v).sum::<f64>();
    assert!(res.objective < half_sse);
    // Same optimum with each u-step.
    for kind in [USolve::Dense, USolve::Woodbury, USolve::Pcg] {
        let s2 = AdmmSettings { u_solver: kind, ..settings.clone() };
        let r2 = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &s2).unwrap();
        assert!((r2.objective - res.objective).abs() < 1e-7 * res.objective, "{kind:?}");
    }
}

#[test]
fn bad_input_is_reported() {
    let (mut x, dm, y) = problem(10, 3, 4, 4);
    let s = AdmmSettings::default();
    assert!(matches!(solve_admm(x.as_ref(), &y, dm.as_ref(), 0.0, Loss::Squared, &s), Err(crate::Error::InvalidInput(_))));
    assert!(matches!(solve_admm(x.as_ref(), &y[..5], dm.as_ref(), 0.1, Loss::Squared, &s), Err(crate::Error::Shape(_))));
    assert!(matches!(solve_admm(x.as_ref(), &y, dm.as_ref(), 0.1, Loss::Hinge, &s), Err(crate::Error::InvalidInput(_))));
    let tiny = AdmmSettings { memory_limit: 10.0, u_solver: USolve::Dense, ..s.clone() };
    assert!(matches!(solve_admm(x.as_ref(), &y, dm.as_ref(), 0.1, Loss::Squared, &tiny), Err(crate::Error::InvalidInput(_))));
    x[(0, 0)] = f64::NAN;
    assert!(matches!(solve_admm(x.as_ref(), &y, dm.as_ref(), 0.1, Loss::Squared, &s), Err(crate::Error::InvalidInput(_))));
}

#[test]
fn proxes_are_minimisers() {
    // prox_t(a) minimises t loss(q) + 0.5 (q - a)^2: check against a fine grid.
    for loss in [Loss::Logistic, Loss::Hinge, Loss::Squared] {
        for &t in &[0.01, 1.0, 100.0, 1e4] {
            for &a in &[-50.0, -1.0, 0.0, 0.3, 2.0, 80.0] {
                for &y in &[-1.0, 1.0] {
                    let q = loss.prox_for_tests(a, y, t);
                    let obj = |q: f64| t * loss.value(&[q], &[y]) + 0.5 * (q - a) * (q - a);
                    for k in -200..=200 {
                        let z = q + k as f64 * 1e-3 * (1.0 + t.min(10.0));
                        assert!(obj(q) <= obj(z) + 1e-9 * (1.0 + obj(q).abs()), "{loss:?} t={t} a={a} y={y}");
                    }
                }
            }
        }
    }
}

/// The SCP solution satisfies the optimality conditions of min 0.5||A a - y||^2 + beta ||a||_1:
/// g = A^T (A a - y) has g_j = -beta sign(a_j) where a_j != 0 and |g_j| <= beta elsewhere.
#[test]
fn scp_satisfies_lasso_optimality() {
    for (n, nn) in [(30, 12), (12, 30)] {
        // both factorisations: N <= n (direct) and N > n (Woodbury)
        let (x, _, y) = problem(n, 4, 1, 5 + n as u64);
        let mut s = 11;
        let h = Mat::from_fn(4, nn, |_, _| lcg(&mut s));
        let prob = ScpProblem::new(x.as_ref(), h.as_ref()).unwrap();
        let beta = 0.05;
        let settings = ScpSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 100_000, ..ScpSettings::default() };
        let res = prob.solve(&y, beta, Loss::Squared, &settings, &mut |_| true).unwrap();
        assert_eq!(res.status, "converged", "n={n}: {} iterations, last {:?}", res.iterations, res.history.last());
        let a = prob.features();
        let mut resid = vec![0.0; n];
        for i in 0..n {
            resid[i] = (0..nn).map(|j| a[(i, j)] * res.a[j]).sum::<f64>() - y[i];
        }
        let mut nonzero = 0;
        for j in 0..nn {
            let g: f64 = (0..n).map(|i| a[(i, j)] * resid[i]).sum();
            if res.a[j] != 0.0 {
                nonzero += 1;
                assert!((g + beta * res.a[j].signum()).abs() < 1e-6, "n={n} j={j}: g={g} a={}", res.a[j]);
            } else {
                assert!(g.abs() <= beta * (1.0 + 1e-6), "n={n} j={j}: |g|={} > beta", g.abs());
            }
        }
        assert!(nonzero > 0);
        assert!((res.objective - prob.objective(&res.a, &y, beta, Loss::Squared)).abs() < 1e-12);
    }
}

/// A loose-tolerance ADMM run comes back feasible to rounding once projected, and the projection moves the
/// objective by no more than the tolerance suggests.
#[test]
fn projection_makes_loose_runs_feasible() {
    let (x, dm, y) = problem(40, 4, 8, 9);
    let tight = AdmmSettings { eps_abs: 1e-11, eps_rel: 1e-10, max_iter: 100_000, ..AdmmSettings::default() };
    let best = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &tight).unwrap();
    let loose = AdmmSettings { eps_abs: 1e-5, eps_rel: 1e-4, project: false, ..AdmmSettings::default() };
    // (both loose runs converge: only converged runs are projected)
    let raw = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &loose).unwrap();
    let proj = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &AdmmSettings { project: true, ..loose })
        .unwrap();
    assert_eq!((raw.status, proj.status), ("converged", "converged"));
    let raw_viol = raw.history.last().unwrap().violation;
    let viol = proj.history.last().unwrap().violation;
    assert!(raw_viol > 1e-9, "the loose run should be visibly infeasible ({raw_viol})");
    assert!(viol <= 1e-12, "after projection the violation is {viol}");
    // Feasible, so never below the optimum; and close to it.
    assert!(proj.objective >= best.objective * (1.0 - 1e-9));
    assert!((proj.objective - best.objective).abs() <= 1e-3 * best.objective);
}

/// A run stopped by max_iter is returned unprojected (its violation is reported, not hidden).
#[test]
fn early_stopped_runs_are_not_projected() {
    let (x, dm, y) = problem(40, 4, 8, 9);
    let s = AdmmSettings { max_iter: 5, ..AdmmSettings::default() };
    let a = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &s).unwrap();
    let b = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &AdmmSettings { project: false, ..s }).unwrap();
    assert_eq!(a.status, "max_iter");
    assert_eq!((&a.v - &b.v).norm_l2(), 0.0);
    assert_eq!(a.objective, b.objective);
}

/// The robust loss prox minimises t * robust_loss(q, y, eps ||r||_1) + 0.5 (q - a)^2 + 0.5 ||r - b||^2: no random
/// perturbation of (q, r) lowers it.
#[test]
fn robust_proxes_are_minimisers() {
    use super::robust::{robust_loss, robust_prox};
    let mut s = 21;
    for loss in [Loss::Squared, Loss::Hinge, Loss::Logistic] {
        for &t in &[0.05, 1.0, 30.0] {
            for &eps in &[0.0, 0.1, 0.7] {
                for _ in 0..40 {
                    let y = if loss == Loss::Squared { 2.0 * lcg(&mut s) } else if lcg(&mut s) > 0.0 { 1.0 } else { -1.0 };
                    let a = 3.0 * lcg(&mut s);
                    let b: Vec<f64> = (0..3).map(|_| 2.0 * lcg(&mut s)).collect();
                    let mut r = b.clone();
                    let q = robust_prox(loss, a, &mut r, y, t, eps);
                    let obj = |q: f64, r: &[f64]| {
                        let l1: f64 = r.iter().map(|v| v.abs()).sum();
                        t * robust_loss(loss, q, y, eps * l1) + 0.5 * (q - a).powi(2)
                            + 0.5 * r.iter().zip(&b).map(|(u, v)| (u - v).powi(2)).sum::<f64>()
                    };
                    let best = obj(q, &r);
                    for k in 0..200 {
                        let h = if k < 100 { 1e-3 } else { 1e-1 };
                        let dq = h * lcg(&mut s);
                        let rr: Vec<f64> = r.iter().map(|v| v + h * lcg(&mut s)).collect();
                        assert!(best <= obj(q + dq, &rr) + 1e-10 * (1.0 + best.abs()),
                                "{loss:?} t={t} eps={eps} a={a} b={b:?}: {best} > {}", obj(q + dq, &rr));
                    }
                }
            }
        }
    }
}

/// project_l1_cone returns a point of the cone {s >= eps ||t||_1} satisfying the projection's variational
/// inequality (x - p) . (z - p) <= 0 for every z of the cone (checked on random cone points and on p's scalings).
#[test]
fn l1_cone_projection_is_the_projection() {
    use super::robust::project_l1_cone;
    let mut s = 33;
    for &eps in &[0.0, 0.05, 0.5, 3.0] {
        for _ in 0..200 {
            let a: Vec<f64> = (0..7).map(|_| 2.0 * lcg(&mut s)).collect();
            let b: Vec<f64> = (0..3).map(|_| 2.0 * lcg(&mut s)).collect();
            let (mut ps, mut pt) = (a.clone(), b.clone());
            project_l1_cone(&mut ps, &mut pt, eps);
            let l1: f64 = pt.iter().map(|v| v.abs()).sum();
            assert!(ps.iter().all(|&v| v >= eps * l1 - 1e-14), "not in the cone");
            let ip = |zs: &[f64], zt: &[f64]| -> f64 {
                a.iter().zip(&ps).zip(zs).map(|((x, p), z)| (x - p) * (z - p)).sum::<f64>()
                    + b.iter().zip(&pt).zip(zt).map(|((x, p), z)| (x - p) * (z - p)).sum::<f64>()
            };
            let scale = 1.0 + a.iter().chain(&b).map(|v| v * v).sum::<f64>();
            for k in 0..100 {
                let (zs, zt): (Vec<f64>, Vec<f64>) = if k < 2 {
                    let f = if k == 0 { 0.0 } else { 2.0 };
                    (ps.iter().map(|v| f * v).collect(), pt.iter().map(|v| f * v).collect())
                } else {
                    let zt: Vec<f64> = (0..3).map(|_| 2.0 * lcg(&mut s)).collect();
                    let l: f64 = zt.iter().map(|v| v.abs()).sum();
                    ((0..7).map(|_| eps * l + 2.0 * (lcg(&mut s) + 1.0)).collect(), zt)
                };
                assert!(ip(&zs, &zt) <= 1e-10 * scale, "eps={eps}: variational inequality {}", ip(&zs, &zt));
            }
        }
    }
}

/// At eps = 0 the adversarial ADMM solves the standard program: same optimum as the standard ADMM.
#[test]
fn robust_admm_at_zero_eps_is_the_standard_program() {
    let (x, dm, y) = problem(30, 4, 6, 3);
    let settings = AdmmSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 50_000, ..AdmmSettings::default() };
    let std = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared, &settings).unwrap();
    let feat = [true, true, true, false];
    let rob = RobustAdmmProblem::new(x.as_ref(), dm.as_ref(), &feat, 0.0, &settings).unwrap();
    let res = rob.solve(&y, 0.05, Loss::Squared, &settings, &mut |_| true).unwrap();
    assert_eq!(res.status, "converged");
    assert!((res.objective - std.objective).abs() < 1e-7 * std.objective, "{} vs {}", res.objective, std.objective);
}

/// With eps > 0: the converged, projected result satisfies the robust cone constraints to rounding, its
/// objective grows with eps, and the dense and PCG u-steps agree.
#[test]
fn robust_admm_is_feasible_and_monotone() {
    let (x, dm, y) = problem(30, 3, 6, 4);
    let feat = [true, true, false];
    let settings = AdmmSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 100_000, ..AdmmSettings::default() };
    let mut last = 0.0;
    for &eps in &[0.0, 0.02, 0.08] {
        let rob = RobustAdmmProblem::new(x.as_ref(), dm.as_ref(), &feat, eps, &settings).unwrap();
        let res = rob.solve(&y, 0.05, Loss::Squared, &settings, &mut |_| true).unwrap();
        assert_eq!(res.status, "converged", "eps={eps}");
        let viol = res.history.last().unwrap().violation;
        assert!(viol <= 1e-12, "eps={eps}: violation {viol}");
        assert!(res.objective >= last * (1.0 - 1e-9), "eps={eps}: {} < {last}", res.objective);
        last = res.objective;
        if eps == 0.08 {
            let s2 = AdmmSettings { u_solver: USolve::Pcg, ..settings.clone() };
            let r2 = RobustAdmmProblem::new(x.as_ref(), dm.as_ref(), &feat, eps, &s2).unwrap()
                .solve(&y, 0.05, Loss::Squared, &s2, &mut |_| true).unwrap();
            assert!((r2.objective - res.objective).abs() < 1e-7 * res.objective);
            let s3 = AdmmSettings { u_solver: USolve::Woodbury, ..settings.clone() };
            assert!(matches!(RobustAdmmProblem::new(x.as_ref(), dm.as_ref(), &feat, eps, &s3),
                             Err(crate::Error::Unsupported(_))));
        }
    }
}

/// A robust run stopped by max_iter is still projected onto the robust cones (its objective is then a worst case),
/// and the core evaluates the projected point to the objective it reports.
#[test]
fn robust_early_stopped_runs_are_projected() {
    let (x, dm, y) = problem(30, 3, 6, 4);
    let feat = [true, true, false];
    let s = AdmmSettings { max_iter: 40, ..AdmmSettings::default() };
    let rob = RobustAdmmProblem::new(x.as_ref(), dm.as_ref(), &feat, 0.05, &s).unwrap();
    let proj = rob.solve(&y, 0.05, Loss::Squared, &s, &mut |_| true).unwrap();
    let raw = rob.solve(&y, 0.05, Loss::Squared, &AdmmSettings { project: false, ..s.clone() }, &mut |_| true).unwrap();
    assert_eq!((proj.status, raw.status), ("max_iter", "max_iter"));
    let (pv, rv) = (proj.history.last().unwrap().violation, raw.history.last().unwrap().violation);
    assert!(rv > 1e-6, "the early iterate should be visibly infeasible ({rv})");
    assert!(pv <= 1e-12, "after projection the violation is {pv}");
    let mut u = faer::Mat::<f64>::zeros(3, 12);
    u.as_mut().subcols_mut(0, 6).copy_from(&proj.v);
    u.as_mut().subcols_mut(6, 6).copy_from(&proj.w);
    let (obj, viol) = rob.objective(u.as_ref(), &y, 0.05, Loss::Squared);
    assert!((obj - proj.objective).abs() <= 1e-12 * obj && viol == pv);
}

#[test]
fn anderson_solves_a_linear_fixed_point_fast() {
    // x <- M x + b with a symmetric contraction of spectral radius 0.99: the plain iteration needs ~2,700 steps
    // for 1e-12, Anderson with memory 10 on this 6-dimensional problem far fewer.
    let n = 6;
    let eig = [0.99, 0.95, 0.5, -0.9, 0.2, 0.0];
    let b: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let apply = |x: &[f64]| -> Vec<f64> { (0..n).map(|i| eig[i] * x[i] + b[i]).collect() };
    let fixed: Vec<f64> = (0..n).map(|i| b[i] / (1.0 - eig[i])).collect();
    let mut aa = super::admm::Anderson::new(10, n);
    let mut x = vec![0.0; n];
    let mut out = vec![0.0; n];
    let mut steps = 0;
    for k in 0..200 {
        let tx = apply(&x);
        let g: Vec<f64> = tx.iter().zip(&x).map(|(a, b)| a - b).collect();
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() < 1e-10 {
            steps = k;
            break;
        }
        aa.step(&x, &g, &mut out);
        x.copy_from_slice(&out);
    }
    assert!(steps > 0 && steps < 30, "Anderson took {steps} steps");
    for i in 0..n {
        assert!((x[i] - fixed[i]).abs() < 1e-8 * fixed[i].abs().max(1.0));
    }
}

#[test]
fn anderson_admm_same_optimum() {
    // Same optimum and exact feasibility with and without acceleration. Fewer iterations is not asserted: with the
    // core's default rho = 1 on this tiny problem the accelerated squared-loss run needs 5,421 iterations against
    // 4,427 (at the estimator's rho it needs fewer; see tests/test_convex.py and bench/README.md).
    for loss in [Loss::Squared, Loss::Hinge] {
        let (x, dm, mut y) = problem(40, 4, 8, 9);
        if loss == Loss::Hinge {
            y.iter_mut().for_each(|v| *v = if *v > 0.0 { 1.0 } else { -1.0 });
        }
        // Hinge: the estimator's settings for a split-off loss (rho ~ beta, no residual balancing).
        let (rho, adapt_every) = if loss == Loss::Hinge { (0.05, 0) } else { (1.0, 25) };
        let plain = AdmmSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 200_000, rho, adapt_every,
                                   ..AdmmSettings::default() };
        let accel = AdmmSettings { anderson: 10, anderson_safeguard: 2.0, relaxation: 1.0, ..plain.clone() };
        let a = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, loss, &plain).unwrap();
        let b = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, loss, &accel).unwrap();
        assert_eq!(a.status, "converged", "{loss:?} plain");
        assert_eq!(b.status, "converged", "{loss:?} accelerated");
        assert!((a.objective - b.objective).abs() < 1e-6 * a.objective, "{loss:?}: {} vs {}", a.objective, b.objective);
        assert!(b.history.last().unwrap().violation < 1e-12);
        assert!(b.anderson_accepted > 0 && a.anderson_accepted == 0);
    }
}

#[test]
fn usteps_give_x_u() {
    // solve_xu's X U (from the Woodbury and PCG solves' own products) equals X times the returned U.
    let (x, dm, _) = problem(25, 4, 6, 1);
    let ops = Ops { x: x.as_ref(), dm: dm.clone() };
    let mut s = 11;
    let r = Mat::from_fn(4, 12, |_, _| lcg(&mut s));
    for kind in [USolve::Dense, USolve::Woodbury, USolve::Pcg] {
        let us = USolver::new(&ops, 0.7, 1.3, kind, 1e-13).unwrap();
        let mut u = Mat::from_fn(4, 12, |_, _| 0.1 * lcg(&mut s)); // a warm start for the PCG
        let mut xu = Mat::<f64>::zeros(25, 12);
        us.solve_xu(&ops, r.as_ref(), u.as_mut(), Some(xu.as_mut()), None, None).unwrap();
        let direct = &x * &u;
        let diff = (&xu - &direct).norm_l2() / direct.norm_l2();
        assert!(diff < 1e-12, "{kind:?}: X U differs by {diff}");
    }
}

#[test]
fn sparse_checks_give_the_same_iterates() {
    // check_every only thins out the residual/objective evaluations: the iterates, and the records kept, are those of
    // the run that checks every iteration (residual balancing iterations are always checked).
    for (loss, anderson) in [(Loss::Squared, 0), (Loss::Squared, 10), (Loss::Hinge, 10), (Loss::Logistic, 0)] {
        let (x, dm, mut y) = problem(40, 4, 8, 5);
        if loss != Loss::Squared {
            y.iter_mut().for_each(|v| *v = if *v > 0.0 { 1.0 } else { -1.0 });
        }
        let every = AdmmSettings { eps_abs: 1e-14, eps_rel: 1e-14, max_iter: 300, anderson, project: false,
                                   relaxation: if anderson > 0 { 1.0 } else { 1.6 }, ..AdmmSettings::default() };
        let sparse = AdmmSettings { check_every: 7, ..every.clone() };
        let a = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, loss, &every).unwrap();
        let b = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, loss, &sparse).unwrap();
        assert_eq!((a.iterations, b.iterations), (300, 300));
        let dv = (&a.v - &b.v).norm_l2() + (&a.w - &b.w).norm_l2();
        assert!(dv <= 1e-10 * (a.v.norm_l2() + a.w.norm_l2()), "{loss:?} {anderson}: {dv}");
        assert_eq!(a.history.len(), 300);
        assert!(b.history.len() < 70 && b.history.last().unwrap().iter == 300);
        for r in &b.history {
            assert!(r.iter % 7 == 0 || r.iter % 25 == 0 || r.iter == 300, "unexpected record at {}", r.iter);
            let ra = &a.history[r.iter - 1];
            assert!((ra.objective - r.objective).abs() <= 1e-10 * ra.objective.abs());
            assert!((ra.primal_residual - r.primal_residual).abs() <= 1e-10 * ra.primal_residual);
            assert!((ra.dual_residual - r.dual_residual).abs() <= 1e-10 * ra.dual_residual.max(1e-300));
        }
    }
}

#[test]
fn inexact_pcg_reaches_the_same_optimum() {
    // Decreasing PCG tolerances (pcg_decay) and sparse checks: same optimum as exact Woodbury solves, fewer inner
    // iterations than the fixed 1e-10 tolerance.
    let (x, dm, y) = problem(60, 5, 8, 13);
    let base = AdmmSettings { eps_abs: 1e-10, eps_rel: 1e-9, max_iter: 100_000, anderson: 10, anderson_safeguard: 2.0,
                              relaxation: 1.0, ..AdmmSettings::default() };
    let exact = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared,
                           &AdmmSettings { u_solver: USolve::Woodbury, ..base.clone() }).unwrap();
    let fixed = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared,
                           &AdmmSettings { u_solver: USolve::Pcg, check_every: 10, ..base.clone() }).unwrap();
    let inexact = solve_admm(x.as_ref(), &y, dm.as_ref(), 0.05, Loss::Squared,
                             &AdmmSettings { u_solver: USolve::Pcg, check_every: 10, pcg_decay: 1e-2, ..base.clone() })
        .unwrap();
    for r in [&fixed, &inexact] {
        assert_eq!(r.status, "converged");
        assert!((r.objective - exact.objective).abs() < 1e-7 * exact.objective, "{} vs {}", r.objective, exact.objective);
        assert!(r.history.last().unwrap().violation < 1e-12);
    }
    let inner = |r: &AdmmResult| r.history.iter().map(|h| h.inner_iterations).sum::<usize>();
    // 1,300 vs 1,310 ADMM iterations, 26,847 vs 15,239 inner iterations when written.
    assert!(inexact.iterations < fixed.iterations * 11 / 10, "{} vs {}", inexact.iterations, fixed.iterations);
    assert!(inner(&inexact) < inner(&fixed), "{} vs {}", inner(&inexact), inner(&fixed));
}

#[test]
fn pcg_warm_state_gives_the_same_solves() {
    // A sequence of PCG solves reusing M U and X U from the previous one (PcgWarm) matches the dense solves, and its
    // X U stays X times U, past a refresh of the state.
    let (x, dm, _) = problem(25, 4, 6, 1);
    let ops = Ops { x: x.as_ref(), dm: dm.clone() };
    let dense = USolver::new(&ops, 0.7, 1.3, USolve::Dense, 1e-13).unwrap();
    let pcg = USolver::new(&ops, 0.7, 1.3, USolve::Pcg, 1e-13).unwrap();
    let mut warm = super::ustep::PcgWarm::new(4, 12);
    let mut u = Mat::<f64>::zeros(4, 12);
    let mut xu = Mat::<f64>::zeros(25, 12);
    let mut s = 17;
    let mut r = Mat::from_fn(4, 12, |_, _| lcg(&mut s));
    for step in 0..45 {
        // Slowly changing right-hand sides, as in the ADMM.
        r = Mat::from_fn(4, 12, |i, j| r[(i, j)] + 0.05 * lcg(&mut s));
        pcg.solve_xu(&ops, r.as_ref(), u.as_mut(), Some(xu.as_mut()), None, Some(&mut warm)).unwrap();
        let mut ud = Mat::<f64>::zeros(4, 12);
        dense.solve(&ops, r.as_ref(), ud.as_mut()).unwrap();
        let du = (&u - &ud).norm_l2() / ud.norm_l2();
        assert!(du < 1e-9, "step {step}: U differs from dense by {du}");
        let direct = &x * &u;
        let dx = (&xu - &direct).norm_l2() / direct.norm_l2();
        assert!(dx < 1e-11, "step {step}: X U differs by {dx}");
    }
}

#[test]
fn dense_ustep_solves_the_full_system() {
    // The dense u-step factors the dP x dP system of T = V - W (and the d x d one of S = V + W); its solution must
    // satisfy the 2dP x 2dP system M = blkdiag(a (c I + X^T X)) + F^T F [+ Gamma^T Gamma] built here from the
    // definitions (F u = sum_j D_j X (v_j - w_j), Gamma u = D (V - W)_f^T), with and without Gamma; n > dP and
    // n < dP, several row blocks.
    for (n, d, p, gamma) in [(25, 4, 3, None), (3000, 3, 4, None), (25, 4, 6, Some(vec![0usize, 2])), (2500, 3, 4, Some(vec![1]))] {
        let (x, dm, _) = problem(n, d, p, 3);
        let ops = Ops { x: x.as_ref(), dm: dm.clone() };
        let (a, c) = (0.7, 1.3);
        let us = USolver::with_gamma(&ops, a, c, USolve::Dense, 1e-13, gamma.as_deref()).unwrap();
        let mut s = 11;
        let r = Mat::from_fn(d, 2 * p, |_, _| lcg(&mut s));
        let mut u = Mat::<f64>::zeros(d, 2 * p);
        us.solve(&ops, r.as_ref(), u.as_mut()).unwrap();
        let m = 2 * d * p;
        let idx = |j: usize, c: usize| j * d + c;
        let sign = |j: usize| if j < p { 1.0 } else { -1.0 };
        let mut mm = Mat::<f64>::zeros(m, m);
        for k in 0..n {
            // row k of F and of Gamma's rows k (one per coordinate in f)
            let fk: Vec<f64> = (0..m).map(|i| sign(i / d) * dm[(k, (i / d) % p)] * x[(k, i % d)]).collect();
            for i in 0..m {
                for l in 0..m {
                    mm[(i, l)] += fk[i] * fk[l];
                }
            }
            for &fc in gamma.iter().flatten() {
                let gk: Vec<f64> = (0..m).map(|i| if i % d == fc { sign(i / d) * dm[(k, (i / d) % p)] } else { 0.0 }).collect();
                for i in 0..m {
                    for l in 0..m {
                        mm[(i, l)] += gk[i] * gk[l];
                    }
                }
            }
            for j in 0..2 * p {
                for r1 in 0..d {
                    for r2 in 0..d {
                        mm[(idx(j, r1), idx(j, r2))] += a * x[(k, r1)] * x[(k, r2)];
                    }
                }
            }
        }
        for i in 0..m {
            mm[(i, i)] += a * c;
        }
        let uv = Mat::from_fn(m, 1, |i, _| u[(i % d, i / d)]);
        let mu = &mm * &uv;
        let err = (0..m).map(|i| (mu[(i, 0)] - r[(i % d, i / d)]).abs()).fold(0.0, f64::max);
        let scale = (0..m).map(|i| r[(i % d, i / d)].abs()).fold(0.0, f64::max);
        assert!(err < 1e-9 * scale, "n = {n}, gamma = {gamma:?}: residual {err}");
    }
}
