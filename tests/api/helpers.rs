//! The one `spawn_app()`: a real server, in this process, on a fresh data dir and port 0.
//!
//! Every test talks to it over real HTTP with `reqwest`. `TestApp::stop` shuts the server
//! down the way SIGTERM would (and waits until the store is closed), so a test can look at
//! or edit the files on disk and then `StoppedApp::start` the same vault again.

use crate::edition::Serving;
use clavitor::server::{ServeConfig, Server};
use clavitor::service::AuditOptions;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for any one request; a hung server fails the test instead of stalling it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for a graceful stop (the server's own drain period is well under this).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestApp {
    pub base: String,
    pub owner_token: String,
    pub client: reqwest::Client,
    dir: TempDir,
    serving: Serving,
    stop: oneshot::Sender<()>,
    running: JoinHandle<Result<(), clavitor::server::Error>>,
}

/// A vault whose server has stopped cleanly: its files are closed and may be read or edited.
pub struct StoppedApp {
    pub owner_token: String,
    dir: TempDir,
    serving: Serving,
}

/// Starts a fresh vault of this build's edition (see `edition.rs`): new temp dir, new
/// database, new owner.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AuditOptions::default()).await
}

/// [`spawn_app`] with the audit trail run as `audit` says (e.g. `--audit-sync`).
pub async fn spawn_app_with(audit: AuditOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("create temp dir");
    let data_dir = dir.path().join("data");
    let serving = Serving::new(dir.path());
    let (app, token) = start_on(dir, serving, data_dir, audit).await;
    let token = token.expect("a fresh data dir creates an owner token");
    TestApp {
        owner_token: token,
        ..app
    }
}

/// The config for a server of this build's edition on `data_dir` in `dir`: the owner token of
/// a new vault goes to `dir/owner.token`, beside the data dir (never into it, never into the
/// real home).
pub fn config(dir: &Path, serving: &Serving, data_dir: PathBuf) -> ServeConfig {
    ServeConfig {
        data_dir,
        listen: "127.0.0.1:0".parse().expect("valid address"),
        edition: serving.flags(),
        owner_token_out: Some(dir.join("owner.token")),
        audit: Default::default(),
    }
}

async fn start_on(
    dir: TempDir,
    serving: Serving,
    data_dir: PathBuf,
    audit: AuditOptions,
) -> (TestApp, Option<String>) {
    let server = Server::build(ServeConfig {
        audit,
        ..config(dir.path(), &serving, data_dir)
    })
    .await
    .expect("server builds on a temp dir");
    let token = server
        .new_owner_token
        .as_ref()
        .map(|t| t.expose().to_owned());
    let base = format!("{}://{}", serving.scheme(), server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    // Dropping the sender (a test that panics) also stops the server.
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = serving.client(REQUEST_TIMEOUT);
    let app = TestApp {
        base,
        owner_token: String::new(),
        client,
        dir,
        serving,
        stop,
        running,
    };
    (app, token)
}

impl StoppedApp {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir holding the data dir (and, beside it, the owner token file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("vault.db")
    }

    /// Starts the server again on the same data dir (a new port).
    pub async fn start(self) -> TestApp {
        let data_dir = self.data_dir();
        let (app, token) =
            start_on(self.dir, self.serving, data_dir, AuditOptions::default()).await;
        assert!(
            token.is_none(),
            "restarting on an existing vault must not create a new owner"
        );
        TestApp {
            owner_token: self.owner_token,
            ..app
        }
    }
}

impl TestApp {
    /// The temp dir holding the data dir (and, beside it, the owner token file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How this app's server is configured (its edition's flags and files).
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// The running vault's data dir (its files may be read, not edited, while it runs).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server as a signal would and waits until `run` has returned, so the SQLite
    /// file is closed when this resolves.
    pub async fn stop(self) -> StoppedApp {
        let TestApp {
            owner_token,
            client,
            dir,
            serving,
            stop,
            running,
            ..
        } = self;
        drop(client);
        let _ = stop.send(());
        tokio::time::timeout(STOP_TIMEOUT, running)
            .await
            .expect("server stops within the timeout")
            .expect("server task did not panic")
            .expect("server run() returned Ok");
        StoppedApp {
            owner_token,
            dir,
            serving,
        }
    }

    /// A request carrying `token` as its bearer token.
    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// A request as the owner.
    pub fn owner(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, &self.owner_token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        send(self.request(Method::GET, path, token)).await
    }

    pub async fn post_entry(&self, token: &str, body: &Value) -> Response {
        send(self.request(Method::POST, "/v1/entries", token).json(body)).await
    }

    /// Creates an entry as the owner; panics unless the server answers 201 with an id.
    pub async fn create_entry(&self, body: &Value) -> String {
        let res = self.post_entry(&self.owner_token, body).await;
        let status = res.status();
        let text = res.text().await.expect("read body");
        assert_eq!(status, StatusCode::CREATED, "create entry: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON body");
        let id = v["id"]
            .as_str()
            .expect("created entry has an id")
            .to_owned();
        uuid::Uuid::parse_str(&id).expect("entry id is a UUID");
        id
    }

    pub async fn put_entry(&self, token: &str, id: &str, body: &Value) -> Response {
        send(
            self.request(Method::PUT, &format!("/v1/entries/{id}"), token)
                .json(body),
        )
        .await
    }

    pub async fn delete_entry(&self, token: &str, id: &str) -> Response {
        send(self.request(Method::DELETE, &format!("/v1/entries/{id}"), token)).await
    }

    pub async fn get_entry(&self, token: &str, id: &str) -> Response {
        self.get(&format!("/v1/entries/{id}"), token).await
    }

    pub async fn get_field(&self, token: &str, id: &str, name: &str) -> Response {
        self.get(&format!("/v1/entries/{id}/fields/{name}"), token)
            .await
    }

    /// Reads a field that must be readable by `token`; returns its value.
    pub async fn field_value(&self, token: &str, id: &str, name: &str) -> String {
        let v = json_ok(self.get_field(token, id, name).await).await;
        v["value"].as_str().expect("field has a value").to_owned()
    }

    /// `GET /v1/entries` as `token`: the raw body text and the parsed `entries` array.
    pub async fn list_entries(&self, token: &str) -> (String, Vec<Value>) {
        let res = self.get("/v1/entries", token).await;
        let status = res.status();
        let text = res.text().await.expect("read body");
        assert_eq!(status, StatusCode::OK, "list entries: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON body");
        let entries = v["entries"].as_array().expect("entries array").clone();
        (text, entries)
    }

    /// How many entries the owner sees.
    pub async fn entry_count(&self) -> usize {
        self.list_entries(&self.owner_token).await.1.len()
    }

    pub async fn post_agent(&self, token: &str, body: &Value) -> Response {
        send(self.request(Method::POST, "/v1/agents", token).json(body)).await
    }

    /// Creates an agent as the owner; returns `(id, token)`.
    pub async fn create_agent(&self, body: &Value) -> (String, String) {
        let res = self.post_agent(&self.owner_token, body).await;
        let status = res.status();
        let text = res.text().await.expect("read body");
        assert_eq!(status, StatusCode::CREATED, "create agent: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON body");
        (
            v["id"].as_str().expect("agent id").to_owned(),
            v["token"].as_str().expect("agent token").to_owned(),
        )
    }

    pub async fn revoke_agent(&self, id: &str) -> Response {
        send(self.owner(Method::DELETE, &format!("/v1/agents/{id}"))).await
    }

    /// `GET /v1/agents` as the owner: raw text and the `agents` array.
    pub async fn list_agents(&self) -> (String, Vec<Value>) {
        let res = self.get("/v1/agents", &self.owner_token).await;
        let status = res.status();
        let text = res.text().await.expect("read body");
        assert_eq!(status, StatusCode::OK, "list agents: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON body");
        (text, v["agents"].as_array().expect("agents array").clone())
    }
}

pub async fn send(req: RequestBuilder) -> Response {
    req.send().await.expect("request reaches the server")
}

/// Asserts a 200 with a JSON body and returns the body.
pub async fn json_ok(res: Response) -> Value {
    let status = res.status();
    let text = res.text().await.expect("read body");
    assert_eq!(status, StatusCode::OK, "expected 200, body: {text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// The response's `Content-Type` (empty if none).
pub fn content_type(res: &Response) -> String {
    res.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts the contract's error shape: `status`, a JSON body that is exactly
/// `{"error":{"code","message"}}`, the given `code`, and a message a person can read.
/// Returns the whole body text so callers can check it leaks nothing.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> String {
    let got = res.status();
    let content_type = content_type(&res);
    let text = res.text().await.expect("read body");
    assert_eq!(got, status, "status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "error content type {content_type:?}; body: {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("error body is JSON");
    let obj = v.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 1, "only the `error` key: {text}");
    let err = v["error"].as_object().expect("`error` object");
    assert_eq!(err.len(), 2, "error has exactly code and message: {text}");
    assert_eq!(err["code"], code, "error code; body: {text}");
    let message = err["message"].as_str().expect("message is a string");
    assert!(
        message.len() >= 10 && message.contains(' '),
        "message should be a human sentence, got {message:?}"
    );
    text
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A value nobody else uses, so finding it in a response or a file means it leaked.
pub fn distinctive(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The database and its WAL/SHM side files, whichever exist.
pub fn db_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect()
}
