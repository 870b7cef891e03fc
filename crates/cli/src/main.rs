//! `coffer`: the server (`coffer serve`) and the command-line client of its
//! HTTP API, in the style of `az` and `aws`: noun-verb commands, named
//! profiles, names or ids for every resource, `--output json|table|tsv|yaml`,
//! JMESPath `--query`, lists paged through for you, and errors that say what
//! to do next. This is the binary edge: `anyhow` lives here and nowhere
//! below.
//!
//! Modules: [`client`] (typed HTTP calls with the API's wire types),
//! [`output`] (every format and `--query`), [`resolve`] (names to ids),
//! [`commands`] (one module per resource group), [`profile`] (profiles),
//! [`serve`] (the server), [`recover`] (break-glass, offline), [`files`]
//! (private files).

/// mimalloc instead of glibc's malloc: glibc keeps the megabyte buffers of
/// a busy disk's writes in its arenas after they are freed (its mmap
/// threshold rises to the largest buffer freed), which put the server's
/// peak RSS at ~700 MiB for ~250 MiB of live data (bench/memory.sh);
/// mimalloc gives freed pages back within milliseconds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod commands;
mod files;
mod output;
mod profile;
mod recover;
mod resolve;
mod secrets;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use commands::admin::{AdminCmd, RegionCmd};
use commands::audit::AuditCmd;
use commands::disk::DiskCmd;
use commands::encryption_set::EncryptionSetCmd;
use commands::export::{ExportCmd, ImportCmd};
use commands::iam::{IamCmd, PrincipalCmd, RoleCmd};
use commands::image::ImageCmd;
use commands::job::JobCmd;
use commands::org::{AccountCmd, FolderCmd, TenantCmd};
use commands::remote::RemoteCmd;
use commands::share::{InvitationCmd, ShareCmd};
use commands::snapshot::SnapshotCmd;
use commands::tag::TagCmd;
use commands::token::TokenCmd;
use commands::vault::{KeyCmd, SecretCmd, VaultCmd};
use output::{Format, Output};

/// Coffer: encrypted block storage — disks, snapshots, attachments over NBD.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, propagate_version = true)]
struct Cli {
    /// Profile to use (default: $COFFER_PROFILE or `default`).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Output format.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "COFFER_OUTPUT",
        default_value = "table"
    )]
    output: Format,
    /// A JMESPath expression applied to the result, e.g. `id`,
    /// `encryption.type`, `[].name` or `[?state=='attached'].id`.
    #[arg(long, global = true)]
    query: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Coffer server (API + NBD) on embedded defaults.
    Serve(Box<serve::ServeOptions>),
    /// Save an endpoint and token as a named profile.
    Configure {
        /// API endpoint, e.g. http://127.0.0.1:8787.
        #[arg(long)]
        endpoint: Option<String>,
        /// File holding the token (never pass tokens on the command line).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// Other Coffer deployments to copy snapshots and images to
    /// (`copy --to-remote`): add, list, remove.
    #[command(subcommand)]
    Remote(RemoteCmd),
    /// Print a shell completion script: `source <(coffer completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Show who the current token belongs to: principal, account, tenant
    /// and role assignments.
    Whoami,
    /// Tenants: create, list, show.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Folders of a tenant: create, list, show, delete.
    #[command(subcommand)]
    Folder(FolderCmd),
    /// Accounts: create, list, show, move.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Principals (users and services): create, list, show, delete.
    #[command(subcommand)]
    Principal(PrincipalCmd),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Built-in roles, and role assignments.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Access: explain why a principal may or may not do an action.
    #[command(subcommand)]
    Iam(IamCmd),
    /// The web console: a one-time sign-in link (`coffer console login`).
    #[command(subcommand)]
    Console(commands::console::ConsoleCmd),
    /// Regions and zones.
    #[command(subcommand)]
    Region(RegionCmd),
    /// Disks: create, list, show, resize, attach, detach, delete.
    #[command(subcommand)]
    Disk(DiskCmd),
    /// Snapshots: create, list, show, delete, copy, permission.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Images (a root and data snapshots to launch disks from): create,
    /// list, show, delete, copy, permission.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Exports of your snapshots and images to other deployments: create
    /// (a pull token for `coffer import create` there), list, show, revoke.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Imports of other deployments' exports: create.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Resource shares: snapshots and images shared with accounts,
    /// folders or the tenant (create, list, show, add-resource,
    /// remove-resource, add-principal, remove-principal, delete).
    #[command(subcommand)]
    Share(ShareCmd),
    /// Invitations of your account to other tenants' resource shares:
    /// list, accept, reject.
    #[command(subcommand)]
    Invitation(InvitationCmd),
    /// Background jobs (re-encrypting copies): list, show, wait, cancel.
    #[command(subcommand)]
    Job(JobCmd),
    /// Tags of disks, snapshots and images: add, remove.
    #[command(subcommand)]
    Tag(TagCmd),
    /// Key vaults: create, list, show, update, delete, recover, purge.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Keys in key vaults: create, import, rotate, enable, disable,
    /// delete, recover, purge.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Disk encryption sets: a customer key and the managed identity that
    /// reaches it.
    #[command(subcommand)]
    EncryptionSet(EncryptionSetCmd),
    /// Secrets in key vaults: set, list, show, get, delete, recover, purge.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// The audit log of key use: list, verify.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Deployment administration (deployment admins only).
    #[command(subcommand)]
    Admin(AdminCmd),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(cli.output, cli.query)?;
    let c = match cli.command {
        Command::Serve(args) => return serve::run(*args).await,
        Command::Configure {
            endpoint,
            token_file,
        } => {
            return profile::configure(
                cli.profile.as_deref(),
                endpoint.as_deref(),
                token_file.as_deref(),
            );
        }
        Command::Remote(cmd) => return commands::remote::run(&out, cmd),
        Command::Completion { shell } => {
            // Into a buffer first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "coffer", &mut script);
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(&script);
            return Ok(());
        }
        Command::Admin(AdminCmd::Recover(args)) => return recover::run(args, &out).await,
        ref _client_command => client::Client::new(cli.profile.as_deref())?,
    };
    match cli.command {
        Command::Serve(_)
        | Command::Configure { .. }
        | Command::Remote(_)
        | Command::Completion { .. } => {
            unreachable!("handled above")
        }
        Command::Whoami => commands::iam::whoami(&c, &out).await,
        Command::Tenant(cmd) => commands::org::tenant(&c, &out, cmd).await,
        Command::Folder(cmd) => commands::org::folder(&c, &out, cmd).await,
        Command::Account(cmd) => commands::org::account(&c, &out, cmd).await,
        Command::Principal(cmd) => commands::iam::principal(&c, &out, cmd).await,
        Command::Token(cmd) => commands::token::run(&c, &out, cmd).await,
        Command::Role(cmd) => commands::iam::role(&c, &out, cmd).await,
        Command::Iam(cmd) => commands::iam::iam(&c, &out, cmd).await,
        Command::Console(cmd) => commands::console::run(&c, &out, cmd).await,
        Command::Region(cmd) => commands::admin::region(&c, &out, cmd).await,
        Command::Disk(cmd) => commands::disk::run(&c, &out, cmd).await,
        Command::Snapshot(cmd) => commands::snapshot::run(&c, &out, cmd).await,
        Command::Image(cmd) => commands::image::run(&c, &out, cmd).await,
        Command::Export(cmd) => commands::export::run(&c, &out, cmd).await,
        Command::Import(cmd) => commands::export::run_import(&c, &out, cmd).await,
        Command::Share(cmd) => commands::share::run(&c, &out, cmd).await,
        Command::Invitation(cmd) => commands::share::run_invitation(&c, &out, cmd).await,
        Command::Job(cmd) => commands::job::run(&c, &out, cmd).await,
        Command::Tag(cmd) => commands::tag::run(&c, &out, cmd).await,
        Command::Vault(cmd) => commands::vault::vault(&c, &out, cmd).await,
        Command::Key(cmd) => commands::vault::key(&c, &out, cmd).await,
        Command::Secret(cmd) => commands::vault::secret(&c, &out, cmd).await,
        Command::EncryptionSet(cmd) => commands::encryption_set::run(&c, &out, cmd).await,
        Command::Audit(cmd) => commands::audit::run(&c, &out, cmd).await,
        Command::Admin(cmd) => commands::admin::run(&c, &out, cmd).await,
    }
}

fn main() -> ExitCode {
    // First, while this is the only thread: secrets out of the environment.
    secrets::take_from_env();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if matches!(cli.command, Command::Serve(_)) {
            "info"
        } else {
            "warn"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn copies_to_a_remote_take_their_options_only_with_to_remote() {
        let parse = |args: &str| Cli::try_parse_from(args.split_whitespace());
        for kind in ["snapshot", "image"] {
            let ok = parse(&format!(
                "coffer {kind} copy src --name c --to-remote site-b --source-endpoint https://a.example --export-hours 168"
            ));
            assert!(ok.is_ok(), "{kind}: {:?}", ok.err());
            assert!(parse(&format!("coffer {kind} copy src --name c --to-remote b")).is_ok());
            for bad in [
                "--source-endpoint https://a.example",
                "--export-hours 5",
                "--to-remote b --export-hours 0",
                "--to-remote b --export-hours 169",
            ] {
                let r = parse(&format!("coffer {kind} copy src --name c {bad}"));
                assert!(r.is_err(), "{kind} {bad}");
            }
        }
        assert!(
            parse("coffer remote add b --endpoint https://b --token-file f --ca-file c").is_ok()
        );
        assert!(parse("coffer remote add b --endpoint https://b").is_err());
        assert!(parse("coffer export revoke exp-0123456789abcdef").is_ok());
    }
}
