// src/cli.rs (included by path) names the DPDK version in its `--version` string, which the
// switch's build.rs takes from pkg-config. The pages do not print it (their version is the
// package's), so a placeholder keeps this tool free of DPDK.
fn main() {
    println!("cargo:rustc-env=MACVTAP_DPDK_VERSION=unknown");
}
