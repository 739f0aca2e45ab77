//! Fair shares of a partitioned job: how many partitions a member targets, and which it hands
//! back when members join. Pure arithmetic, unit-tested here.
//!
//! Member `i` of `n` (ordered by node id) keeps the partitions `p` with `p % n == i` and gives
//! up the others first, so that assignments stay put as members come and go.
//!
//! Members are the *nodes* that announced themselves, ordered by node id: a process announces
//! itself under its holder name, `{node_id}/{random}`, and the random part is left out of the
//! order, so a node that restarts keeps its index (its predecessor's announcement, still live
//! for a while, counts as the same node). Two processes given the same node id count as one
//! member and get the same index: node ids must be unique in the cluster.

use std::collections::BTreeSet;

use crate::store::Member;

/// The node id in a holder name `{node_id}/{random}` (the whole name, if it has no suffix).
pub(crate) fn node_of(holder: &str) -> &str {
    holder.rsplit_once('/').map_or(holder, |(node, _)| node)
}

/// The place of the node holding as `holder` among the nodes of `members`, ordered by node
/// id, and their number: `(worker_index, worker_count)`.
pub(crate) fn worker_place(members: &[Member], holder: &str) -> (u32, u32) {
    let own = node_of(holder);
    let mut nodes: BTreeSet<&str> = members.iter().map(|m| node_of(&m.member)).collect();
    // Not yet in the list (the store answered before it counted us): as if it were.
    nodes.insert(own);
    let index = nodes.iter().take_while(|node| **node != own).count();
    (index as u32, nodes.len() as u32)
}

/// The number of partitions each of `members` live members targets: ⌈partitions / members⌉.
pub(crate) fn fair_share(partitions: u32, members: u32) -> u32 {
    partitions.div_ceil(members.max(1))
}

/// Whether member `index` of `count` prefers partition `p`.
pub(crate) fn preferred(p: u32, index: u32, count: u32) -> bool {
    p % count.max(1) == index
}

/// The partitions a member holding `held` should release to come down to `target`: the ones
/// it does not prefer first, highest first.
pub(crate) fn to_release(
    held: &BTreeSet<u32>,
    target: u32,
    (index, count): (u32, u32),
) -> Vec<u32> {
    let surplus = (held.len() as u32).saturating_sub(target) as usize;
    let (mine, others): (Vec<u32>, Vec<u32>) = held
        .iter()
        .rev()
        .partition(|&&p| preferred(p, index, count));
    others.into_iter().chain(mine).take(surplus).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> BTreeSet<u32> {
        items.iter().copied().collect()
    }

    fn members(holders: &[&str]) -> Vec<Member> {
        holders
            .iter()
            .map(|holder| Member {
                scope: "job#members".into(),
                member: (*holder).into(),
                expires_at_ms: 0,
            })
            .collect()
    }

    #[test]
    fn workers_are_ordered_by_node_id_not_by_the_random_suffix() {
        // By whole holder name, "b-1/…" sorts before "b/…" ('-' < '/'); by node id, "b" first.
        let all = members(&["b-1/00000001", "b/ffffffff", "c/00000000"]);
        assert_eq!(worker_place(&all, "b/ffffffff"), (0, 3));
        assert_eq!(worker_place(&all, "b-1/00000001"), (1, 3));
        assert_eq!(worker_place(&all, "c/00000000"), (2, 3));
    }

    #[test]
    fn a_restarted_node_keeps_its_place_beside_its_predecessors_announcement() {
        // "a" restarted: its old announcement is still live, with another suffix.
        let all = members(&["a/00000000", "a/ffffffff", "b/12345678"]);
        assert_eq!(worker_place(&all, "a/00000000"), (0, 2));
        assert_eq!(worker_place(&all, "a/ffffffff"), (0, 2));
        assert_eq!(worker_place(&all, "b/12345678"), (1, 2));
        assert_eq!(
            worker_place(&[], "b/12345678"),
            (0, 1),
            "alone until listed"
        );
    }

    #[test]
    fn fair_share_rounds_up() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 2), 8);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16, "no members known yet: as if alone");
        assert_eq!(fair_share(2, 5), 1);
    }

    #[test]
    fn release_hands_back_the_partitions_others_prefer() {
        // Alone it held all 6; a second member joined: member 0 of 2 keeps 0, 2, 4.
        let released = to_release(&set(&[0, 1, 2, 3, 4, 5]), 3, (0, 2));
        assert_eq!(released, [5, 3, 1]);
        assert!(to_release(&set(&[0, 2]), 3, (0, 2)).is_empty());
    }
}
