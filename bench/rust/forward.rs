//! Forward-pass throughput of the core on ACAS Xu- and MNIST-shaped networks (random weights).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faer::Mat;
use nncert_core::{Layer, Network};

fn mlp(widths: &[usize]) -> Network {
    let mut layers = Vec::new();
    let mut seed = 1u64;
    let mut rand = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    for (k, w) in widths.windows(2).enumerate() {
        let weight = Mat::from_fn(w[1], w[0], |_, _| rand() * 0.3);
        layers.push(Layer::dense(weight, Some((0..w[1]).map(|_| rand() * 0.1).collect())).unwrap());
        if k + 2 < widths.len() {
            layers.push(Layer::ReLU);
        }
    }
    Network::new(layers, None).unwrap()
}

fn bench_forward(c: &mut Criterion) {
    let batch = 100_000;
    for (name, widths) in [
        ("acasxu_5x50x6", vec![5, 50, 50, 50, 50, 50, 50, 5]),
        ("mnist_256x6", vec![784, 256, 256, 256, 256, 256, 256, 10]),
    ] {
        let net = mlp(&widths);
        let x = Mat::<f32>::from_fn(batch, widths[0], |i, j| ((i * 31 + j * 17) % 97) as f32 / 97.0);
        let mut group = c.benchmark_group("forward");
        group.throughput(Throughput::Elements(batch as u64));
        group.sample_size(10);
        group.bench_function(format!("{name}_f32_100k"), |b| b.iter(|| net.forward(x.as_ref()).unwrap()));
        group.finish();
    }
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
