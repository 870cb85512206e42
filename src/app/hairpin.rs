//! The VEPA hairpin self-test: does the external switch send frames back out of the port
//! they came in on? VEPA guests reach each other only if it does, and nothing else tells.
//!
//! A check sends a probe pair (`wire::probe`) from the switch's two probe MACs, in order on
//! one worker: P1 -> P2 (the external switch learns P1 on our port), then P2 -> P1 (which
//! comes back to our port only if the external switch reflects). A worker that receives the
//! second one notes its nonce (`datapath::ProbeSeen`); the control loop's tick gives the
//! verdict when the nonce is seen, or "does not reflect" at the deadline. Nothing blocks.
//!
//! At start-up (unless `--no-hairpin-check`) the first check waits for the uplink's link,
//! for at most `LINK_WAIT`; `dpdk-macvtapctl hairpin-check` starts one at any time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::originate::Kind;
use super::switch::Switch;
use crate::datapath::ProbeSeen;
use crate::stats::Hairpin;
use crate::wire::probe::{probe_macs, write_probe, ProbeKind, PROBE_LEN};
use crate::wire::MacAddr;

/// How long a reflected probe may take to come back: a switch that reflects does so within
/// microseconds; the rest is the control loop's tick and a sleeping worker.
pub const HAIRPIN_DEADLINE: Duration = Duration::from_secs(1);
/// How long the start-up check waits for the uplink's link before probing anyway.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// A check whose probes are out.
#[derive(Clone, Copy, Debug)]
struct UnderWay {
    nonce: u64,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Startup {
    /// No start-up check (`--no-hairpin-check`), or it has started.
    Done,
    /// Waiting for the uplink's link since then.
    AwaitingLink(Instant),
}

pub(super) struct HairpinCheck {
    verdict: Hairpin,
    under_way: Option<UnderWay>,
    startup: Startup,
    seen: Arc<ProbeSeen>,
    /// Makes each check's nonce distinct.
    checks: u64,
    /// The probe MACs of the last check.
    macs: Option<(MacAddr, MacAddr)>,
}

impl HairpinCheck {
    pub fn new(seen: Arc<ProbeSeen>, at_startup: bool) -> HairpinCheck {
        let startup = if at_startup { Startup::AwaitingLink(Instant::now()) } else { Startup::Done };
        HairpinCheck { verdict: Hairpin::Unknown, under_way: None, startup, seen, checks: 0, macs: None }
    }

    pub fn verdict(&self) -> Hairpin {
        self.verdict
    }

    /// A nonce no earlier check of this process used and unlikely to match another run's
    /// (a stale probe of a previous run must not count): the clock, the pid, a counter.
    fn next_nonce(&mut self) -> u64 {
        self.checks += 1;
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let n = t ^ (u64::from(std::process::id()) << 40) ^ self.checks.rotate_right(8);
        n.max(1)
    }
}

impl Switch {
    /// Starts a hairpin check now (a check under way is replaced; its verdict would be
    /// the same). The verdict follows within `HAIRPIN_DEADLINE`, from `hairpin_tick`.
    pub fn hairpin_check(&mut self) -> Value {
        let uplink = self.running.uplink.mac().map(MacAddr::new).unwrap_or_default();
        let fib = &self.tables.fib;
        let (p1, p2) = probe_macs(uplink, |m| fib.lookup(m).is_some());
        if let Err(why) = self.running.steering.admit_own(&self.running.uplink, p1) {
            println!("hairpin: warning: the uplink may filter the probe that comes back: {why}");
        }
        let nonce = self.hairpin.next_nonce();
        let mut learn = [0u8; PROBE_LEN];
        let mut reflect = [0u8; PROBE_LEN];
        write_probe(&mut learn, p2, p1, ProbeKind::Learn, nonce);
        write_probe(&mut reflect, p1, p2, ProbeKind::Reflect, nonce);
        // Both on one worker, in order: the external switch must learn P1 before frame 2.
        let queued = self.running.origin.send(Kind::Probe, &[learn, reflect], true);
        self.hairpin.macs = Some((p1, p2));
        self.hairpin.startup = Startup::Done;
        if queued < 2 {
            self.hairpin.under_way = None;
            self.hairpin.verdict = Hairpin::Unknown;
            println!("hairpin: unknown (the probes could not be queued for the uplink)");
        } else {
            self.hairpin.under_way = Some(UnderWay { nonce, deadline: Instant::now() + HAIRPIN_DEADLINE });
        }
        self.hairpin_json()
    }

    /// The start-up check once the link is up, and the verdict of a check under way.
    pub(super) fn hairpin_tick(&mut self, now: Instant) {
        if let Startup::AwaitingLink(since) = self.hairpin.startup {
            if self.uplink_link.link.up || now >= since + LINK_WAIT {
                self.hairpin_check();
            }
            return;
        }
        let Some(u) = self.hairpin.under_way else { return };
        let verdict = if self.hairpin.seen.reflected(u.nonce) {
            Hairpin::Reflects
        } else if now >= u.deadline {
            Hairpin::DoesNotReflect
        } else {
            return;
        };
        self.hairpin.under_way = None;
        self.hairpin.verdict = verdict;
        println!("hairpin: {}", verdict.message());
    }

    /// The last verdict, whether a check is under way, and the probe MACs.
    pub(super) fn hairpin_json(&self) -> Value {
        let h = &self.hairpin;
        json!({
            "state": h.verdict.key(),
            "message": h.verdict.message(),
            "checking": h.under_way.is_some() || h.startup != Startup::Done,
            "probe_macs": h.macs.map(|(a, b)| [a.to_string(), b.to_string()]),
        })
    }

    pub(super) fn hairpin_verdict(&self) -> Hairpin {
        self.hairpin.verdict()
    }
}
