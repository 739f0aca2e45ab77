//! A network partition between one node and its store, made of a network namespace and veth
//! pairs: the node process runs in a namespace of its own (`ip netns exec`), which reaches the
//! host through two links, one to its store proxy and one to the journal. A partition takes the
//! store link down: packets vanish, nothing is reset, and the node's store calls hang until
//! their timeout, as behind a failed switch (the proxy's cut, by contrast, resets at once). The
//! journal, which stands for a downstream system, stays reachable.
//!
//! Needs `ip` (iproute2) and the right to create namespaces (root, as in CI); elsewhere the run
//! goes on without this fault, and says so.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// One namespace with its two links (host side `<name>s` and `<name>j`).
pub struct Netns {
    pub name: String,
    /// The host side of the store link, where the node's store proxy listens.
    pub store_ip: IpAddr,
    /// The host side of the journal link, where its journal proxy listens.
    pub journal_ip: IpAddr,
}

impl Netns {
    /// Creates the namespace `lj<pid>` with its links, or `None` (with a message) where this
    /// host does not allow it.
    pub fn create(label: &str) -> Option<Netns> {
        let pid = std::process::id();
        let name = format!("lj{pid}");
        // A /30 per link, from the pid, so that runs in other processes do not collide.
        let (a, b) = (((pid >> 6) & 0xff) as u8, ((pid & 63) * 4) as u8);
        let store_ip = Ipv4Addr::new(10, 231, a, b + 1);
        let journal_ip = Ipv4Addr::new(10, 232, a, b + 1);
        let netns = Netns {
            name: name.clone(),
            store_ip: store_ip.into(),
            journal_ip: journal_ip.into(),
        };
        let mut steps = vec![vec!["netns".to_owned(), "add".to_owned(), name.clone()]];
        for (side, host) in [("s", store_ip), ("j", journal_ip)] {
            let (host_if, inner_if) = (format!("{name}{side}"), format!("{name}{side}i"));
            let inner = Ipv4Addr::from(u32::from(host) + 1);
            let words = [
                format!("link add {host_if} type veth peer name {inner_if}"),
                format!("link set {inner_if} netns {name}"),
                format!("addr add {host}/30 dev {host_if}"),
                format!("link set {host_if} up"),
                format!("-n {name} addr add {inner}/30 dev {inner_if}"),
                format!("-n {name} link set {inner_if} up"),
            ];
            steps.extend(
                words
                    .iter()
                    .map(|step| step.split(' ').map(str::to_owned).collect()),
            );
        }
        steps.push(vec![
            "-n".to_owned(),
            name.clone(),
            "link".to_owned(),
            "set".to_owned(),
            "lo".to_owned(),
            "up".to_owned(),
        ]);
        for step in steps {
            if let Err(error) = ip(&step) {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "chaos {label}: cannot make a network namespace (ip {}): {error}",
                    step.join(" ")
                );
                eprintln!(
                    "chaos {label}: SKIPPED the network partition: cannot make a network namespace (ip {}): {error}",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(netns)
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Takes the store link down (`true`) or up again.
    pub fn partition(&self, cut: bool) {
        let state = if cut { "down" } else { "up" };
        let host_if = format!("{}s", self.name);
        ip(&["link", "set", &host_if, state].map(str::to_owned))
            .unwrap_or_else(|error| panic!("ip link set {host_if} {state}: {error}"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner ends, and with them the pairs.
        let _ = ip(&["netns".to_owned(), "del".to_owned(), self.name.clone()]);
    }
}

fn ip(args: &[String]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
