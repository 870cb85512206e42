//! `dpdk-macvtapctl`: the control client of a running dpdk-macvtap switch, like `ovs-appctl`
//! or `vppctl`.
//!
//! Role: parse the command line (`args`), turn it into one JSON-RPC request (`request`),
//! exchange it over the switch's UNIX control socket (`rpc`), and print the result as text
//! (`show`) or, with `--json`, as pretty JSON in the server's key order (`ordered`). `top`
//! and `events` are the exceptions: `top` samples `stats` every interval and shows rates,
//! `events` subscribes to the event stream and prints it (`events`).
//! Protocol: the server's side, `src/control/socket/` (framing, limits, error codes) and
//! `src/app/requests.rs` (the methods); for users, README's "Changing a running switch".
//!
//! It deliberately uses nothing from the switch's library: it must run (and be built into
//! scripts) without DPDK, EAL or hugepages, and talks to the switch only through the socket.
//!
//! Exit status: 0 success; 1 the switch returned an error, or the exchange failed after
//! connecting; 2 bad usage or the socket could not be connected.

mod args;
mod hairpin;
mod events;
mod ordered;
mod request;
mod rpc;
mod show;
mod top;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use request::BuildError;

/// One request per connection, so any fixed id identifies the reply.
const REQUEST_ID: u64 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Top(args) = &cli.command {
        return top::run(&cli, args);
    }
    if let Command::Events = &cli.command {
        return events::run(&cli);
    }
    let request = match request::build(&cli.command) {
        Ok(r) => r,
        Err(BuildError::Usage { command, message }) => usage_error(command, message),
        Err(BuildError::Local(m)) => return fail(1, &m),
    };
    let path = cli.control_path();
    let timeout = Duration::from_secs(cli.timeout);
    let mut reply = match rpc::call(&path, &request.method, request.params.as_ref(), REQUEST_ID, timeout) {
        Ok(r) => r,
        Err(e) => return fail(e.exit_code(), &e.to_string()),
    };
    if matches!(cli.command, Command::HairpinCheck) {
        // The switch answers at once that the check started; its verdict follows.
        reply = match hairpin::wait_verdict(&path, reply, timeout) {
            Ok(r) => r,
            Err(e) => return fail(e.exit_code(), &e.to_string()),
        };
    }
    // `call` is the raw escape hatch: its result has no known shape, so it is always JSON.
    let text = if cli.json || matches!(cli.command, Command::Call { .. }) {
        ordered::pretty_result(&reply.line).unwrap_or_else(|| show::json(&reply.result))
    } else {
        show::human(&request.method, &reply.result)
    };
    let code = print(&text);
    // A reload that applied but could not bring back a guest it re-created says so in
    // `failed`: that is a failure for whoever asked.
    match reply.result.get("failed").and_then(|f| f.as_array()) {
        Some(failed) if !failed.is_empty() => {
            for f in failed {
                eprintln!("dpdk-macvtapctl: {}", f.as_str().unwrap_or_default());
            }
            ExitCode::from(1)
        }
        _ => code,
    }
}

/// Reported like clap's own usage errors (same format and usage line, exit status 2).
fn usage_error(command: &str, message: String) -> ! {
    let kind = clap::error::ErrorKind::ValueValidation;
    let mut cli = Cli::command();
    // Building fills in the subcommands' full names for their usage lines.
    cli.build();
    let err = match cli.find_subcommand_mut(command) {
        Some(sub) => sub.error(kind, message),
        None => cli.error(kind, message),
    };
    err.exit()
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("dpdk-macvtapctl: {message}");
    ExitCode::from(code)
}

/// Writes the output without `println!`, which panics when stdout is a closed pipe
/// (`dpdk-macvtapctl stats | head -1`). A reader that stopped early is not a failure.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(1, &format!("cannot write the output: {e}")),
    }
}
