//! What differs between the editions, so that no test has to know: how the one `spawn_app`
//! configures the server and its client, and what the server answers where the editions
//! differ. This file is the suite's only look at the `commercial` feature; both halves have
//! the same items.

pub use imp::*;

#[cfg(not(feature = "commercial"))]
mod imp {
    use clavitor::edition::ServeFlags;
    use reqwest::{ClientBuilder, Method, Response, StatusCode};
    use rustls::ClientConfig;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// A vault that serves plain HTTP and needs no files of its own.
    pub struct Serving;

    impl Serving {
        pub fn new(_dir: &Path) -> Self {
            Self
        }

        pub fn flags(&self) -> ServeFlags {
            ServeFlags::default()
        }

        pub fn scheme(&self) -> &'static str {
            "http"
        }

        /// `builder`, able to reach this server.
        pub fn reaching(&self, builder: ClientBuilder) -> ClientBuilder {
            builder
        }

        pub fn client(&self, timeout: Duration) -> reqwest::Client {
            self.reaching(reqwest::Client::builder().timeout(timeout))
                .build()
                .expect("build HTTP client")
        }

        /// How a raw connection reaches this server: plain TCP.
        pub fn raw_tls(&self) -> Option<Arc<ClientConfig>> {
            None
        }
    }

    /// Routes the edition serves outside the OpenAPI document (see `openapi.rs`): none.
    pub const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[];

    /// The role `/healthz` reports.
    pub const ROLE: &str = "standalone";
    /// The sections `/healthz` adds to status, edition and role.
    pub const HEALTH_SECTIONS: &[&str] = &[];

    /// Community answers an unknown path with a plain, immediate 404.
    pub async fn assert_unknown_path_answer(res: Response, path: &str) {
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let content_type = crate::helpers::content_type(&res);
        assert!(
            !content_type.contains("json"),
            "{path}: a plain 404, got {content_type:?}"
        );
        tokio::time::timeout(Duration::from_secs(2), res.bytes())
            .await
            .unwrap_or_else(|_| panic!("{path}: the 404 body arrives at once"))
            .expect("read body");
    }

    /// Community answers a wrong method on a known path with a JSON 405 that names the
    /// method, and an `Allow` header listing (at least) `allowed`.
    pub async fn assert_wrong_method_answer(
        res: Response,
        method: &Method,
        path: &str,
        allowed: &[&str],
    ) {
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for m in allowed {
            assert!(
                allow.split(',').any(|a| a.trim() == *m),
                "{method} {path}: Allow {allow:?} lacks {m}"
            );
        }
        let body =
            crate::helpers::assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
                .await;
        assert!(body.contains(method.as_str()), "{body}");
    }
}

#[cfg(feature = "commercial")]
mod imp {
    use crate::common::primary::PrimaryPop;
    use clavitor::edition::ServeFlags;
    use reqwest::{ClientBuilder, Method, Response, StatusCode};
    use rustls::ClientConfig;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// A primary POP with full mTLS (HTTPS, a test CA), replicating to a backup nobody runs.
    pub struct Serving {
        pop: PrimaryPop,
    }

    impl Serving {
        /// Writes the POP's files into `dir/pop`.
        pub fn new(dir: &Path) -> Self {
            let pop_dir = dir.join("pop");
            std::fs::create_dir_all(&pop_dir).expect("create the POP's dir");
            Self {
                pop: PrimaryPop::write(&pop_dir),
            }
        }

        pub fn flags(&self) -> ServeFlags {
            ServeFlags {
                replication_config: self.pop.config.clone(),
                ..ServeFlags::default()
            }
        }

        pub fn scheme(&self) -> &'static str {
            "https"
        }

        /// `builder`, trusting the POP's CA.
        pub fn reaching(&self, builder: ClientBuilder) -> ClientBuilder {
            self.pop.trusting(builder)
        }

        pub fn client(&self, timeout: Duration) -> reqwest::Client {
            self.reaching(reqwest::Client::builder().timeout(timeout))
                .build()
                .expect("build HTTPS client")
        }

        /// How a raw connection reaches this server: TLS trusting the POP's CA.
        pub fn raw_tls(&self) -> Option<Arc<ClientConfig>> {
            Some(self.pop.client_config())
        }
    }

    /// Routes the edition serves outside the OpenAPI document (see `openapi.rs`): POP-to-POP
    /// replication, not a client API (mTLS with a POP certificate, the POP token, a wire
    /// format versioned by the replication protocol); and SCIM 2.0, whose clients are identity
    /// providers that read its own discovery (RFC 7644: ServiceProviderConfig, ResourceTypes,
    /// Schemas) with the SCIM token, not the vault's API.
    pub const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[
        ("POST", "/v1/replication/batch"),
        ("GET", "/scim/v2/ServiceProviderConfig"),
        ("GET", "/scim/v2/ResourceTypes"),
        ("GET", "/scim/v2/Schemas"),
        ("GET", "/scim/v2/Users"),
        ("GET", "/scim/v2/Users/{id}"),
        ("GET", "/scim/v2/Groups"),
        ("GET", "/scim/v2/Groups/{id}"),
    ];

    pub const ROLE: &str = "primary";
    pub const HEALTH_SECTIONS: &[&str] = &["replication"];

    /// Commercial holds an unknown path in the tarpit: a 404 whose body drips a byte a second.
    pub async fn assert_unknown_path_answer(res: Response, path: &str) {
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), res.bytes())
                .await
                .is_err(),
            "{path}: the tarpit holds the body back"
        );
    }

    /// Commercial answers a wrong method on a known path as it answers an unknown path: the
    /// tarpit (a scanner learns nothing about which paths exist).
    pub async fn assert_wrong_method_answer(
        res: Response,
        method: &Method,
        path: &str,
        _allowed: &[&str],
    ) {
        assert_unknown_path_answer(res, &format!("{method} {path}")).await;
    }
}
