//! Fair shares of a partitioned job: how many partitions a member targets, which it asks for
//! first, and which it hands back when members join. Pure arithmetic, unit-tested here.
//!
//! Member `i` of `n` (by sorted member name) prefers the partitions `p` with `p % n == i`, so
//! that members rarely compete for the same free partition, and gives up the others first. A
//! partition it asked for and did not get (another member holds it) goes to the back of the
//! queue, the one refused longest ago first, so that attempts rotate through every partition
//! instead of asking for the same taken one forever.

use std::collections::{BTreeMap, BTreeSet};

/// When each partition was last asked for and refused, by attempt number.
pub(crate) type Refusals = BTreeMap<u32, u64>;

/// The number of partitions each of `members` live members targets: ⌈partitions / members⌉.
pub(crate) fn fair_share(partitions: u32, members: u32) -> u32 {
    partitions.div_ceil(members.max(1))
}

/// Whether member `index` of `count` prefers partition `p`.
fn preferred(p: u32, index: u32, count: u32) -> bool {
    p % count.max(1) == index
}

/// The partitions a member holding `held` should ask for to reach `target`: preferred first,
/// then the others, and those refused before last, the longest ago first.
pub(crate) fn to_acquire(
    held: &BTreeSet<u32>,
    refused: &Refusals,
    partitions: u32,
    target: u32,
    (index, count): (u32, u32),
) -> Vec<u32> {
    let deficit = target.saturating_sub(held.len() as u32) as usize;
    let mut candidates: Vec<u32> = (0..partitions).filter(|p| !held.contains(p)).collect();
    // Stable sort: within each rank, partitions keep their order.
    candidates.sort_by_key(|&p| (refused.get(&p).copied(), !preferred(p, index, count)));
    candidates.truncate(deficit);
    candidates
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

    #[test]
    fn fair_share_rounds_up() {
        assert_eq!(fair_share(16, 1), 16);
        assert_eq!(fair_share(16, 2), 8);
        assert_eq!(fair_share(16, 3), 6);
        assert_eq!(fair_share(16, 0), 16, "no members known yet: as if alone");
        assert_eq!(fair_share(2, 5), 1);
    }

    #[test]
    fn acquisition_asks_for_the_deficit_preferred_partitions_first() {
        let none = Refusals::new();
        // Member 1 of 3 prefers 1, 4, 7; it holds 4 and needs 3 in all.
        assert_eq!(to_acquire(&set(&[4]), &none, 9, 3, (1, 3)), [1, 7]);
        // Nothing to ask when the target is reached.
        assert!(to_acquire(&set(&[1, 4, 7]), &none, 9, 3, (1, 3)).is_empty());
        // When the preferred are exhausted, others follow in order.
        assert_eq!(to_acquire(&set(&[]), &none, 4, 4, (0, 2)), [0, 2, 1, 3]);
    }

    #[test]
    fn refused_partitions_go_last_so_a_member_tries_the_others() {
        let refused = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<Refusals>();
        // Member 2 of 3 prefers 2 and 5; it got 5, but 2 is held by another member.
        assert_eq!(
            to_acquire(&set(&[5]), &refused(&[(2, 1)]), 6, 2, (2, 3)),
            [0]
        );
        assert_eq!(
            to_acquire(
                &set(&[5]),
                &refused(&[(2, 1), (0, 2), (1, 3), (3, 4)]),
                6,
                2,
                (2, 3)
            ),
            [4]
        );
        // Everything refused once: the one refused longest ago comes first.
        let all = refused(&[(0, 5), (1, 6), (2, 1), (3, 7), (4, 8)]);
        assert_eq!(to_acquire(&set(&[5]), &all, 6, 2, (2, 3)), [2]);
        let all = refused(&[(0, 5), (1, 6), (2, 9), (3, 7), (4, 8)]);
        assert_eq!(to_acquire(&set(&[5]), &all, 6, 2, (2, 3)), [0]);
    }

    #[test]
    fn release_hands_back_the_partitions_others_prefer() {
        // Alone it held all 6; a second member joined: member 0 of 2 keeps 0, 2, 4.
        let released = to_release(&set(&[0, 1, 2, 3, 4, 5]), 3, (0, 2));
        assert_eq!(released, [5, 3, 1]);
        assert!(to_release(&set(&[0, 2]), 3, (0, 2)).is_empty());
    }
}
