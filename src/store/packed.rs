//! Strings held one after another in one buffer, for uploads of many tiny
//! records. A body within the limit may hold millions of records of a few
//! bytes; a `String` each costs its header (24 bytes) and an allocation of
//! at least 32, several times the text itself. Here a string costs its
//! bytes and its end offset.

/// A list of strings in one text buffer, each found by where it ends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackedStrings {
    text: String,
    /// Where each string ends in `text`; the next one starts there.
    ends: Vec<usize>,
}

impl PackedStrings {
    pub fn new() -> PackedStrings {
        PackedStrings::default()
    }

    pub fn push(&mut self, string: &str) {
        self.text.push_str(string);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The string at `index`; panics past the end, as a slice does.
    pub fn get(&self, index: usize) -> &str {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        &self.text[start..self.ends[index]]
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let string = &self.text[start..end];
            start = end;
            string
        })
    }
}

impl<'a> FromIterator<&'a str> for PackedStrings {
    fn from_iter<I: IntoIterator<Item = &'a str>>(strings: I) -> PackedStrings {
        let mut packed = PackedStrings::new();
        for string in strings {
            packed.push(string);
        }
        packed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_as_pushed_empty_ones_too() {
        let strings = ["k1", "", "é→", "{\"a\":1}", ""];
        let packed: PackedStrings = strings.into_iter().collect();
        assert_eq!(packed.len(), strings.len());
        assert!(!packed.is_empty());
        for (index, string) in strings.iter().enumerate() {
            assert_eq!(packed.get(index), *string);
        }
        assert_eq!(packed.iter().collect::<Vec<_>>(), strings);
        assert_eq!(packed.iter().len(), strings.len());
        let empty = PackedStrings::new();
        assert!(empty.is_empty() && empty.iter().next().is_none());
    }

    #[test]
    #[should_panic]
    fn reading_past_the_end_panics() {
        let packed: PackedStrings = ["a"].into_iter().collect();
        packed.get(1);
    }
}
