//! Parallel BLAS-1 kernels. Small vectors run serially: rayon's fork/join costs more than the work.

use rayon::prelude::*;

pub(crate) const CHUNK: usize = 1 << 14;

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    if a.len() < 2 * CHUNK {
        return a.iter().zip(b).map(|(x, y)| x * y).sum();
    }
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
        .sum()
}

pub fn norm2(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// y += alpha * x
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    if y.len() < 2 * CHUNK {
        y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += alpha * xi);
        return;
    }
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        yc.iter_mut().zip(xc).for_each(|(yi, xi)| *yi += alpha * xi);
    });
}

/// p = z + beta * p
pub fn xpby(z: &[f64], beta: f64, p: &mut [f64]) {
    if p.len() < 2 * CHUNK {
        p.iter_mut().zip(z).for_each(|(pi, zi)| *pi = zi + beta * *pi);
        return;
    }
    p.par_chunks_mut(CHUNK).zip(z.par_chunks(CHUNK)).for_each(|(pc, zc)| {
        pc.iter_mut().zip(zc).for_each(|(pi, zi)| *pi = zi + beta * *pi);
    });
}

/// x += alpha p; r -= alpha q; returns the new r.r (one fused pass over four vectors).
pub fn cg_update(alpha: f64, p: &[f64], q: &[f64], x: &mut [f64], r: &mut [f64]) -> f64 {
    let kernel = |xc: &mut [f64], rc: &mut [f64], pc: &[f64], qc: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..xc.len() {
            xc[i] += alpha * pc[i];
            let ri = rc[i] - alpha * qc[i];
            rc[i] = ri;
            s += ri * ri;
        }
        s
    };
    if x.len() < 2 * CHUNK {
        return kernel(x, r, p, q);
    }
    x.par_chunks_mut(CHUNK)
        .zip(r.par_chunks_mut(CHUNK))
        .zip(p.par_chunks(CHUNK).zip(q.par_chunks(CHUNK)))
        .map(|((xc, rc), (pc, qc))| kernel(xc, rc, pc, qc))
        .sum()
}

/// r = b - r (turns r = A x into the residual in place)
pub fn residual_in_place(b: &[f64], r: &mut [f64]) {
    if r.len() < 2 * CHUNK {
        r.iter_mut().zip(b).for_each(|(ri, bi)| *ri = bi - *ri);
        return;
    }
    r.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(rc, bc)| {
        rc.iter_mut().zip(bc).for_each(|(ri, bi)| *ri = bi - *ri);
    });
}

/// a[i] = b[i] + s * c[i] over large arrays: the STREAM triad, used to measure memory bandwidth.
/// Returns bytes moved (24 per element).
pub fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) -> usize {
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK)))
        .for_each(|(ac, (bc, cc))| {
            for i in 0..ac.len() {
                ac[i] = bc[i] + s * cc[i];
            }
        });
    24 * a.len()
}

pub fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|v| v.is_finite())
}
