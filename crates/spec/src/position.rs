//! Byte offsets (what `toml` spans hold) to the 1-based line and column a user sees.

use std::path::{Path, PathBuf};

/// File and position of an error or warning, ready to be spread into a variant's fields.
pub(crate) struct Loc {
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    pub(crate) col: usize,
}

/// Turns offsets into [`Loc`]s for one file.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    index: LineIndex<'a>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Locator {
            path,
            index: LineIndex::new(text),
        }
    }

    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    /// The file text, for the few checks that look at how a value was written.
    pub(crate) fn text(&self) -> &'a str {
        self.index.text
    }

    pub(crate) fn at(&self, offset: usize) -> Loc {
        let (line, col) = self.index.locate(offset);
        Loc {
            path: self.path.to_owned(),
            line,
            col,
        }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.index.locate(offset).0
    }
}

/// Line starts of one text, so each lookup is a binary search.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts; `starts[0] == 0`.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// 1-based `(line, column)` of a byte offset; the column counts characters, so a tab or a
    /// multi-byte character is one column. Offsets past the end clamp to the end.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        // Counting non-continuation bytes never slices the str, so an offset that falls inside
        // a character (from a damaged span) cannot panic.
        let col = self.text.as_bytes()[start..offset]
            .iter()
            .filter(|&&b| b & 0xc0 != 0x80)
            .count();
        (line, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn locates_lines_and_columns_from_one() {
        let index = LineIndex::new("ab\ncd\n\nx");
        assert_eq!(index.locate(0), (1, 1));
        assert_eq!(index.locate(1), (1, 2));
        assert_eq!(index.locate(2), (1, 3));
        assert_eq!(index.locate(3), (2, 1));
        assert_eq!(index.locate(6), (3, 1));
        assert_eq!(index.locate(7), (4, 1));
        assert_eq!(index.locate(99), (4, 2));
    }

    #[test]
    fn counts_characters_not_bytes() {
        let index = LineIndex::new("é\tx");
        assert_eq!(index.locate(2), (1, 2));
        assert_eq!(index.locate(3), (1, 3));
        // Inside the two-byte `é` (a damaged span): no panic.
        assert_eq!(index.locate(1).0, 1);
    }
}
