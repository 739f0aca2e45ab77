//! Who this node is: its id and its group, as leases and logs name it.

use std::fmt;

/// The identity of one running replica: a node id unique in the cluster, and the group
/// (cluster, region) it belongs to.
///
/// ```
/// use loopjob::NodeIdentity;
///
/// let node = NodeIdentity::new("web-1", "eu-west");
/// assert_eq!(node.to_string(), "web-1@eu-west");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    node_id: String,
    group: String,
}

/// The group of a node that names none.
pub const DEFAULT_GROUP: &str = "default";
/// The environment variable [`NodeIdentity::from_env`] reads the node id from.
pub const DEFAULT_NODE_ID_ENV: &str = "HOSTNAME";
/// The environment variable [`NodeIdentity::from_env`] reads the group from.
pub const DEFAULT_GROUP_ENV: &str = "CLUSTER_NAME";

impl NodeIdentity {
    /// An identity with the given node id and group.
    pub fn new(node_id: impl Into<String>, group: impl Into<String>) -> Self {
        NodeIdentity {
            node_id: node_id.into(),
            group: group.into(),
        }
    }

    /// The identity from the environment: node id from `$HOSTNAME`, else the host name and the
    /// process id; group from `$CLUSTER_NAME`, else `"default"`.
    pub fn from_env() -> Self {
        NodeIdentity::from_env_vars(DEFAULT_NODE_ID_ENV, DEFAULT_GROUP_ENV)
    }

    /// The identity from the environment variables named `node_id_var` and `group_var`, for
    /// platforms that name them otherwise (`POD_NAME`, `REGION`, …): node id from
    /// `$node_id_var`, else the host name and the process id; group from `$group_var`, else
    /// `"default"`. Settings give the names as `node_id_env` and `group_env` in `[loopjob]`.
    ///
    /// A stable node id (a pod name, a host name) is what keeps a partitioned job's
    /// `worker_index` the same across a restart: members are ordered by node id.
    ///
    /// ```
    /// use loopjob::NodeIdentity;
    ///
    /// // SAFETY-free in a doctest: nothing else reads the environment here.
    /// # unsafe { std::env::set_var("MY_POD", "worker-3"); std::env::set_var("MY_REGION", "eu"); }
    /// let node = NodeIdentity::from_env_vars("MY_POD", "MY_REGION");
    /// assert_eq!(node.to_string(), "worker-3@eu");
    /// ```
    pub fn from_env_vars(node_id_var: &str, group_var: &str) -> Self {
        let node_id = non_empty_var(node_id_var).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}-{}", std::process::id())
        });
        let group = non_empty_var(group_var).unwrap_or_else(|| DEFAULT_GROUP.to_owned());
        NodeIdentity::new(node_id, group)
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.group)
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}
