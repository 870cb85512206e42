//! `dpdk-macvtap [EAL options] -- --port <PORT> --guests <FILE> [OPTIONS]`

use clap::Parser;

use dpdk_macvtap::args::split_eal_args;
use dpdk_macvtap::{app, cli::Cli};

fn main() {
    let (eal_args, app_args) = split_eal_args(std::env::args().collect());
    let cli = Cli::parse_from(app_args);
    match app::run(cli, eal_args) {
        Ok(report) if report.mempool_in_use_at_exit == report.mempool_in_use_at_start => {}
        Ok(report) => {
            eprintln!("dpdk-macvtap: {} mbufs still in use at exit", report.mempool_in_use_at_exit);
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("dpdk-macvtap: {e:#}");
            std::process::exit(1);
        }
    }
}
