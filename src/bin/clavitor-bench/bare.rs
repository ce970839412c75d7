//! `clavitor-bench --bare-server`: the ceiling for the read figures. The same axum and tokio
//! as `clavitor serve`, answering every request with a small constant JSON of the same shape as
//! a field read, with no middleware, no auth, no database and no crypto.

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use std::io::{Read, Write};

const BODY: &str = r#"{"name":"password","value":"correct-horse-battery-staple","tier":"vault"}"#;

pub fn serve() -> Result<()> {
    // Exit when the parent bench goes away (its end of our stdin closes), even if it was
    // killed too hard to run its guards.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let app = Router::new().fallback(|| async { ([(CONTENT_TYPE, "application/json")], BODY) });
        axum::serve(listener, app).await?;
        Ok(())
    })
}
