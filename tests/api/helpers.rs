//! The one `spawn_app()`: a real server, in this process, on a fresh data dir and port 0.
//!
//! Every test talks to it over real HTTP with `reqwest`. `TestApp::stop` shuts the server
//! down the way SIGTERM would (and waits until the store is closed), so a test can look at
//! or edit the files on disk and then `StoppedApp::start` the same vault again.

use crate::common::raw::RawStream;
use crate::edition::Serving;
use clavitor::server::{ServeConfig, Server};
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
    /// The server's socket, for tests that speak raw TCP.
    pub addr: std::net::SocketAddr,
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
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with serve settings changed by `configure` (e.g. the connection limits).
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("create temp dir");
    let data_dir = dir.path().join("data");
    let serving = Serving::new(dir.path());
    let (app, token) = start_on(dir, serving, data_dir, configure).await;
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
        ..ServeConfig::default()
    }
}

async fn start_on(
    dir: TempDir,
    serving: Serving,
    data_dir: PathBuf,
    configure: impl FnOnce(&mut ServeConfig),
) -> (TestApp, Option<String>) {
    let mut cfg = config(dir.path(), &serving, data_dir);
    configure(&mut cfg);
    let server = Server::build(cfg)
        .await
        .expect("server builds on a temp dir");
    let token = server
        .new_owner_token
        .as_ref()
        .map(|t| t.expose().to_owned());
    let addr = server.local_addr();
    let base = format!("{}://{addr}", serving.scheme());
    let (stop, stopped) = oneshot::channel::<()>();
    // Dropping the sender (a test that panics) also stops the server.
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = serving.client(REQUEST_TIMEOUT);
    let app = TestApp {
        base,
        addr,
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
        let (app, token) = start_on(self.dir, self.serving, data_dir, |_| {}).await;
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

    /// A new raw connection to the server, as this edition's clients reach it (plain TCP, or
    /// TLS with the handshake done): for tests that write HTTP bytes themselves.
    pub async fn raw(&self) -> RawStream {
        RawStream::connect(self.addr, self.serving.raw_tls())
            .await
            .expect("connect to the server")
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
        self.create_entry_as(&self.owner_token, body).await
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

    /// Asserts `token` is refused: `GET /v1/entries` answers 401 `invalid_token`.
    pub async fn assert_refused(&self, token: &str) {
        let res = self.get("/v1/entries", token).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    /// `GET /v1/entries` as `token`: the raw body text and the parsed `entries` array.
    pub async fn list_entries(&self, token: &str) -> (String, Vec<Value>) {
        let res = self.get("/v1/entries", token).await;
        let (text, v) = expect_json(res, StatusCode::OK, "list entries").await;
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
        self.create_agent_as(&self.owner_token, body).await
    }

    pub async fn revoke_agent(&self, id: &str) -> Response {
        send(self.owner(Method::DELETE, &format!("/v1/agents/{id}"))).await
    }

    /// `GET /v1/agents` as the owner: raw text and the `agents` array.
    pub async fn list_agents(&self) -> (String, Vec<Value>) {
        let res = self.get("/v1/agents", &self.owner_token).await;
        let (text, v) = expect_json(res, StatusCode::OK, "list agents").await;
        (text, v["agents"].as_array().expect("agents array").clone())
    }
}

/// People and groups, as a given token.
impl TestApp {
    /// `POST /v1/users` as `token`.
    pub async fn post_user(&self, token: &str, name: &str, role: &str) -> Response {
        let body =
            serde_json::json!({"name": name, "email": format!("{name}@example.com"), "role": role});
        send(self.request(Method::POST, "/v1/users", token).json(&body)).await
    }

    /// Creates a user as `token`; panics unless 201. Returns `(id, token)`.
    pub async fn create_user_as(&self, token: &str, name: &str, role: &str) -> (String, String) {
        created_with_token(self.post_user(token, name, role).await, "user").await
    }

    /// Creates a user as the owner.
    pub async fn create_user(&self, name: &str, role: &str) -> (String, String) {
        self.create_user_as(&self.owner_token, name, role).await
    }

    /// Creates a group as `token`; panics unless 201. Returns its id.
    pub async fn create_group_as(&self, token: &str, name: &str, scopes: &[&str]) -> String {
        let body = serde_json::json!({"name": name, "scopes": scopes});
        let res = send(self.request(Method::POST, "/v1/groups", token).json(&body)).await;
        let (_, v) = expect_json(res, StatusCode::CREATED, "create group").await;
        v["id"].as_str().expect("group id").to_owned()
    }

    pub async fn create_group(&self, name: &str, scopes: &[&str]) -> String {
        self.create_group_as(&self.owner_token, name, scopes).await
    }

    /// `PUT /v1/groups/{group}/members/{user}` as `token`.
    pub async fn add_member_as(&self, token: &str, group: &str, user: &str) -> Response {
        send(self.request(
            Method::PUT,
            &format!("/v1/groups/{group}/members/{user}"),
            token,
        ))
        .await
    }

    /// Adds a member as the owner; panics unless 204.
    pub async fn add_member(&self, group: &str, user: &str) {
        let res = self.add_member_as(&self.owner_token, group, user).await;
        let status = res.status();
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "add member: {}",
            res.text().await.unwrap_or_default()
        );
    }

    /// `DELETE /v1/groups/{group}/members/{user}` as `token`.
    pub async fn remove_member_as(&self, token: &str, group: &str, user: &str) -> Response {
        send(self.request(
            Method::DELETE,
            &format!("/v1/groups/{group}/members/{user}"),
            token,
        ))
        .await
    }

    /// `PATCH /v1/users/{id}` as `token`.
    pub async fn patch_user(&self, token: &str, id: &str, body: &Value) -> Response {
        send(
            self.request(Method::PATCH, &format!("/v1/users/{id}"), token)
                .json(body),
        )
        .await
    }

    /// Creates an agent as `token`; panics unless 201. Returns `(id, token)`.
    pub async fn create_agent_as(&self, token: &str, body: &Value) -> (String, String) {
        created_with_token(self.post_agent(token, body).await, "agent").await
    }

    /// Creates an entry as `token`; panics unless 201 with a UUID id. Returns its id.
    pub async fn create_entry_as(&self, token: &str, body: &Value) -> String {
        let res = self.post_entry(token, body).await;
        let (_, v) = expect_json(res, StatusCode::CREATED, "create entry").await;
        let id = v["id"]
            .as_str()
            .expect("created entry has an id")
            .to_owned();
        uuid::Uuid::parse_str(&id).expect("entry id is a UUID");
        id
    }

    /// Stops the vault, deletes the owner's copy of `scope`'s key and starts it again: a vault
    /// where only others hold that key.
    pub async fn without_owner_key_copy(self, scope: &str) -> TestApp {
        let stopped = self.stop().await;
        {
            let c = rusqlite::Connection::open(stopped.db_path()).expect("open");
            let n = c
                .execute(
                    "DELETE FROM scope_keys WHERE scope = ?1
                     AND agent_id = (SELECT id FROM agents WHERE is_owner = 1)",
                    [scope],
                )
                .expect("delete the owner's copy");
            assert_eq!(n, 1, "the owner held one copy of {scope:?}");
        }
        stopped.start().await
    }
}

/// Asserts a 201 carrying `id` and `token` (a new user's or agent's); returns them.
async fn created_with_token(res: Response, what: &str) -> (String, String) {
    let (_, v) = expect_json(res, StatusCode::CREATED, &format!("create {what}")).await;
    let field = |key: &str| {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("the new {what} has no {key}: {v}"))
            .to_owned()
    };
    (field("id"), field("token"))
}

pub async fn send(req: RequestBuilder) -> Response {
    req.send().await.expect("request reaches the server")
}

/// Asserts status `want` with a JSON body (`what` names the call in the failure); returns the
/// body's text and JSON.
pub async fn expect_json(res: Response, want: StatusCode, what: &str) -> (String, Value) {
    let status = res.status();
    let text = res.text().await.expect("read body");
    assert_eq!(status, want, "{what}: {text}");
    let v = serde_json::from_str(&text).expect("JSON body");
    (text, v)
}

/// Asserts a 200 with a JSON body and returns the body.
pub async fn json_ok(res: Response) -> Value {
    expect_json(res, StatusCode::OK, "expected 200, body")
        .await
        .1
}

/// Asserts the response may not be stored by any cache (it carries a token).
pub fn assert_no_store(res: &Response) {
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "cache-control"
    );
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
