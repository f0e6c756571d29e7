//! Loose-version ordering of project version strings.
//!
//! Scrapyd clients upload versions such as `1.9`, `1.10`, `r23`, `r23-master`,
//! a Unix timestamp or a git hash, and expect `listversions.json` to list them
//! oldest first with the current one last. distutils' `LooseVersion` gave the
//! order people rely on (`1.9 < 1.10`, `r9 < r23`), but it raises on some
//! inputs (`1` against `a`) and calls `1.0` and `1.00` equal. The order here
//! follows LooseVersion where LooseVersion works and is total everywhere:
//! two strings compare `Equal` only when they are identical.

use std::cmp::Ordering;

/// Total order on version strings, like distutils' LooseVersion but total.
///
/// Each string is split into runs of ASCII digits and runs of other
/// characters, with `.` acting as a separator that is dropped (`1.10` is
/// `[1, 10]`, `r23-master` is `["r", 23, "-master"]`). Components compare
/// pairwise: numbers numerically (of any length), texts by bytes, and a number
/// sorts before a text. A list that is a prefix of another sorts first. When
/// the components are all equal (`1.0` against `1..0` or `01`-style leading
/// zeros) the raw strings decide, so the order is total.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut a_components = Components::new(a);
    let mut b_components = Components::new(b);
    loop {
        match (a_components.next(), b_components.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(a_component), Some(b_component)) => {
                let order = a_component.cmp(&b_component);
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// One piece of a version string. The variant order is the sort order: a
/// number sorts before a text at the same position, as in LooseVersion
/// (where it was Python 2's int-before-str rule).
#[derive(Debug, PartialEq, Eq)]
enum Component<'a> {
    /// ASCII digits with the leading zeros removed, so that equal values have
    /// equal digits and a longer run is a larger number.
    Number(&'a [u8]),
    /// A run of anything but ASCII digits and `.`, compared byte by byte
    /// (which for UTF-8 is code point order).
    Text(&'a [u8]),
}

impl Ord for Component<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // Comparing length first then digits orders numbers of any size
            // without parsing them, so no value can overflow.
            (Component::Number(a), Component::Number(b)) => {
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            }
            (Component::Text(a), Component::Text(b)) => a.cmp(b),
            (Component::Number(_), Component::Text(_)) => Ordering::Less,
            (Component::Text(_), Component::Number(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Component<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Splits a version string into components lazily, so comparing two
/// versions allocates nothing.
struct Components<'a> {
    rest: &'a [u8],
}

impl<'a> Components<'a> {
    fn new(version: &'a str) -> Self {
        // Digits and `.` are ASCII and never occur inside a multi-byte UTF-8
        // sequence, so splitting the bytes never cuts a character in two.
        Components {
            rest: version.as_bytes(),
        }
    }
}

impl<'a> Iterator for Components<'a> {
    type Item = Component<'a>;

    fn next(&mut self) -> Option<Component<'a>> {
        // `.` only separates; `1..2` is `[1, 2]` like `1.2`.
        let start = self.rest.iter().position(|&byte| byte != b'.')?;
        let rest = &self.rest[start..];
        let first_is_digit = rest.first()?.is_ascii_digit();
        let run_len = rest
            .iter()
            .position(|&byte| {
                if first_is_digit {
                    !byte.is_ascii_digit()
                } else {
                    byte.is_ascii_digit() || byte == b'.'
                }
            })
            .unwrap_or(rest.len());
        let (run, after) = rest.split_at(run_len);
        self.rest = after;
        if first_is_digit {
            let significant = run
                .iter()
                .position(|&digit| digit != b'0')
                .unwrap_or(run.len());
            Some(Component::Number(&run[significant..]))
        } else {
            Some(Component::Text(run))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(versions: &[&str]) -> Vec<String> {
        let mut versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        versions.sort_by(|a, b| compare_versions(a, b));
        versions
    }

    #[test]
    fn numbers_compare_as_numbers_not_text() {
        assert_eq!(compare_versions("1.9", "1.10"), Ordering::Less);
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1700000000", "1700000001"), Ordering::Less);
    }

    #[test]
    fn revisions_order_by_their_number() {
        assert_eq!(compare_versions("r9", "r23"), Ordering::Less);
        assert_eq!(compare_versions("r23", "r100"), Ordering::Less);
        assert_eq!(compare_versions("r9", "r100"), Ordering::Less);
    }

    #[test]
    fn a_number_sorts_before_text_at_the_same_position() {
        assert_eq!(compare_versions("10", "r1"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1.a"), Ordering::Less);
    }

    #[test]
    fn a_prefix_sorts_first() {
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("r23", "r23-master"), Ordering::Less);
        assert_eq!(compare_versions("", "0"), Ordering::Less);
    }

    #[test]
    fn sort_puts_the_oldest_first_and_the_current_last() {
        assert_eq!(
            sorted(&["1.10", "r23", "1.9", "r9"]),
            ["1.9", "1.10", "r9", "r23"]
        );
    }

    #[test]
    fn numbers_longer_than_u64_compare_numerically() {
        let big = "123456789012345678901234567890";
        let bigger = "123456789012345678901234567891";
        let longer = "1234567890123456789012345678900";
        assert_eq!(compare_versions(big, bigger), Ordering::Less);
        assert_eq!(compare_versions(bigger, longer), Ordering::Less);
        assert_eq!(
            compare_versions("99999999999999999999", longer),
            Ordering::Less
        );
        assert_eq!(
            compare_versions(&format!("1.{big}"), &format!("1.{bigger}")),
            Ordering::Less
        );
    }

    #[test]
    fn equal_numbers_with_different_spelling_still_differ() {
        // Leading zeros and repeated dots do not change the components, so
        // the raw strings decide; the point is that the answer is not Equal.
        assert_ne!(compare_versions("01", "1"), Ordering::Equal);
        assert_ne!(compare_versions("1..2", "1.2"), Ordering::Equal);
        assert_ne!(compare_versions("1.0", "1.00"), Ordering::Equal);
        assert_eq!(compare_versions("01", "2"), Ordering::Less);
    }

    /// Strings chosen to hit every branch: empty, only dots, leading zeros,
    /// huge numbers, UUIDs, hashes, unicode and mixed runs.
    const TRICKY: &[&str] = &[
        "",
        ".",
        "..",
        "0",
        "00",
        "000",
        "01",
        "1",
        "1.",
        ".1",
        "1.0",
        "1.00",
        "1..0",
        "1.2",
        "1..2",
        "1.9",
        "1.10",
        "1.a",
        "1a",
        "a",
        "a1",
        "r9",
        "r23",
        "r23-master",
        "r100",
        "10",
        "1700000000",
        "1700000001",
        "123456789012345678901234567890",
        "0123456789012345678901234567890",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
        "deadbeef",
        "é",
        "1.é",
        "版本2",
        "-",
        "1-",
    ];

    #[test]
    fn equal_only_when_identical() {
        for a in TRICKY {
            for b in TRICKY {
                assert_eq!(
                    compare_versions(a, b) == Ordering::Equal,
                    a == b,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn order_is_antisymmetric() {
        for a in TRICKY {
            for b in TRICKY {
                assert_eq!(
                    compare_versions(a, b),
                    compare_versions(b, a).reverse(),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn order_is_transitive() {
        for a in TRICKY {
            for b in TRICKY {
                for c in TRICKY {
                    let a_b = compare_versions(a, b);
                    let b_c = compare_versions(b, c);
                    if a_b != Ordering::Greater && b_c != Ordering::Greater {
                        let a_c = compare_versions(a, c);
                        assert_ne!(a_c, Ordering::Greater, "{a:?} <= {b:?} <= {c:?}");
                        if a_b == Ordering::Less || b_c == Ordering::Less {
                            assert_eq!(a_c, Ordering::Less, "{a:?} <= {b:?} <= {c:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sorting_the_tricky_list_is_stable_under_reshuffling() {
        let forward = sorted(TRICKY);
        let mut reversed: Vec<&str> = TRICKY.to_vec();
        reversed.reverse();
        assert_eq!(forward, sorted(&reversed));
    }
}
