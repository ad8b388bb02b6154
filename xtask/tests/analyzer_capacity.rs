//! `cargo xtask analyzer-capacity` judges whether one analyzer keeps up with four busy
//! workers by running it three ways on the batches four workers sent: handling their
//! merged stream directly, merging their batches on one thread, and as the analyzer
//! thread fed through its channel. The three must raise the same alerts, and the merge
//! must release every observation in packet order (`measure` fails otherwise), or the
//! figures compare different work.

use std::path::PathBuf;

use xtask::analyzer_capacity::measure;
use xtask::gen::{self, MixOptions, Resolution};

#[test]
fn four_workers_batches_raise_the_same_alerts_however_the_analyzer_runs() {
    let dir = std::env::temp_dir().join(format!("xtask-capacity-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let file: PathBuf = dir.join("mix.pcap");
    let options = MixOptions {
        packets: 30_000,
        seed: 3,
        resolution: Resolution::Micro,
    };
    assert!(gen::mix(&options, &file).is_ok(), "generating the mix");

    let capacity = measure(&file, 4, 1);
    let _ = std::fs::remove_dir_all(&dir);
    let capacity = capacity.expect("the three ways of running the analyzer agree");
    assert_eq!(capacity.packets, 30_000);
    assert_eq!(capacity.producers, 4);
    // Every worker sent at least its last batch; the mix's attacks raise alerts.
    assert!(capacity.batches >= 4, "{capacity:?}");
    assert!(capacity.observations > 1000, "{capacity:?}");
    assert!(capacity.alerts > 0, "{capacity:?}");
    assert!(
        capacity.worker_ns > 0.0 && capacity.thread_ns > 0.0 && capacity.merged_ns > 0.0,
        "{capacity:?}"
    );
}
