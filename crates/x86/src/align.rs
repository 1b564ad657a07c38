//! Optimal alignment of two sequences (a longest common subsequence), by Myers' O((N+M)D)
//! algorithm in linear space.
//!
//! Used on instruction [shapes](crate::Shape): two builds of a function differ in a handful of
//! places, so D is small and the alignment is near-linear even for functions of thousands of
//! instructions. Unlike a greedy match, the result is a longest common subsequence: nothing
//! aligns out of order, and an inserted instruction never shifts everything after it.

use std::ops::Range;

/// Which elements of `a` and `b` are aligned with each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    a_to_b: Vec<Option<u32>>,
    b_to_a: Vec<Option<u32>>,
}

/// A maximal run of unaligned elements: `a[a]` was replaced by `b[b]` (either may be empty,
/// not both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The unaligned elements of `a`.
    pub a: Range<usize>,
    /// The unaligned elements of `b`.
    pub b: Range<usize>,
}

impl Alignment {
    /// Aligns `a` with `b` on equality.
    pub fn of_slices<T: PartialEq>(a: &[T], b: &[T]) -> Self {
        Self::compute(a.len(), b.len(), |i, j| a[i] == b[j])
    }

    /// Aligns sequences of lengths `n` and `m`, where `eq(i, j)` says whether `a[i]` may align
    /// with `b[j]`. The number of aligned pairs is maximal.
    pub fn compute(n: usize, m: usize, eq: impl Fn(usize, usize) -> bool) -> Self {
        let mut out = Alignment {
            a_to_b: vec![None; n],
            b_to_a: vec![None; m],
        };
        let mut scratch = Vec::new();
        out.align(&eq, 0..n, 0..m, &mut scratch);
        out
    }

    /// The element of `b` aligned with `a[i]`.
    pub fn b_of(&self, i: usize) -> Option<usize> {
        self.a_to_b.get(i).copied().flatten().map(|j| j as usize)
    }

    /// The element of `a` aligned with `b[j]`.
    pub fn a_of(&self, j: usize) -> Option<usize> {
        self.b_to_a.get(j).copied().flatten().map(|i| i as usize)
    }

    /// The aligned pairs `(i, j)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.a_to_b
            .iter()
            .enumerate()
            .filter_map(|(i, j)| j.map(|j| (i, j as usize)))
    }

    /// How many pairs are aligned.
    pub fn len(&self) -> usize {
        self.a_to_b.iter().flatten().count()
    }

    /// Whether nothing is aligned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of insertions plus deletions (Myers' D).
    pub fn distance(&self) -> usize {
        self.a_to_b.len() + self.b_to_a.len() - 2 * self.len()
    }

    /// The unaligned runs, in order.
    pub fn hunks(&self) -> Vec<Hunk> {
        let mut hunks = Vec::new();
        let (mut i, mut j) = (0, 0);
        let mut push = |a: Range<usize>, b: Range<usize>| {
            if !a.is_empty() || !b.is_empty() {
                hunks.push(Hunk { a, b });
            }
        };
        for (pi, pj) in self.pairs() {
            push(i..pi, j..pj);
            i = pi + 1;
            j = pj + 1;
        }
        push(i..self.a_to_b.len(), j..self.b_to_a.len());
        hunks
    }

    fn pair(&mut self, i: usize, j: usize) {
        self.a_to_b[i] = Some(j as u32);
        self.b_to_a[j] = Some(i as u32);
    }

    /// Divide and conquer on the middle snake (Myers 1986, section 4b).
    fn align(
        &mut self,
        eq: &impl Fn(usize, usize) -> bool,
        mut a: Range<usize>,
        mut b: Range<usize>,
        scratch: &mut Vec<isize>,
    ) {
        // Common prefix and suffix cost nothing and make the usual case (few edits) linear.
        while !a.is_empty() && !b.is_empty() && eq(a.start, b.start) {
            self.pair(a.start, b.start);
            a.start += 1;
            b.start += 1;
        }
        while !a.is_empty() && !b.is_empty() && eq(a.end - 1, b.end - 1) {
            self.pair(a.end - 1, b.end - 1);
            a.end -= 1;
            b.end -= 1;
        }
        if a.is_empty() || b.is_empty() {
            return;
        }
        let (x0, y0, x1, y1) = middle_snake(eq, a.clone(), b.clone(), scratch);
        self.align(eq, a.start..x0, b.start..y0, scratch);
        for k in 0..(x1 - x0) {
            self.pair(x0 + k, y0 + k);
        }
        self.align(eq, x1..a.end, y1..b.end, scratch);
    }
}

/// Finds the middle snake of an optimal edit path from `(a.start, b.start)` to
/// `(a.end, b.end)`: returns its start and end `(x0, y0, x1, y1)` in absolute indices.
///
/// Both ends are non-empty and have no common prefix or suffix, so D >= 1 and the two halves
/// around the snake are strictly smaller problems.
fn middle_snake(
    eq: &impl Fn(usize, usize) -> bool,
    a: Range<usize>,
    b: Range<usize>,
    scratch: &mut Vec<isize>,
) -> (usize, usize, usize, usize) {
    let n = a.len() as isize;
    let m = b.len() as isize;
    let delta = n - m;
    let odd = delta & 1 != 0;
    let max = (n + m + 1) / 2;
    // Diagonals -max-1..=max+1 for both directions.
    let width = (2 * max + 3) as usize;
    scratch.clear();
    scratch.resize(2 * width, 0);
    let (vf, vb) = scratch.split_at_mut(width);
    let at = |k: isize| (k + max + 1) as usize;
    // Forward: x on diagonal k = x - y. Backward, in reversed coordinates u = n - x,
    // v = m - y: u on diagonal c = u - v = delta - k.
    let fwd_eq = |x: isize, y: isize| eq(a.start + x as usize, b.start + y as usize);
    let bwd_eq = |u: isize, v: isize| {
        eq(
            a.start + (n - u - 1) as usize,
            b.start + (m - v - 1) as usize,
        )
    };
    for d in 0..=max {
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && vf[at(k - 1)] < vf[at(k + 1)]) {
                vf[at(k + 1)]
            } else {
                vf[at(k - 1)] + 1
            };
            let mut y = x - k;
            let (sx, sy) = (x, y);
            while x < n && y < m && fwd_eq(x, y) {
                x += 1;
                y += 1;
            }
            vf[at(k)] = x;
            let c = delta - k;
            if odd && (-(d - 1)..=(d - 1)).contains(&c) && x + vb[at(c)] >= n {
                return (
                    a.start + sx as usize,
                    b.start + sy as usize,
                    a.start + x as usize,
                    b.start + y as usize,
                );
            }
            k += 2;
        }
        let mut c = -d;
        while c <= d {
            let mut u = if c == -d || (c != d && vb[at(c - 1)] < vb[at(c + 1)]) {
                vb[at(c + 1)]
            } else {
                vb[at(c - 1)] + 1
            };
            let mut v = u - c;
            let (su, sv) = (u, v);
            while u < n && v < m && bwd_eq(u, v) {
                u += 1;
                v += 1;
            }
            vb[at(c)] = u;
            let k = delta - c;
            if !odd && (-d..=d).contains(&k) && vf[at(k)] + u >= n {
                return (
                    a.start + (n - u) as usize,
                    b.start + (m - v) as usize,
                    a.start + (n - su) as usize,
                    b.start + (m - sv) as usize,
                );
            }
            c += 2;
        }
    }
    unreachable!("Myers' search always meets by D = ceil((N+M)/2)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
        let mut row = vec![0usize; b.len() + 1];
        for x in a {
            let mut diag = 0;
            for (j, y) in b.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
                diag = up;
            }
        }
        row[b.len()]
    }

    fn check<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Alignment {
        let al = Alignment::of_slices(a, b);
        let mut last = None;
        for (i, j) in al.pairs() {
            assert_eq!(a[i], b[j], "aligned unequal elements");
            if let Some((pi, pj)) = last {
                assert!(i > pi && j > pj, "pairs out of order");
            }
            assert_eq!(al.a_of(j), Some(i));
            last = Some((i, j));
        }
        assert_eq!(al.len(), lcs_len(a, b), "not a longest common subsequence");
        al
    }

    #[test]
    fn aligns_around_a_replacement() {
        let al = check(b"abcXdef", b"abcYYdef");
        assert_eq!(al.hunks(), [Hunk { a: 3..4, b: 3..5 }]);
        assert_eq!(al.distance(), 3);
    }

    #[test]
    fn aligns_insertions_at_the_ends() {
        let al = check(b"abc", b"xabcy");
        assert_eq!(
            al.hunks(),
            [Hunk { a: 0..0, b: 0..1 }, Hunk { a: 3..3, b: 4..5 }]
        );
        let al = check(b"", b"xy");
        assert_eq!(al.hunks(), [Hunk { a: 0..0, b: 0..2 }]);
        assert!(check::<u8>(b"", b"").hunks().is_empty());
    }

    #[test]
    fn prefers_no_crossing_over_greedy_matches() {
        // A greedy matcher pairs the first `c` with the last; an LCS keeps `abde` in order.
        let al = check(b"cabde", b"abdec");
        assert_eq!(al.len(), 4);
        assert_eq!(al.b_of(0), None);
        assert_eq!(al.b_of(1), Some(0));
    }

    #[test]
    fn aligns_unrolled_loops() {
        // An unrolled body repeated 2 vs 4 times: the extra copies are one insertion.
        let a = b"pLLLLq";
        let b = b"pLLLLLLLLq";
        let al = check(a, b);
        assert_eq!(al.hunks().len(), 1);
        assert_eq!(al.distance(), 4);
    }

    proptest! {
        #[test]
        fn is_a_longest_common_subsequence(
            a in proptest::collection::vec(0u8..4, 0..60),
            b in proptest::collection::vec(0u8..4, 0..60),
        ) {
            check(&a, &b);
        }

        #[test]
        fn aligns_a_sequence_with_its_edits(
            a in proptest::collection::vec(0u8..16, 0..200),
            edits in proptest::collection::vec((0usize..200, 0u8..16, any::<bool>()), 0..8),
        ) {
            let mut b = a.clone();
            for (at, v, insert) in edits {
                let at = at % (b.len() + 1);
                if insert || at == b.len() { b.insert(at, v) } else { b.remove(at); }
            }
            check(&a, &b);
        }
    }
}
