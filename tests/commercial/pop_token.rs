//! `clavitor pop-token --out FILE`: a 0600 token file the config validator accepts; never
//! overwrites.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn pop_token_writes_a_private_file_the_validator_accepts() {
    let pop = Pop::new();
    let out_file = pop.path("generated.token");
    let out = clavitor(&["pop-token", "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{out}");
    assert_eq!(mode(&out_file), 0o600);
    let text = std::fs::read_to_string(&out_file).expect("token file");
    let token = text.trim();
    assert!(token.starts_with("clavitor-pop-v1-"), "{token}");
    assert!(
        !out.stdout.contains(token) && !out.stderr.contains(token),
        "the token must not be printed: {out}"
    );

    // A config whose token files are the generated one starts, and accepts that token.
    let y =
        config_yaml(&pop, "backup", &Opts::default()).replace(&q(&pop.token_file), &q(&out_file));
    assert!(y.contains("generated.token"), "{y}");
    pop.write_config(&y);
    let v = pop.start();
    let (st, res) = push(&pop.peer("calgary-01"), &v.url, token)
        .await
        .expect("request");
    assert!(accepted_by_backup(st, &res), "{st} {res}");

    // Two runs give different tokens.
    let second = pop.path("second.token");
    assert!(
        clavitor(&["pop-token", "--out", second.to_str().unwrap()])
            .status
            .success()
    );
    assert_ne!(std::fs::read_to_string(&second).unwrap().trim(), token);
}

#[test]
fn pop_token_refuses_to_overwrite() {
    let pop = Pop::new();
    let before = std::fs::read_to_string(&pop.token_file).unwrap();
    let out = clavitor(&["pop-token", "--out", pop.token_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains("already exists"), "{out}");
    assert_eq!(std::fs::read_to_string(&pop.token_file).unwrap(), before);
}
