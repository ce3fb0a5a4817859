//! `sealdesk`: the one executable. Each subcommand wires library crates together;
//! the logic lives in those crates.

#![allow(
    clippy::print_stdout,
    reason = "a command-line program reports to its user on stdout"
)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod audit;
mod bench;
mod bench_browser;
mod bench_peer;
mod bench_relay;
mod bench_session;
mod clip;
mod connect_cmd;
mod demo;
mod devices;
mod host_cmd;
mod pair;
mod qr;
mod recordings;
mod scene;
mod server_cmd;
mod stamp;
mod text;
mod view;
mod web;
mod xwin;

/// sealdesk — an end-to-end encrypted remote desktop whose claims can be checked.
#[derive(Debug, Parser)]
#[command(name = "sealdesk", version, about, long_about = None)]
struct Cli {
    /// Data directory (identity key, registry, ...). Default: $XDG_DATA_HOME/sealdesk.
    #[arg(long, global = true, env = "SEALDESK_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `sealdesk_server=trace`.
    #[arg(long, global = true, env = "SEALDESK_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the signaling server.
    Server(server_cmd::ServerArgs),
    /// Share this X display: show a one-time code, ask before anyone gets in.
    Host(host_cmd::HostArgs),
    /// See and control a host, with the code it shows or as a paired device.
    Connect(connect_cmd::ConnectArgs),
    /// Run everything locally at once: an embedded server, a virtual display, a host
    /// sharing it and a viewer connected with a one-time code.
    Demo(demo::DemoArgs),
    /// Check a deployment live: can the server or relay read a session? (five questions,
    /// PASS/FAIL with evidence; see SECURITY.md)
    Audit(audit::AuditArgs),
    /// Measure performance (prints figures; see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show this device's identity (creating it on first use).
    Identity,
    /// Pair two devices with a one-time code, so they remember each other.
    #[command(subcommand)]
    Pair(pair::PairCommand),
    /// List and change the devices this one trusts; compare safety numbers.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// End-to-end encrypted session recordings: make your key, verify, export.
    #[command(subcommand)]
    Recordings(recordings::RecordingsCommand),
}

/// The command line, with `--version` naming any insecure test-only feature compiled in.
fn parse_cli() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let insecure = insecure_features();
    let mut version = env!("CARGO_PKG_VERSION").to_owned();
    if !insecure.is_empty() {
        version.push_str(&format!(" (INSECURE TEST BUILD: {})", insecure.join(", ")));
    }
    // Users compare this with what another build (or the published one) serves.
    version.push_str(&format!(
        "\nbrowser viewer bundle sha256:{}",
        web::bundle_hash()
    ));
    let matches = Cli::command().version(&*version.leak()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> anyhow::Result<()> {
    let cli = parse_cli();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("invalid --log filter {:?}", cli.log))?;
    // The STUN/TURN crates log every call at INFO and the expected 401 challenge of each
    // TURN allocation at ERROR; neither is news. Name one of them in --log to see it.
    for (krate, level) in [
        ("stun_proto", "off"),
        ("turn_client_proto", "warn"),
        ("turn_server_proto", "warn"),
        ("turn_types", "warn"),
    ] {
        if !cli.log.contains(krate) {
            let directive = format!("{krate}={level}")
                .parse()
                .context("log directive")?;
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(args, cli.data_dir).await,
            Command::Host(args) => host_cmd::run(args, cli.data_dir.as_deref()).await,
            Command::Connect(args) => connect_cmd::run(args, cli.data_dir.as_deref()).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Identity => identity(cli.data_dir),
            Command::Pair(cmd) => pair::run(cmd, cli.data_dir.as_deref()).await,
            Command::Devices(cmd) => devices::run(cmd, cli.data_dir.as_deref()),
            Command::Recordings(cmd) => recordings::run(cmd, cli.data_dir.as_deref()).await,
        }
    });
    // Reading standard input blocks a runtime thread that cannot be cancelled: waiting for
    // it (as dropping the runtime would) hangs until the user presses Enter. Everything that
    // matters has finished by now.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn identity(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = sealdesk_client::store::resolve_data_dir(data_dir.as_deref())?;
    let (key, created) = sealdesk_client::store::load_or_create_identity(&dir)?;
    if created {
        println!("created a new identity key in {}", dir.display());
    }
    println!("device fingerprint: {}", key.fingerprint());
    Ok(())
}

/// The insecure, test-only features compiled into this build, from every crate that has
/// one (each refuses to compile without debug assertions, so a release build has none).
pub(crate) fn insecure_features() -> Vec<&'static str> {
    sealdesk_rtc::INSECURE_FEATURES
        .iter()
        .chain(sealdesk_client::INSECURE_FEATURES)
        .copied()
        .collect()
}

/// Raises the open-file limit as far as allowed (many connections need many fds).
pub(crate) fn raise_fd_limit() -> u64 {
    use rlimit::Resource;
    let want = 1 << 20;
    if rlimit::setrlimit(Resource::NOFILE, want, want).is_ok() {
        return want;
    }
    rlimit::increase_nofile_limit(want).unwrap_or(1024)
}
