//! The report sections on what more guests cost: several guests sending or receiving at once
//! beside testpmd io-fwd with as many port pairs (control thread apart or on the worker's
//! core), the MAC table's size (`scale`), and broadcast per receiving guest.

use std::fmt::Write as _;

use crate::latency::QUIET_OTHERS_PCT;
use crate::model::{Case, Path, System};
use crate::report::{cases, fmt_range, of, opt, pps, ratios, stats};
use crate::{Results, Sample};

/// The dpdk-macvtap variant the sections show: the default one, else the polling one.
fn macvtap(res: &Results) -> System {
    if res.samples.iter().any(|s| s.system == System::Macvtap) {
        System::Macvtap
    } else {
        System::MacvtapNosleep
    }
}

fn fig(res: &Results, c: &Case, sys: System, f: impl Fn(&Sample) -> Option<f64>) -> Option<(f64, f64, f64)> {
    stats(&of(res, c, sys).into_iter().filter_map(f).collect::<Vec<_>>())
}

fn mpps(t: Option<(f64, f64, f64)>) -> String {
    fmt_range(t.map(|(a, b, c)| (a / 1e6, b / 1e6, c / 1e6)), 3)
}

/// Ratios a/b over the pairs of neighbouring runs where neither shared the machine.
fn quiet_ratios(res: &Results, c: &Case, a: System, b: System) -> Vec<f64> {
    let quiet = |s: &Sample| s.switch.others_pct.is_some_and(|p| p < QUIET_OTHERS_PCT);
    of(res, c, a)
        .into_iter()
        .filter(|x| quiet(x))
        .filter_map(|x| of(res, c, b).into_iter().find(|y| y.run == x.run && quiet(y)).map(|y| x.pps / y.pps))
        .collect()
}

pub fn report_section(res: &Results, o: &mut String) {
    let mv = macvtap(res);
    several_guests(res, o, mv);
    table_size(res, o, mv);
    broadcast(res, o, mv);
}

fn several_guests(res: &Results, o: &mut String, mv: System) {
    let cs: Vec<Case> = cases(res)
        .into_iter()
        .filter(|c| matches!(c.path, Path::GuestToUplink | Path::UplinkToGuest | Path::GuestsToUplink(_) | Path::UplinkToGuests(_)))
        .collect();
    if !cs.iter().any(|c| c.path.guests() > 1 || c.shared_core) {
        return;
    }
    let _ = writeln!(o, "## Several guests at once, beside testpmd io-fwd with as many port pairs\n");
    let _ = writeln!(
        o,
        "N guests in one testpmd (core 0) all send (guest -> uplink, each its own MAC as source) or all receive (uplink -> guests: the \
uplink's pcap replays frames to the N MACs in turn, so a 32-frame burst holds 32/N frames per guest). testpmd io-fwd gets N uplink vdevs \
of the same kind, each paired with one guest (a burst of 32 per guest per call). \"control apart\": the switch's main/control thread on \
core 0 with the generator; \"control on worker\": the whole switch process on core 1 (`taskset -c 1`, `--lcores 0@1,1@1`), as a host that \
gives the switch one core runs it; testpmd is placed the same way. Ratio: {mv} / testpmd per pair of neighbouring runs, median (min–max); \
quiet pairs: over the pairs where neither run shared the machine (others < {QUIET_OTHERS_PCT:.0} % of a core). Worker cycles/frame: the \
worker's own `busy_cycles` / `frames` over the window (`--stats-json`); testpmd: `--record-core-cycles` at exit. Frames per copy call: \
`enqueue_frames` / `enqueue_calls` of the worker over the window (each call copies into one guest's virtqueue).\n"
    );
    let _ = writeln!(o, "| path | frame | control thread | {mv} Mpps | testpmd Mpps | ratio median (min–max) | quiet pairs: ratio (n) | worker cycles/frame | testpmd cycles/pkt | frames per copy call |");
    let _ = writeln!(o, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in cs {
        let r = stats(&ratios(res, &c, mv, System::Testpmd, &c).iter().map(|x| x.1).collect::<Vec<_>>());
        let q = quiet_ratios(res, &c, mv, System::Testpmd);
        let _ = writeln!(
            o,
            "| {} | {} B | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            c.path.name(),
            c.size,
            if c.shared_core { "on worker" } else { "apart" },
            mpps(stats(&pps(res, &c, mv))),
            mpps(stats(&pps(res, &c, System::Testpmd))),
            fmt_range(r, 3),
            fmt_range(stats(&q), 3),
            q.len(),
            fmt_range(fig(res, &c, mv, |s| s.switch.own_cycles_per_pkt), 0),
            opt(fig(res, &c, System::Testpmd, |s| s.switch.cycles_per_pkt).map(|x| x.0), 0),
            fmt_range(fig(res, &c, mv, |s| s.switch.frames_per_copy), 1),
        );
    }
    let _ = writeln!(o);
}

fn table_size(res: &Results, o: &mut String, mv: System) {
    let cs: Vec<Case> = cases(res).into_iter().filter(|c| matches!(c.path, Path::Scale { .. })).collect();
    if cs.is_empty() {
        return;
    }
    let own = |c: &Case| fig(res, c, mv, |s| s.switch.own_cycles_per_pkt);
    let base = cs.first().and_then(own).map(|x| x.0);
    // The first row with as many attached guests: the same spread of frames over guests (and
    // so the same frames per copy call), only the table differs.
    let same_spread = |c: &Case| cs.iter().find(|b| b.path.guests() == c.path.guests()).and_then(own).map(|x| x.0);
    let _ = writeln!(o, "## Per-frame cost against configured guests and MACs (uplink -> guest)\n");
    let _ = writeln!(
        o,
        "The switch is configured with G guests (1 guest: 1 MAC; more: the MACs shared evenly, several per guest); the first A are attached \
(virtio-user ports of one testpmd on core 0: {} is DPDK's port limit per process, and a second receiving process on the same core \
would stall while descheduled); the uplink's pcap sends to the attached guests' MACs, MAC k of every attached guest before MAC k+1 of \
any (at most 1024 frames in the file). {mv} only (io-fwd has no MAC table). Worker cycles/frame: `busy_cycles` / `frames` over the \
window, median (min–max); \"vs 1st\": the median against the first row's; \"vs same attached\": against the first row with as many attached \
guests (the same spread of frames, so the same frames per copy call: only the table differs). Goal: within 5 % from 1 guest to the most MACs.\n",
        crate::guest::PORTS_PER_PROCESS
    );
    let _ = writeln!(o, "| configured guests | MACs | attached | Mpps | worker cycles/frame | vs 1st | vs same attached | frames per copy call | busy % |");
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &cs {
        let Path::Scale { configured, macs, connected } = c.path else { continue };
        let cyc = own(&c);
        let _ = writeln!(
            o,
            "| {configured} | {macs} | {connected} | {} | {} | {} | {} | {} | {} |",
            mpps(stats(&pps(res, &c, mv))),
            fmt_range(cyc, 0),
            opt(cyc.zip(base).map(|(x, b)| x.0 / b), 3),
            opt(cyc.zip(same_spread(&c)).map(|(x, b)| x.0 / b), 3),
            fmt_range(fig(res, &c, mv, |s| s.switch.frames_per_copy), 1),
            opt(fig(res, &c, mv, |s| s.switch.busy_pct).map(|x| x.0), 0),
        );
    }
    let _ = writeln!(o);
}

fn broadcast(res: &Results, o: &mut String, mv: System) {
    let cs: Vec<Case> = cases(res).into_iter().filter(|c| matches!(c.path, Path::Fanout(_))).collect();
    if cs.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Broadcast per receiving guest\n");
    let _ = writeln!(
        o,
        "The uplink replays broadcasts; N attached guests receive each ({} per testpmd process, all on core 0). Delivered: frames received \
by all guests together per second; per guest: that / N. Worker cycles per uplink frame: `busy_cycles` / `frames` (frames the worker \
received). {mv}, median (min–max).\n",
        crate::guest::PORTS_PER_PROCESS
    );
    let _ = writeln!(o, "| guests | frame | delivered Mpps | per receiving guest Mpps | worker cycles per uplink frame | frames per copy call | guest processes |");
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|");
    for c in cs {
        let n = c.path.guests();
        let v = pps(res, &c, mv);
        let per: Vec<f64> = v.iter().map(|x| x / n as f64).collect();
        let _ = writeln!(
            o,
            "| {n} | {} B | {} | {} | {} | {} | {} |",
            c.size,
            mpps(stats(&v)),
            mpps(stats(&per)),
            fmt_range(fig(res, &c, mv, |s| s.switch.own_cycles_per_pkt), 0),
            fmt_range(fig(res, &c, mv, |s| s.switch.frames_per_copy), 1),
            n.div_ceil(crate::guest::PORTS_PER_PROCESS),
        );
    }
    let _ = writeln!(o);
}
