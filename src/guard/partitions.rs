//! Fair shares of a partitioned job: how many partitions a member targets, and which it hands
//! back when members join. Pure arithmetic, unit-tested here.
//!
//! Member `i` of `n` (by sorted member name) keeps the partitions `p` with `p % n == i` and gives
//! up the others first, so that assignments stay put as members come and go.

use std::collections::BTreeSet;

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
