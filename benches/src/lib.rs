//! Benchmarks of otsensor live in `benches/`.
