//! Micro-benchmarks of the per-frame decisions, pure Rust (no EAL): the MAC table lookup, a
//! worker's unicast index, and the classification a worker does for each frame, against the number of guests
//! (1, 16, 256, 1024 = MAX_GUESTS).
//!
//! `cargo bench -p macvtap-bench --bench fib` (criterion; reports time per iteration, where
//! one iteration classifies a batch of `BATCH` frames, so per-frame cost = time / BATCH).
//! Machines differ and this one is shared: compare the rows of one run with each other
//! (e.g. 4096 guests vs 1 guest), not with another machine's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use dpdk_macvtap::config::MAX_GUESTS;
use dpdk_macvtap::fib::{GuestId, MacTable, MacTableBuilder};
use dpdk_macvtap::policy::{self, Cast, Egress, Mode, Origin};
use dpdk_macvtap::view::{Unicast, UnicastIndex};
use dpdk_macvtap::wire::MacAddr;

const GUESTS: [usize; 4] = [1, 16, 256, MAX_GUESTS];
/// Frames per iteration: a few bursts' worth, so the loop overhead is amortised.
const BATCH: usize = 256;

fn guest_mac(i: usize) -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn table(n: usize) -> MacTable {
    let mut b = MacTableBuilder::default();
    for i in 0..n {
        // Every fourth guest private, the rest VEPA: the policy branch is not constant.
        let mode = if i % 4 == 3 { Mode::Private } else { Mode::Vepa };
        if let Err(e) = b.add_guest(&format!("vm{i}"), &[guest_mac(i)], mode, 1518) {
            panic!("building a {n}-guest table: {e}");
        }
    }
    b.build(0)
}

/// Destinations spread over every guest (a pseudo-random walk, so no two neighbours in the
/// batch are the same entry), plus 1 in 16 unknown addresses.
fn destinations(n: usize) -> Vec<MacAddr> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BATCH)
        .map(|k| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if k % 16 == 15 {
                MacAddr([0x02, 0xaa, 0, 0, (x >> 8) as u8, x as u8])
            } else {
                guest_mac((x % n as u64) as usize)
            }
        })
        .collect()
}

/// What ingress decides for a unicast frame from the uplink: owner of the destination,
/// origin from the source, then the policy table.
#[inline]
fn classify_ingress(t: &MacTable, dst: &MacAddr, src: &MacAddr) -> Option<GuestId> {
    let g = t.lookup(dst)?;
    let origin = match t.lookup(src) {
        None => Origin::External,
        Some(s) if s == g => Origin::Itself,
        Some(s) => Origin::Sibling(t.guest(s).mode),
    };
    policy::deliver_from_uplink(t.guest(g).mode, origin, Cast::of(dst)).then_some(g)
}

/// What egress decides for a frame from guest `g`: anti-spoofing, then the egress verdict.
#[inline]
fn classify_egress(t: &MacTable, g: GuestId, src: &MacAddr, dst: &MacAddr) -> bool {
    if !t.owns(g, src) {
        return false;
    }
    let cast = Cast::of(dst);
    let sibling = if cast == Cast::Unicast { t.lookup(dst).map(|s| t.guest(s).mode) } else { None };
    policy::egress(t.guest(g).mode, cast, sibling) == Egress::Uplink
}

/// One group timing `lookup` (made from each size's table) over that size's destinations.
fn lookup_group<L: Fn(&MacAddr) -> bool>(c: &mut Criterion, name: &str, make: impl Fn(&MacTable) -> L) {
    let mut grp = c.benchmark_group(name);
    grp.throughput(Throughput::Elements(BATCH as u64));
    for n in GUESTS {
        let t = table(n);
        let lookup = make(&t);
        let dsts = destinations(n);
        grp.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut hits = 0usize;
                for d in &dsts {
                    hits += lookup(black_box(d)) as usize;
                }
                hits
            })
        });
    }
    grp.finish();
}

fn bench_lookup(c: &mut Criterion) {
    lookup_group(c, "mac_table_lookup", |t| {
        let t = t.clone();
        move |d| t.lookup(d).is_some()
    });
}

/// The same destinations through a worker's `UnicastIndex` (what an untagged unicast's first
/// step asks since it replaced the MAC table's lookup there).
fn bench_unicast_index(c: &mut Criterion) {
    lookup_group(c, "unicast_index_lookup", |t| {
        let index = UnicastIndex::new(t, |g| Unicast { guest: g, batch: g.0, max_len: 1518 });
        move |d| index.get(d).is_some()
    });
}

fn bench_ingress(c: &mut Criterion) {
    let mut grp = c.benchmark_group("classify_uplink_to_guest");
    grp.throughput(Throughput::Elements(BATCH as u64));
    let external = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
    for n in GUESTS {
        let t = table(n);
        let dsts = destinations(n);
        // Half the frames from the outside, half reflected from a sibling (hairpin).
        let srcs: Vec<MacAddr> = (0..BATCH).map(|k| if k % 2 == 0 { external } else { guest_mac((k * 7) % n) }).collect();
        grp.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut delivered = 0usize;
                for (d, s) in dsts.iter().zip(&srcs) {
                    delivered += classify_ingress(&t, black_box(d), black_box(s)).is_some() as usize;
                }
                delivered
            })
        });
    }
    grp.finish();
}

fn bench_egress(c: &mut Criterion) {
    let mut grp = c.benchmark_group("classify_guest_to_uplink");
    grp.throughput(Throughput::Elements(BATCH as u64));
    for n in GUESTS {
        let t = table(n);
        let dsts = destinations(n);
        let senders: Vec<(GuestId, MacAddr)> = (0..BATCH)
            .map(|k| {
                let i = (k * 13) % n;
                // 1 in 32 spoofed: claims the next guest's address.
                let src = if k % 32 == 31 { guest_mac((i + 1) % n.max(2)) } else { guest_mac(i) };
                (GuestId(i as u16), src)
            })
            .collect();
        grp.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut up = 0usize;
                for ((g, s), d) in senders.iter().zip(&dsts) {
                    up += classify_egress(&t, *g, black_box(s), black_box(d)) as usize;
                }
                up
            })
        });
    }
    grp.finish();
}

fn bench_flood(c: &mut Criterion) {
    // Broadcast from the uplink: the policy question is asked once per guest.
    let mut grp = c.benchmark_group("broadcast_policy_per_frame");
    for n in GUESTS {
        let t = table(n);
        grp.throughput(Throughput::Elements(n as u64));
        grp.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let src_guest = t.lookup(black_box(&guest_mac(0)));
                let mut k = 0usize;
                for g in t.guests() {
                    let origin = match src_guest {
                        None => Origin::External,
                        Some(s) if s == g.id => Origin::Itself,
                        Some(s) => Origin::Sibling(t.guest(s).mode),
                    };
                    k += policy::deliver_from_uplink(g.mode, origin, Cast::Multicast) as usize;
                }
                k
            })
        });
    }
    grp.finish();
}

fn config() -> Criterion {
    // Short, so `cargo bench` stays a few minutes on a 2-core box; override with
    // criterion's own flags (`-- --measurement-time 10`).
    Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_lookup, bench_unicast_index, bench_ingress, bench_egress, bench_flood
}
criterion_main!(benches);
