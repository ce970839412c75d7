//! `clavitor mcp --token-file FILE [--server URL] [--allow-command NAME_OR_PATH]...`: a Model
//! Context Protocol server over stdio (the official Rust SDK, `rmcp`) for AI agents. Its tools
//! let a model use secrets without seeing them:
//!
//! - `list_secrets`: entries and fields in the token's scopes (names, tiers, access mode,
//!   allowed hosts), never a value;
//! - `run_with_secrets`: runs a command the operator allowed (`--allow-command`, matched on the
//!   resolved path; none by default) with `read` fields in its environment, and returns its
//!   exit code and output with every value masked in every form, truncated;
//! - `http_request`: `POST /v1/proxy`, which fills in `{{clavitor://ENTRY/FIELD}}`
//!   placeholders (`use` fields too) on the server, for hosts the owner allowed.
//!
//! No tool returns a value, and none can change the vault. Every error is a tool error whose
//! text says what to do (a revoked token: every tool says so).

use super::ClientOpts;
use super::client::Client;
use super::run::scrubbed_env;
use super::secrets::Resolver;
use crate::mask::Masker;
use crate::vault::reference::SCHEME;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most of each output stream a tool result carries.
const OUTPUT_LIMIT: usize = 16 * 1024;
/// The most of each stream read from a command (masked before it is cut to the limit).
const READ_LIMIT: usize = 1024 * 1024;
const DEFAULT_TIMEOUT: u64 = 60;
const MAX_TIMEOUT: u64 = 600;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// A command `run_with_secrets` may run: a name looked up in PATH, or a path (repeat).
    /// None by default. A shell listed here lets the model run anything with the values,
    /// including sending them elsewhere.
    #[arg(long = "allow-command", value_name = "NAME_OR_PATH")]
    allow_command: Vec<String>,
    #[command(flatten)]
    opts: ClientOpts,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RunParams {
    /// The command: a name (looked up in PATH) or a path. Only commands the operator allowed.
    command: String,
    /// Its arguments.
    #[serde(default)]
    args: Vec<String>,
    /// Environment variables to set, each to a reference: {"API_KEY": "clavitor://ENTRY/FIELD"}.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Seconds before the command is killed (default 60, at most 600).
    timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct HttpParams {
    /// GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    method: String,
    /// https URL (no placeholders in it).
    url: String,
    /// Header values may hold {{clavitor://ENTRY/FIELD}} placeholders.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The body; may hold {{clavitor://ENTRY/FIELD}} placeholders.
    body: Option<String>,
}

#[derive(Clone)]
struct Vault {
    opts: Arc<ClientOpts>,
    allowed: Arc<Vec<PathBuf>>,
}

fn text_result(v: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )])
}

fn error_result(e: &anyhow::Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{e:#}"))])
}

/// Runs blocking client work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("the tool failed: {e}"))?
}

#[tool_router]
impl Vault {
    #[tool(
        description = "List the secrets this agent may use: entries and their fields (name, tier, scope, agent_access, allowed_hosts, and the clavitor:// reference to use). Never returns a value. Fields with agent_access \"use\" can only be sent with http_request to their allowed_hosts; \"read\" fields can also go into run_with_secrets.",
        annotations(read_only_hint = true)
    )]
    async fn list_secrets(&self) -> CallToolResult {
        let opts = self.opts.clone();
        match blocking(move || list(&opts)).await {
            Ok(v) => text_result(&v),
            Err(e) => error_result(&e),
        }
    }

    #[tool(
        description = "Run a command the operator allowed, with secrets in its environment: env maps variable names to clavitor://ENTRY/FIELD references (read fields only). Returns exit code, stdout and stderr with every secret value masked, truncated. You never see the values."
    )]
    async fn run_with_secrets(&self, Parameters(p): Parameters<RunParams>) -> CallToolResult {
        let (opts, allowed) = (self.opts.clone(), self.allowed.clone());
        match blocking(move || run_command(&opts, &allowed, p)).await {
            Ok(v) => text_result(&v),
            Err(e) => error_result(&e),
        }
    }

    #[tool(
        description = "Send an HTTPS request through the vault's proxy. Put {{clavitor://ENTRY/FIELD}} placeholders in header values or the body (never the URL): the vault fills them in server-side, only if the URL's host is in every used field's allowed_hosts, and returns {status, headers, body} with the values masked. Works for use-only fields."
    )]
    async fn http_request(&self, Parameters(p): Parameters<HttpParams>) -> CallToolResult {
        let opts = self.opts.clone();
        match blocking(move || proxy(&opts, p)).await {
            Ok(v) => text_result(&v),
            Err(e) => error_result(&e),
        }
    }
}

#[tool_handler]
impl ServerHandler for Vault {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("clavitor", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Clavitor Vault: use secrets without seeing them. list_secrets shows what you may use (never values). run_with_secrets runs an allowed command with secrets in its environment (output masked). http_request sends an HTTPS request with {{clavitor://ENTRY/FIELD}} placeholders filled in by the vault, only to hosts the owner allowed. No tool returns a secret value or changes the vault.",
            )
    }
}

fn list(opts: &ClientOpts) -> Result<Value> {
    let c = Client::from_opts(opts)?;
    let listing = c.get("/v1/entries")?;
    let entries: Vec<Value> = listing["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let title = e["title"].as_str().unwrap_or_default();
            let fields: Vec<Value> = e["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let name = f["name"].as_str().unwrap_or_default();
                    json!({
                        "name": name,
                        "tier": f["tier"],
                        "scope": f["scope"],
                        "agent_access": f["agent_access"],
                        "allowed_hosts": f["allowed_hosts"],
                        "reference": format!("{SCHEME}{title}/{name}"),
                    })
                })
                .collect();
            json!({"id": e["id"], "title": title, "fields": fields})
        })
        .collect();
    Ok(json!({ "entries": entries }))
}

/// A command name or path as the file it runs (symlinks resolved).
fn resolve_command(c: &str) -> Option<PathBuf> {
    let found = if c.contains('/') {
        Some(PathBuf::from(c))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(c))
                .find(|p| is_executable(p))
        })
    }?;
    std::fs::canonicalize(found)
        .ok()
        .filter(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run_command(opts: &ClientOpts, allowed: &[PathBuf], p: RunParams) -> Result<Value> {
    let client = Client::from_opts(opts)?;
    // The token is checked even when no secret is asked for: a revoked token runs nothing.
    let mut resolver = Resolver::new(&client);
    resolver.listing()?;
    let path = resolve_command(&p.command)
        .filter(|path| allowed.contains(path))
        .ok_or_else(|| {
            anyhow!(
                "command {:?} is not allowed here; the operator allows commands with `clavitor mcp --allow-command NAME_OR_PATH`",
                p.command
            )
        })?;
    let mut values = Vec::new();
    let mut env = Vec::new();
    for (name, reference) in &p.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            bail!("{name:?} is not an environment variable name");
        }
        let got = resolver
            .resolve(reference)
            .with_context(|| format!("env {name}"))?;
        env.push((name.clone(), got.value.to_string()));
        values.push(got.value);
    }
    let timeout = Duration::from_secs(p.timeout_s.unwrap_or(DEFAULT_TIMEOUT).clamp(1, MAX_TIMEOUT));
    let mut cmd = Command::new(&path);
    cmd.args(&p.args)
        .env_clear()
        .envs(scrubbed_env(
            client.token().expose(),
            opts.token_file.as_deref(),
        ))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let capture = |s: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = s {
                let _ = s.take(READ_LIMIT as u64).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = capture(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = capture(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let masker = Masker::new(values.iter().map(|v| v.as_bytes()));
    let shown = |h: std::thread::JoinHandle<Vec<u8>>| {
        let raw = h.join().unwrap_or_default();
        let masked = masker.mask(&raw);
        let cut = masked.len() > OUTPUT_LIMIT;
        let mut text =
            String::from_utf8_lossy(&masked[..masked.len().min(OUTPUT_LIMIT)]).into_owned();
        if cut {
            text.push_str("\n[... truncated]");
        }
        text
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(json!({
        "exit_code": status.code(),
        "signal": status.signal(),
        "timed_out": timed_out,
        "stdout": shown(out),
        "stderr": shown(err),
    }))
}

fn proxy(opts: &ClientOpts, p: HttpParams) -> Result<Value> {
    let c = Client::from_opts(opts)?;
    let body = json!({"method": p.method, "url": p.url, "headers": p.headers, "body": p.body});
    c.call("POST", "/v1/proxy", Some(&body))?
        .context("the server sent an empty answer")
}

pub fn mcp(a: McpArgs) -> Result<()> {
    // Checked before serving, so a misconfigured server says so at once.
    Client::from_opts(&a.opts)?;
    let mut allowed = Vec::new();
    for c in &a.allow_command {
        let p = resolve_command(c).ok_or_else(|| {
            anyhow!("--allow-command {c:?}: no such executable (a name in PATH, or a path)")
        })?;
        allowed.push(p);
    }
    let server = Vault {
        opts: Arc::new(a.opts),
        allowed: Arc::new(allowed),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let running = server
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow!("MCP start-up failed: {e}"))?;
        running
            .waiting()
            .await
            .map_err(|e| anyhow!("MCP server failed: {e}"))?;
        Ok(())
    })
}
