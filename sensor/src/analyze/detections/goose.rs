//! IEC 61850 GOOSE: a new publisher of a known control block, and publications that
//! deviate from their publisher's history (stNum jumps and replays, simulation,
//! confRev changes), all as `goose_anomaly`.

use arrayvec::ArrayVec;

use crate::analyze::bounded::Admitted;
use crate::analyze::*;
use crate::detect::GooseDetail;
use crate::observe::{GooseChange, ShortText};

/// Publishers remembered per control block.
const MAX_PUBLISHERS_PER_BLOCK: usize = 8;

impl Analyzer {
    pub(in crate::analyze) fn goose(
        &mut self,
        ts_ns: u64,
        publisher: Mac,
        vlan: u16,
        gocb_ref: ShortText,
        change: GooseChange,
    ) {
        let before: ArrayVec<Mac, MAX_PUBLISHERS_PER_BLOCK> = match change {
            GooseChange::Published => {
                let learning = self.is_learning(ts_ns);
                let (known, admitted) =
                    self.goose_publishers
                        .entry(gocb_ref, MAX_GOOSE_CONTROL_BLOCKS, |_| false);
                let fresh = known.is_empty();
                if known.contains(&publisher) {
                    return;
                }
                let before = known
                    .iter()
                    .copied()
                    .take(MAX_PUBLISHERS_PER_BLOCK)
                    .collect();
                if known.len() < MAX_PUBLISHERS_PER_BLOCK {
                    known.push(publisher);
                }
                if admitted == Admitted::Evicted {
                    self.state_capped("goose_control_blocks", ts_ns, MAX_GOOSE_CONTROL_BLOCKS);
                }
                // While learning every publisher is learned; after it, the first
                // publisher of a control block never seen is its owner.
                if learning || fresh {
                    return;
                }
                before
            }
            _ => ArrayVec::new(),
        };
        let subject = Subject {
            app_proto: Some(Protocol::Goose),
            ..Subject::device(DeviceKey::Mac(publisher))
        };
        // Formatted only for an alert record, not for a repeat that only counts.
        self.raise_with(
            "goose_anomaly",
            ts_ns,
            subject,
            move || describe(publisher, vlan, &gocb_ref, change, &before),
            Vec::new(),
        );
    }
}

/// The message and context of a `goose_anomaly` alert; `before` lists the control
/// block's earlier publishers (for a new publisher).
fn describe(
    publisher: Mac,
    vlan: u16,
    gocb_ref: &ShortText,
    change: GooseChange,
    before: &[Mac],
) -> (String, Detail) {
    let mac = store::format_mac(&publisher);
    let gocb = gocb_ref.as_str();
    let (message, anomaly, details) = match change {
        GooseChange::Published => {
            let before: Vec<String> = before.iter().map(store::format_mac).collect();
            (
                format!(
                    "{mac} publishes GOOSE {gocb}, which only {} published before",
                    before.join(", "),
                ),
                "new_publisher",
                GooseDetail::NewPublisher { publishers: before },
            )
        }
        GooseChange::StNumJump { from, to } => (
            format!(
                "GOOSE {gocb} from {mac}: stNum jumped from {from} to {to} (state changes \
                 skipped or injected)",
            ),
            "st_num_jump",
            GooseDetail::Change { from, to },
        ),
        GooseChange::Replay {
            last_st_num,
            st_num,
        } => (
            format!(
                "GOOSE {gocb} from {mac}: stNum {st_num} after {last_st_num} (an earlier \
                 publication sent again)",
            ),
            "replay",
            GooseDetail::Replay {
                last_st_num,
                st_num,
            },
        ),
        GooseChange::Simulation => (
            format!(
                "GOOSE {gocb} from {mac} has the simulation flag set (subscribers in \
                 simulation mode act on it)",
            ),
            "simulation",
            GooseDetail::None,
        ),
        GooseChange::ConfRevChange { from, to } => (
            format!("GOOSE {gocb} from {mac}: confRev changed from {from} to {to}"),
            "conf_rev_change",
            GooseDetail::Change { from, to },
        ),
    };
    let context = Detail::Goose {
        gocb_ref: gocb.to_owned(),
        anomaly,
        vlan,
        change: details,
    };
    (message, context)
}
