//! The command line: clap types here, one module per group of subcommands. This is the
//! binary's edge, so errors are `anyhow` and become exit code 1 (clap's usage errors are 2).

mod audit;
mod client;
mod commands;
mod completions;
mod endpoint;
mod export;
mod grants;
mod group;
mod http;
mod import;
mod inject;
mod login;
mod man;
mod mcp;
mod output;
mod owner;
#[cfg(test)]
mod proptests;
mod run;
mod secrets;
mod serve;
mod user;

use crate::edition;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "clavitor", version = edition::VERSION_LINE, about = "Clavitor Vault: credentials for teams and their AI agents")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new vault: data dir, master key, database; prints the owner token once.
    Init(serve::InitArgs),
    /// Run the vault server (initialises an empty data dir first).
    Serve(serve::ServeArgs),
    /// Add, show, list and remove entries.
    #[command(subcommand)]
    Entry(commands::EntryCmd),
    /// Create, list and revoke agents (the owner and users; within the creator's scopes).
    #[command(subcommand)]
    Agent(commands::AgentCmd),
    /// Add, list, deactivate and reactivate users (the owner and admins).
    #[command(subcommand)]
    User(user::UserCmd),
    /// Add, list and change groups, add and remove their members (the owner and admins).
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Make a token you were given (--token-file FILE) the CLI's default, or redeem an
    /// invite (--invite CODE): make your own token and store it.
    Login(login::LoginArgs),
    /// Pending grants: memberships waiting for a holder of their keys; list and confirm.
    #[command(subcommand)]
    Grants(grants::GrantsCmd),
    /// Your own token: rotate.
    #[command(subcommand)]
    Token(owner::TokenCmd),
    /// Owner token management: rotate.
    #[command(subcommand)]
    Owner(owner::OwnerCmd),
    /// The audit trail: list it (--follow), print its signed head, verify it offline.
    Audit(audit::AuditArgs),
    /// Print one field's value: clavitor read clavitor://ENTRY/FIELD
    Read(commands::ReadArgs),
    /// Run a command with secrets from the vault in its environment, masked in its output.
    Run(run::RunArgs),
    /// Serve the Model Context Protocol over stdio for AI agents (tools that use secrets
    /// without returning them).
    Mcp(mcp::McpArgs),
    /// Fill {{ clavitor://ENTRY/FIELD }} placeholders of a template into a private file.
    Inject(inject::InjectArgs),
    /// Import another password manager's export (or a `clavitor export`) in one transaction.
    Import(import::ImportArgs),
    /// Write every entry and value to a file, encrypted with a passphrase by default.
    Export(export::ExportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page clavitor(1) in roff, or write a page per command.
    Man(man::ManArgs),
    #[command(flatten)]
    Edition(edition::Commands),
}

/// Where a client command finds its server and token, and how it may reach it.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Server URL: http:// or https://, with an optional path prefix (https://host/vault).
    #[arg(
        long,
        global = true,
        env = "CLAVITOR_SERVER",
        default_value = "http://127.0.0.1:7441"
    )]
    pub(crate) server: String,
    /// File holding the bearer token (must be mode 0600). Default: CLAVITOR_TOKEN, else
    /// $XDG_CONFIG_HOME/clavitor/token (else ~/.config/clavitor/token).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of the CA that signed an https server's certificate (a private CA); only it is
    /// trusted then. Default: the system's trusted CAs.
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Send the token over plain http to a non-loopback address, readable by anyone on the
    /// network path. Without it such a server URL is refused before connecting.
    #[arg(long, global = true)]
    allow_insecure_http: bool,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => serve::init(a),
        Command::Serve(a) => serve::serve(a),
        Command::Entry(c) => commands::entry(c),
        Command::Agent(c) => commands::agent(c),
        Command::User(c) => user::user(c),
        Command::Group(c) => group::group(c),
        Command::Login(a) => login::login(a),
        Command::Grants(c) => grants::grants(c),
        Command::Token(c) => owner::token(c),
        Command::Owner(c) => owner::owner(c),
        Command::Read(a) => commands::read(a),
        Command::Run(a) => return run::run(a),
        Command::Audit(a) => match audit::audit(a) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Inject(a) => inject::inject(a),
        Command::Mcp(a) => mcp::mcp(a),
        Command::Import(a) => import::import(a),
        Command::Export(a) => export::export(a),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => man::man(a),
        Command::Edition(c) => edition::run_command(c).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
