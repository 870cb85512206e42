//! The switch's counters in the OpenMetrics text format (`--metrics ADDR`, `GET /metrics`),
//! built on the control thread at each scrape from the same sums as the stats JSON.
//!
//! Names follow Prometheus conventions: the `dpdk_macvtap_` prefix, base units (bytes,
//! seconds), `_total` on counters, and labels for what varies (`guest`, `reason`, `lcore`).
//! Counters are per guest (the switch does not count per queue).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::switch::Switch;
use crate::cli::VERSION;
use crate::stats::{DropReason, PortCounters, Wake};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuestLabel {
    guest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuestReason {
    guest: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LcoreLabel {
    lcore: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LcoreReasonLabel {
    lcore: u32,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
    dpdk: String,
}

type Counters<L> = Family<L, Counter>;
type FloatCounters<L> = Family<L, Counter<f64, std::sync::atomic::AtomicU64>>;
type Gauges<L> = Family<L, Gauge>;

/// One port's counters (a guest's or the uplink's) as metric families, registered once.
struct PortFamilies<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static> {
    rx_packets: Counters<L>,
    rx_bytes: Counters<L>,
    forwarded: Counters<L>,
    copies: Counters<L>,
    tx_packets: Counters<L>,
    tx_bytes: Counters<L>,
    stalls: Counters<L>,
    link_up: Gauges<L>,
}

impl<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static> PortFamilies<L> {
    /// `what`: "guest" or "uplink"; `rx_is`/`tx_is`: what the directions mean for it.
    fn register(r: &mut Registry, what: &str, rx_is: &str, tx_is: &str) -> Self {
        let f = PortFamilies {
            rx_packets: Family::default(),
            rx_bytes: Family::default(),
            forwarded: Family::default(),
            copies: Family::default(),
            tx_packets: Family::default(),
            tx_bytes: Family::default(),
            stalls: Family::default(),
            link_up: Family::default(),
        };
        r.register(format!("{what}_rx_packets"), format!("Frames {rx_is}"), f.rx_packets.clone());
        r.register_with_unit(format!("{what}_rx"), format!("Bytes {rx_is}"), Unit::Bytes, f.rx_bytes.clone());
        r.register(format!("{what}_forwarded"), format!("Frames {rx_is} that went on (not dropped before a copy was made)"), f.forwarded.clone());
        r.register(format!("{what}_copies"), format!("Copies for guests made of frames {rx_is}"), f.copies.clone());
        r.register(format!("{what}_tx_packets"), format!("Frames {tx_is}"), f.tx_packets.clone());
        r.register_with_unit(format!("{what}_tx"), format!("Bytes {tx_is}"), Unit::Bytes, f.tx_bytes.clone());
        r.register(format!("{what}_stalls"), "Passes that left frames waiting because the uplink was full", f.stalls.clone());
        r.register(format!("{what}_link_up"), "1 while the link is up", f.link_up.clone());
        f
    }

    fn set(&self, l: &L, c: &PortCounters, up: bool) {
        self.rx_packets.get_or_create(l).inc_by(c.rx_packets);
        self.rx_bytes.get_or_create(l).inc_by(c.rx_bytes);
        self.forwarded.get_or_create(l).inc_by(c.forwarded);
        self.copies.get_or_create(l).inc_by(c.copies);
        self.tx_packets.get_or_create(l).inc_by(c.tx_packets);
        self.tx_bytes.get_or_create(l).inc_by(c.tx_bytes);
        self.stalls.get_or_create(l).inc_by(c.stalls);
        self.link_up.get_or_create(l).set(i64::from(up));
    }
}

impl Switch {
    /// The metrics document, now.
    pub fn metrics_text(&self) -> String {
        let snap = self.snapshot();
        let mut r = Registry::with_prefix("dpdk_macvtap");
        let dpdk = crate::rte::eal::version();
        // A gauge of 1 rather than an OpenMetrics info metric, whose encoder would name it
        // `..._info_info`: the conventional `dpdk_macvtap_info{version=...}`.
        let info: Gauges<VersionLabels> = Family::default();
        info.get_or_create(&VersionLabels { version: VERSION.to_owned(), dpdk }).set(1);
        r.register("info", "The switch's version and the DPDK it runs on", info);

        let guests = PortFamilies::<GuestLabel>::register(&mut r, "guest", "received from the guest", "delivered to the guest");
        let guest_rx_drops: Counters<GuestReason> = Family::default();
        r.register("guest_rx_drops", "Frames from the guest dropped, by reason", guest_rx_drops.clone());
        let guest_tx_drops: Counters<GuestReason> = Family::default();
        r.register("guest_tx_drops", "Copies for the guest dropped, by reason", guest_tx_drops.clone());
        let guest_local: Counters<GuestLabel> = Family::default();
        r.register("guest_local", "Frames from the guest switched to one sibling inside the host", guest_local.clone());
        let queues: Gauges<GuestLabel> = Family::default();
        r.register("guest_queues", "Queue pairs configured for the guest", queues.clone());
        let active: Gauges<GuestLabel> = Family::default();
        r.register("guest_active_queues", "Queue pairs the connected guest set up", active.clone());
        for g in &snap.guests {
            let l = GuestLabel { guest: g.name.clone() };
            guests.set(&l, &g.counters, g.link_up);
            guest_local.get_or_create(&l).inc_by(g.counters.local);
            for reason in DropReason::ALL {
                let l = GuestReason { guest: g.name.clone(), reason: reason.name() };
                guest_rx_drops.get_or_create(&l).inc_by(g.counters.rx_drops[reason]);
                guest_tx_drops.get_or_create(&l).inc_by(g.counters.tx_drops[reason]);
            }
            if let Some(rg) = self.running.guests.get(g.id) {
                queues.get_or_create(&l).set(i64::from(rg.cfg.queues));
            }
            active.get_or_create(&l).set(i64::from(self.links.active_queues(g.id.index())));
        }

        let uplink = PortFamilies::<PortLabel>::register(&mut r, "uplink", "received from the uplink", "sent out of the uplink");
        let port = &self.running.uplink;
        let port_label = PortLabel { port: port.name().to_owned() };
        uplink.set(&port_label, &snap.uplink, self.uplink_link.link.up);
        let link_changes: Counters<PortLabel> = Family::default();
        r.register("uplink_link_changes", "Times the uplink's link went up or down since start", link_changes.clone());
        link_changes.get_or_create(&port_label).inc_by(self.uplink_link.changes);
        let uplink_rx_drops: Counters<ReasonLabel> = Family::default();
        r.register("uplink_rx_drops", "Frames from the uplink dropped before any copy, by reason", uplink_rx_drops.clone());
        let uplink_tx_drops: Counters<ReasonLabel> = Family::default();
        r.register("uplink_tx_drops", "Frames for the uplink dropped, by reason", uplink_tx_drops.clone());
        for reason in DropReason::ALL {
            let l = ReasonLabel { reason: reason.name() };
            uplink_rx_drops.get_or_create(&l).inc_by(snap.uplink.rx_drops[reason]);
            uplink_tx_drops.get_or_create(&l).inc_by(snap.uplink.tx_drops[reason]);
        }

        let hz = self.eal.tsc_hz().max(1) as f64;
        let busy: FloatCounters<LcoreLabel> = Family::default();
        let idle: FloatCounters<LcoreLabel> = Family::default();
        let sleep: FloatCounters<LcoreLabel> = Family::default();
        let frames: Counters<LcoreLabel> = Family::default();
        r.register_with_unit("lcore_busy", "Time a forwarding lcore spent moving frames", Unit::Seconds, busy.clone());
        r.register_with_unit("lcore_idle", "Time a forwarding lcore spent polling empty queues", Unit::Seconds, idle.clone());
        r.register_with_unit("lcore_sleep", "Time a forwarding lcore slept (idle sleep)", Unit::Seconds, sleep.clone());
        r.register("lcore_frames", "Frames a forwarding lcore moved", frames.clone());
        let blocked: FloatCounters<LcoreLabel> = Family::default();
        r.register_with_unit("lcore_blocked", "Part of lcore_sleep a forwarding lcore spent blocked until an event (--idle-block-after)", Unit::Seconds, blocked.clone());
        let wakes: Counters<LcoreReasonLabel> = Family::default();
        r.register("lcore_wakeups", "Blocks of a forwarding lcore ended, by what ended them", wakes.clone());
        for (w, plan) in snap.workers.iter().zip(&self.asg.workers) {
            let l = LcoreLabel { lcore: plan.lcore };
            busy.get_or_create(&l).inc_by(w.busy_cycles as f64 / hz);
            idle.get_or_create(&l).inc_by(w.idle_cycles as f64 / hz);
            sleep.get_or_create(&l).inc_by(w.sleep_cycles as f64 / hz);
            blocked.get_or_create(&l).inc_by(w.blocked_cycles as f64 / hz);
            frames.get_or_create(&l).inc_by(w.frames);
            for why in Wake::ALL {
                wakes.get_or_create(&LcoreReasonLabel { lcore: plan.lcore, reason: why.name() }).inc_by(w.wakes.get(why));
            }
        }

        self.register_originated(&mut r, &snap);

        let in_use: Gauge = Gauge::default();
        in_use.set(i64::from(self.pool.in_use()));
        r.register("mempool_in_use", "Packet buffers in use (in rings, queues and in flight)", in_use);
        let size: Gauge = Gauge::default();
        size.set(i64::from(self.pool.in_use() + self.pool.available()));
        r.register("mempool_size", "Packet buffers in the pool", size);
        let count: Gauge = Gauge::default();
        count.set(snap.guests.len() as i64);
        r.register("guests", "Guests configured on the running switch", count);

        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }

    /// Frames the switch itself sent on the uplink, and the hairpin self-test's verdict (one
    /// gauge per state, 1 for the current one, as an OpenMetrics state set would be).
    fn register_originated(&self, r: &mut Registry, snap: &crate::stats::StatsSnapshot) {
        let o = &snap.originated;
        for (name, help, n) in [
            ("originated_tx_packets", "Frames the switch itself sent on the uplink (announcements, probes)", o.tx_packets),
            ("originated_dropped", "Frames the switch itself meant to send on the uplink and could not", o.dropped()),
            ("announce_frames", "MAC announcements (RARP) queued for the uplink", o.announces),
            ("hairpin_probe_frames", "Hairpin self-test probes queued for the uplink", o.probes),
        ] {
            let c: Counter = Counter::default();
            c.inc_by(n);
            r.register(name, help, c);
        }
        let hairpin: Gauges<StateLabel> = Family::default();
        r.register("hairpin", "The last VEPA hairpin self-test's verdict: 1 for the current state", hairpin.clone());
        for h in crate::stats::Hairpin::ALL {
            hairpin.get_or_create(&StateLabel { state: h.key() }).set(i64::from(h == snap.hairpin));
        }
    }
}
