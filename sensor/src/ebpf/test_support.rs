//! Tests' and benchmarks' access to the pre-filter (feature `test-support`; the sensor
//! itself never needs it): BPF_PROG_TEST_RUN on the pre-filter and on the empty program
//! compiled beside it, and an attachment through netlink that outlives its process,
//! to reproduce a crashed run.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};

use super::{
    if_index, netlink, program_error, AttachedMode, Attachment, AttachmentKind, Error, XdpFilter,
    XdpSettings, EMPTY_PROGRAM_NAME, PROGRAM_NAME,
};

impl XdpFilter {
    /// Attaches in generic mode through netlink instead of a bpf_link: the way kernels
    /// before 5.9 (and tools such as `ip link set ... xdp`) attach, where the program
    /// stays attached after its process dies. Used to reproduce a crashed run's stale
    /// attachment in tests; [`XdpFilter::attach`] is the normal path.
    pub fn attach_legacy_netlink(&mut self, ifname: &str) -> Result<(), Error> {
        let ifindex = if_index(ifname)?;
        let program = self.program_mut(PROGRAM_NAME)?;
        let fd = program
            .fd()
            .map_err(program_error(PROGRAM_NAME))?
            .as_fd()
            .as_raw_fd();
        netlink::set_xdp(ifindex, fd, netlink::rtnl::XDP_FLAGS_SKB_MODE)?;
        self.attachment = Some(Attachment {
            ifname: ifname.to_string(),
            ifindex,
            mode: AttachedMode::Generic,
            fell_back: false,
            link: AttachmentKind::Netlink {
                flags: netlink::rtnl::XDP_FLAGS_SKB_MODE,
            },
        });
        Ok(())
    }

    /// Runs `program` over `frame` `repeat` times with BPF_PROG_TEST_RUN and returns the
    /// kernel's mean time per run and the program's return value.
    pub fn test_run(
        &mut self,
        program: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(Duration, u32), Error> {
        let program = self.program_mut(program)?;
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.repeat = repeat.max(1);
        let result = program
            .test_run(options)
            .map_err(program_error(PROGRAM_NAME))?;
        Ok((result.duration, result.return_value))
    }
}

/// Result of [`bench_pair`]: mean ns per packet of the pre-filter and of the empty
/// program, measured alternately in the same run.
#[derive(Clone, Copy, Debug)]
pub struct BenchResult {
    pub program: Duration,
    pub empty: Duration,
    /// The pre-filter's XDP action for the frame (1 drop, 2 pass, 4 redirect).
    pub action: u32,
}

/// Mean time per packet of the pre-filter on `frame`, measured with BPF_PROG_TEST_RUN
/// (`repeat` runs in the kernel), with default settings and no socket registered.
pub fn bench_prog_test_run(frame: &[u8], repeat: u32) -> Result<Duration, Error> {
    let mut filter = XdpFilter::load(&XdpSettings::default())?;
    Ok(filter.test_run(PROGRAM_NAME, frame, repeat)?.0)
}

/// The pre-filter and the empty program on `frame`, `rounds` alternating rounds of
/// `repeat` runs each; returns the minimum mean of each (the least disturbed round).
pub fn bench_pair(frame: &[u8], repeat: u32, rounds: u32) -> Result<BenchResult, Error> {
    let mut filter = XdpFilter::load(&XdpSettings::default())?;
    let mut program = Duration::MAX;
    let mut empty = Duration::MAX;
    let mut action = 0;
    for _ in 0..rounds.max(1) {
        let (d, a) = filter.test_run(PROGRAM_NAME, frame, repeat)?;
        program = program.min(d);
        action = a;
        empty = empty.min(filter.test_run(EMPTY_PROGRAM_NAME, frame, repeat)?.0);
    }
    Ok(BenchResult {
        program,
        empty,
        action,
    })
}
