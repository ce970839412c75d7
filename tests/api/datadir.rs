//! The data dir belongs to one server at a time.

use crate::helpers::{config, spawn_app};
use clavitor::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let app = spawn_app().await;
    let data = app.dir().join("data");
    let err = match Server::build(config(app.dir(), app.serving(), data.clone())).await {
        Ok(_) => panic!("a second server started on {}", data.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("in use by another clavitor process")
            && err.contains(&format!("(pid {})", std::process::id()))
            && err.contains("Fix:"),
        "{err}"
    );
    // The first one is unharmed, and once it stopped the data dir opens again.
    assert_eq!(app.entry_count().await, 0);
    let app = app.stop().await.start().await;
    assert_eq!(app.entry_count().await, 0);
}
