//! Two nodes in one process, sharing a SQLite lease store, each with the admin endpoint:
//! open <http://127.0.0.1:9464/> (node A) and <http://127.0.0.1:9465/> (node B), and use the
//! token printed below to pause, resume or trigger a job. Ctrl-C stops both.
//!
//! ```sh
//! ADMIN_TOKEN=change-me cargo run --example admin --features admin
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use loopjob::admin::AdminOptions;
use loopjob::{Host, HostHandle, JobError, LeaderMode, Leadership, NodeIdentity, Schedule};

#[tokio::main]
async fn main() -> Result<(), loopjob::Report> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "change-me".to_owned());
    let path = std::env::temp_dir().join(format!("loopjob-admin-{}.db", std::process::id()));
    let store = loopjob::store::open(&format!("sqlite://{}", path.display()))?;

    let mut handles: Vec<HostHandle> = Vec::new();
    let mut running = Vec::new();
    for (node, port) in [("node-a", 9464), ("node-b", 9465)] {
        let admin = AdminOptions::bind(SocketAddr::from(([127, 0, 0, 1], port))).token(&token);
        let host = Host::builder()
            .node(NodeIdentity::new(node, "default"))
            .store(store.clone())
            .job_fn(
                "report",
                Schedule::every(Duration::from_secs(10)),
                |_ctx| async { Ok(()) },
            )
            .leadership("report", Leadership::new(LeaderMode::Cluster))
            .job_fn(
                "sync",
                Schedule::every(Duration::from_secs(15)),
                |ctx| async move {
                    if ctx.run_id() % 3 == 0 {
                        return Err(JobError::msg("upstream answered 502"));
                    }
                    Ok(())
                },
            )
            .leadership("sync", Leadership::new(LeaderMode::Cluster))
            .job_fn(
                "local_cache",
                Schedule::every(Duration::from_secs(5)),
                |_ctx| async { Ok(()) },
            )
            .admin(admin)
            .build()?;
        let address = host.admin_address().expect("the admin endpoint is on");
        println!("{node}: dashboard at http://{address}/");
        handles.push(host.handle());
        running.push(tokio::spawn(host.run()));
    }
    println!("admin token: {token} (set ADMIN_TOKEN to choose it)");
    for host in running {
        let _ = host.await;
    }
    for handle in handles {
        handle.shutdown();
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
