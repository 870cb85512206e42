//! Finds the system DPDK with pkg-config, generates bindings for the part of its API we use,
//! and compiles the C shim that gives DPDK's `static inline` fast-path functions a symbol.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_DPDK: &str = "22.11";
const APT_HINT: &str = "install it with: apt-get install libdpdk-dev dpdk pkg-config clang libclang-dev \
                        (or run dpdk-config/setup.sh as root)";

fn main() {
    println!("cargo:rerun-if-changed=src/sys/wrapper.h");
    println!("cargo:rerun-if-changed=src/sys/shim.h");
    println!("cargo:rerun-if-changed=src/sys/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = match pkg_config::Config::new().atleast_version(MIN_DPDK).probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => panic!("DPDK >= {MIN_DPDK} not found through pkg-config ({e}); {APT_HINT}"),
    };

    // The crate's view of the flags is incomplete: DPDK's cflags carry `-include rte_config.h`
    // and `-march=...`, which both bindgen and the shim must see, so take them verbatim.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("running pkg-config --cflags libdpdk: {e}; {APT_HINT}"));
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let mut shim = cc::Build::new();
    shim.file("src/sys/shim.c").opt_level(3).warnings(true).extra_warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("macvtap_shim");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("src/sys/wrapper.h")
        .clang_args(cflags.iter())
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("shim_.*")
        .allowlist_function("rte_eal_(init|cleanup|process_type|get_configuration|remote_launch|wait_lcore|mp_wait_lcore)")
        .allowlist_function("rte_(lcore_count|get_next_lcore|get_main_lcore|socket_id|lcore_to_socket_id|strerror|version|thread_register|thread_unregister|get_tsc_hz|delay_us_sleep)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count|lookup)")
        .allowlist_function("rte_ring_(create|free)")
        .allowlist_function("rte_dev_(probe|remove)")
        .allowlist_function("rte_eth_(dev_count_avail|dev_get_port_by_name|dev_get_name_by_port|dev_configure|dev_start|dev_stop|dev_close|dev_info_get|rx_queue_setup|tx_queue_setup|link_get_nowait|macaddr_get|stats_get|stats_reset|xstats_get|xstats_get_names|dev_set_mtu|dev_get_mtu|promiscuous_enable|promiscuous_disable|promiscuous_get|dev_default_mac_addr_set|allmulticast_enable|allmulticast_disable|dev_mac_addr_add|dev_mac_addr_remove|dev_is_valid_port|dev_socket_id|dev_callback_register|dev_callback_unregister|dev_adjust_nb_rx_tx_desc|dev_rx_intr_enable|dev_rx_intr_disable|dev_rx_intr_ctl_q_get_fd)")
        .allowlist_function("rte_vhost_(driver_register|driver_unregister|driver_disable_features|driver_callback_register|driver_start|get_ifname|get_vring_num|enqueue_burst|dequeue_burst|get_negotiated_features|enable_guest_notification|get_vhost_vring)")
        .allowlist_type("rte_vhost_vring")
        .allowlist_type("rte_vhost_device_ops")
        .allowlist_var("RTE_VHOST_USER_.*")
        .allowlist_function("rte_telemetry_register_cmd")
        .allowlist_function("rte_tel_data_.*")
        .allowlist_var("RTE_TEL_.*")
        .allowlist_function("rte_eth_bond_(mode_get|primary_get|primary_set|slaves_get|active_slaves_get|8023ad_dedicated_queues_enable|8023ad_slave_info)")
        .allowlist_type("rte_eth_bond_8023ad_slave_info")
        .allowlist_function("rte_flow_(validate|create|destroy|flush)")
        .allowlist_type("rte_flow_.*")
        .allowlist_var("RTE_(MAX_LCORE|MAX_ETHPORTS|PKTMBUF_HEADROOM|MBUF_DEFAULT_BUF_SIZE|ETH_.*|MEMPOOL_CACHE_MAX_SIZE|RING_F_.*|ETHER_.*)")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("RING_F_(SP_ENQ|SC_DEQ|EXACT_SZ)")
        // DPDK marks a few structs both packed and aligned; Rust cannot express that, so they stay opaque.
        .opaque_type("rte_arp_hdr")
        .opaque_type("port_params")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over src/sys/wrapper.h failed: {e}; {APT_HINT}"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");

    // The bonding PMD's own API (members, mode, LACP state) is not in libdpdk's default link
    // line: EAL loads the PMD as a plugin, this links the same library for its functions.
    println!("cargo:rustc-link-lib=dylib=rte_net_bond");

    // Record the DPDK we built against, for `--version` and the start-up banner.
    println!("cargo:rustc-env=MACVTAP_DPDK_VERSION={}", lib.version);
}
