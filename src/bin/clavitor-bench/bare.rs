//! `clavitor-bench --bare-server`: the ceiling for the read figures. The same axum and tokio
//! as `clavitor serve`, answering every request with a small constant JSON of the same shape as
//! a field read, with no middleware, no auth, no database and no crypto.

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use std::io::{Read, Write};

const BODY: &str = r#"{"name":"password","value":"correct-horse-battery-staple","tier":"vault"}"#;

/// `tls`: PEM certificate and key files: serve HTTPS (the proxy scenario's upstream).
pub fn serve(tls: Option<(&std::path::Path, &std::path::Path)>) -> Result<()> {
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
    let acceptor = tls.map(acceptor).transpose()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let app = Router::new().fallback(|| async { ([(CONTENT_TYPE, "application/json")], BODY) });
        let Some(acceptor) = acceptor else {
            axum::serve(listener, app).await?;
            return Ok(());
        };
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    })
}

fn acceptor(
    (cert, key): (&std::path::Path, &std::path::Path),
) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .context("cannot read the certificate")?
        .collect::<Result<Vec<_>, _>>()
        .context("bad certificate PEM")?;
    let key = PrivateKeyDer::from_pem_file(key).context("cannot read the key")?;
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg)))
}
