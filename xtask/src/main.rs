//! `cargo xtask …`: project automation (capture generation, benchmarks).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no task yet")
}
