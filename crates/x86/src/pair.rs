//! Pairing the symbols of several builds of one object.
//!
//! gcc numbers its clones and static locals per build (`foo.constprop.0`, `foo.isra.1`,
//! `__func__.12`), and the numbers can differ between builds, so symbols pair on their
//! [normalized](crate::normalize_name) name and section name. Symbols with the same key (two
//! `.constprop` clones, same-named statics) pair in address order: the k-th in one build with
//! the k-th in the others.

use std::collections::BTreeMap;

use crate::elf::normalize_name;

/// The result of [`pair_by_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// Index tuples (one index per build) of symbols present in every build.
    pub complete: Vec<Vec<usize>>,
    /// Symbols missing from at least one build: per build, its index or `None`.
    pub partial: Vec<Vec<Option<usize>>>,
}

/// The pairing key of a symbol: its normalized name and normalized section name.
pub fn pairing_key(name: &str, section: &str) -> (String, String) {
    (
        normalize_name(name).into_owned(),
        normalize_name(section).into_owned(),
    )
}

/// Pairs the symbols of several builds by key. `keys[v][i]` is the key of symbol `i` of build
/// `v`, with symbols listed in address order. Complete tuples come out in the order of build
/// 0's symbols; partial ones after them.
pub fn pair_by_key<K: Ord + Clone>(keys: &[Vec<K>]) -> Pairing {
    let builds = keys.len();
    // key -> per build, the indices with that key in order.
    let mut groups: BTreeMap<K, Vec<Vec<usize>>> = BTreeMap::new();
    for (v, list) in keys.iter().enumerate() {
        for (i, k) in list.iter().enumerate() {
            groups
                .entry(k.clone())
                .or_insert_with(|| vec![Vec::new(); builds])[v]
                .push(i);
        }
    }
    let mut complete = Vec::new();
    let mut partial = Vec::new();
    for per_build in groups.values() {
        let most = per_build.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..most {
            let tuple: Vec<Option<usize>> = per_build.iter().map(|l| l.get(k).copied()).collect();
            if tuple.iter().all(Option::is_some) {
                complete.push(tuple.into_iter().flatten().collect::<Vec<_>>());
            } else {
                partial.push(tuple);
            }
        }
    }
    complete.sort_by_key(|t: &Vec<usize>| t.first().copied());
    partial.sort_by_key(|t| {
        t.iter()
            .map(|i| i.unwrap_or(usize::MAX))
            .collect::<Vec<_>>()
    });
    Pairing { complete, partial }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| pairing_key(n, ".text")).collect()
    }

    #[test]
    fn pairs_clones_whose_numbers_differ() {
        let p = pair_by_key(&[
            keys(&[
                "a",
                "b.constprop.0",
                "b.constprop.1",
                "c.isra.0",
                "c.isra.0.cold",
            ]),
            keys(&[
                "a",
                "b.constprop.3",
                "b.constprop.4",
                "c.isra.2",
                "c.isra.2.cold",
            ]),
            keys(&[
                "a",
                "b.constprop.7",
                "b.constprop.5",
                "c.isra.0",
                "c.isra.0.cold",
            ]),
        ]);
        assert_eq!(
            p.complete,
            [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]]
        );
        assert!(p.partial.is_empty());
    }

    #[test]
    fn reports_symbols_missing_from_some_builds() {
        let p = pair_by_key(&[
            keys(&["a", "b.part.0"]),
            keys(&["a"]),
            keys(&["a", "b.part.1"]),
        ]);
        assert_eq!(p.complete, [[0, 0, 0]]);
        assert_eq!(p.partial, [[Some(1), None, Some(1)]]);
    }

    #[test]
    fn pairs_duplicate_names_in_order() {
        let p = pair_by_key(&[keys(&["f", "g", "f"]), keys(&["f", "f", "g"])]);
        assert_eq!(p.complete, [[0, 0], [1, 2], [2, 1]]);
    }

    #[test]
    fn pairs_on_section_too() {
        let p = pair_by_key(&[
            vec![pairing_key("f", ".text"), pairing_key("f", ".init.text")],
            vec![pairing_key("f", ".init.text"), pairing_key("f", ".text")],
        ]);
        assert_eq!(p.complete, [[0, 1], [1, 0]]);
    }
}
