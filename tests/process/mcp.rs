//! `clavitor mcp`, driven by the MCP SDK's own client over stdio against a real server with the
//! proxy on: an agent lists, runs with and calls APIs with secrets, and no tool result holds any
//! stored value in any form; a revoked token makes every tool fail with a clear message.

use crate::common::pki::Ca;
use crate::common::upstream::{Upstream, leaky_forms};
use crate::helpers::{
    Scratch, Vault, chmod, command_for, config_home, run, serve_with, server_args, with_config_home,
};
use clavitor::mask::forms;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::time::Duration;

const USE_VALUE: &str = "sk-use-7f3a9c1e5b2d4f60";
const READ_VALUE: &str = "rd-token-19d8e7c6b5a4f3e2";
const VAULT_VALUE: &str = "vault pass/word \"q\" 42";

fn tool_text(r: &CallToolResult) -> String {
    serde_json::to_string(r).unwrap()
}

/// The JSON a tool answered with (its first text block).
fn inner(r: &CallToolResult) -> Value {
    let v = serde_json::to_value(r).unwrap();
    serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap()
}

fn assert_no_value(text: &str) {
    for v in [USE_VALUE, READ_VALUE, VAULT_VALUE] {
        for f in forms(v.as_bytes()) {
            let f = String::from_utf8_lossy(&f).into_owned();
            assert!(!text.contains(&f), "{f:?} found in a tool result: {text}");
        }
        for f in leaky_forms(v) {
            assert!(!text.contains(&f), "{f:?} found in a tool result: {text}");
        }
    }
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        p = p.with_arguments(map);
    }
    tokio::time::timeout(Duration::from_secs(30), client.call_tool(p))
        .await
        .expect("the tool answers in time")
        .expect("a tool result")
}

#[test]
fn an_agent_uses_secrets_through_every_tool_and_never_sees_one() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let rt = crate::helpers::runtime();
    let ca = Ca::new("upstream CA");
    let upstream = rt.block_on(Upstream::https(&ca));
    let ca_file = tmp.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let d = data.display().to_string();
    let c = ca_file.display().to_string();
    let mut serve = serve_with(&[
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--enable-proxy",
        "--proxy-ca-file",
        &c,
    ]);
    with_config_home(&mut serve, &config_home(&data));
    let vault = Vault::start(&mut serve, &data);

    // The owner stores three secrets: a use-only key, a readable token, a vault-tier password.
    let cli = |args: &[&str]| {
        let mut cmd = command_for(&data, &[]);
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split])
            .args(server_args(&vault.url))
            .args(&args[split..]);
        run(&mut cmd)
    };
    let http = crate::edition::reaching(reqwest::Client::builder())
        .build()
        .unwrap();
    let res = rt
        .block_on(
            http.post(format!("{}/v1/entries", vault.url))
                .bearer_auth(&vault.token)
                .json(
                    &json!({"title": "api", "url": "https://api.example.com", "fields": [
                {"name": "key", "value": USE_VALUE, "tier": "credential", "scope": "deploy",
                 "agent_access": "use", "allowed_hosts": ["127.0.0.1"]},
                {"name": "token", "value": READ_VALUE, "tier": "credential", "scope": "deploy",
                 "allowed_hosts": ["127.0.0.1"]},
                {"name": "password", "value": VAULT_VALUE, "scope": "deploy"}]}),
                )
                .send(),
        )
        .unwrap();
    assert_eq!(res.status(), 201);
    let agent = cli(&["agent", "add", "claude", "--scope", "deploy", "--json"])
        .ok()
        .json();
    let token_file = tmp.path().join("agent.token");
    std::fs::write(&token_file, agent["token"].as_str().unwrap()).unwrap();
    chmod(&token_file, 0o600);

    let mut mcp = tokio::process::Command::new(crate::helpers::bin());
    mcp.arg("mcp")
        .arg("--token-file")
        .arg(&token_file)
        .args(server_args(&vault.url))
        .args(["--allow-command", "sh"])
        .env_remove("CLAVITOR_TOKEN");
    let client = rt.block_on(async {
        let transport = TokioChildProcess::new(mcp).expect("spawn clavitor mcp");
        ().serve(transport).await.expect("MCP initialize")
    });
    let mut results = Vec::new();
    rt.block_on(async {
        let tools = client.list_all_tools().await.unwrap();
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(names, ["http_request", "list_secrets", "run_with_secrets"]);

        let listed = call(&client, "list_secrets", json!({})).await;
        let text = tool_text(&listed);
        assert_ne!(listed.is_error, Some(true), "{text}");
        assert!(text.contains("clavitor://api/key") && text.contains("use"), "{text}");
        results.push(listed);

        // A readable and a vault-tier secret, printed every way a program might.
        let script = r#"printf '%s\n' "$T"; printf '%s' "$T" | base64; printf 'x%s' "$P" | base64;
            printf '%s' "$P" | od -An -tx1 | tr -d ' \n'; echo; printf '%s' "$T" >&2"#;
        let ran = call(&client, "run_with_secrets", json!({"command": "sh", "args": ["-c", script],
            "env": {"T": "clavitor://api/token", "P": "clavitor://api/password"}})).await;
        let text = tool_text(&ran);
        assert_ne!(ran.is_error, Some(true), "{text}");
        assert!(text.contains("concealed by clavitor") && text.contains("exit_code"), "{text}");
        results.push(ran);
        // A use-only field is not given to a command; a command not allowed does not run.
        for (args, needle) in [
            (json!({"command": "sh", "args": ["-c", "true"], "env": {"K": "clavitor://api/key"}}), "use-only"),
            (json!({"command": "env", "env": {"T": "clavitor://api/token"}}), "not allowed"),
            (json!({"command": "sh", "env": {"T": "clavitor://api/nope"}}), "not found, or not in this token's scopes"),
        ] {
            let r = call(&client, "run_with_secrets", args).await;
            assert_eq!(r.is_error, Some(true));
            assert!(tool_text(&r).contains(needle), "{}", tool_text(&r));
            results.push(r);
        }

        // An API call with the use-only key, which the upstream echoes back in every form.
        let called = call(&client, "http_request", json!({"method": "POST", "url": upstream.url("/echo"),
            "headers": {"Authorization": "Bearer {{clavitor://api/key}}"},
            "body": "t={{clavitor://api/token}}"})).await;
        let text = tool_text(&called);
        assert_ne!(called.is_error, Some(true), "{text}");
        assert_eq!(inner(&called)["status"], 200, "{text}");
        results.push(called);
    });
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == &format!("Bearer {USE_VALUE}"))
    );
    assert_eq!(seen[0].body, format!("t={READ_VALUE}"));
    for r in &results {
        assert_no_value(&tool_text(r));
    }

    // Revoked: every tool fails, saying why.
    cli(&["agent", "revoke", "claude"]).ok();
    rt.block_on(async {
        for (tool, args) in [
            ("list_secrets", json!({})),
            (
                "run_with_secrets",
                json!({"command": "sh", "args": ["-c", "true"]}),
            ),
            (
                "http_request",
                json!({"method": "GET", "url": upstream.url("/echo"),
                "headers": {"A": "{{clavitor://api/key}}"}}),
            ),
        ] {
            let r = call(&client, tool, args).await;
            let text = tool_text(&r);
            assert_eq!(r.is_error, Some(true), "{tool}: {text}");
            assert!(text.contains("revoked"), "{tool}: {text}");
        }
        client.cancel().await.unwrap();
    });
    assert_eq!(
        upstream.requests().len(),
        1,
        "nothing sent after the revocation"
    );
}
