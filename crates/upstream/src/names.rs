//! The names upstream tools are offered under: `<provider>_<tool>`, with a connection label between
//! when a tenant holds two connections of one provider (`google_a1b2c3_send_email`), within the
//! specification's rules for tool names (1 to 128 characters of `A-Z a-z 0-9 _ - .`). The same
//! connections with the same tools always give the same names in the same order; a collision (two
//! names that only differ in characters replaced here) is resolved by a numbered suffix, first
//! come first served in that order.

use std::collections::HashSet;

/// The longest tool name the specification allows.
pub const MAX_NAME: usize = 128;

/// A tool-name part: characters outside the allowed set become `_`.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect()
}

/// A short, stable label for a connection (the tail of its id).
pub fn connection_label(connection_id: &str) -> String {
    let tail: String = connection_id.chars().rev().filter(char::is_ascii_alphanumeric).take(6).collect();
    tail.chars().rev().collect::<String>().to_ascii_lowercase()
}

/// FNV-1a, for a short deterministic suffix (not a security boundary: names are checked against
/// the listing, never trusted).
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// Hands out names, unique among those handed out so far.
#[derive(Default)]
pub struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    /// Reserves names already in use (the gateway's own tools).
    pub fn reserve<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.taken.extend(names.into_iter().map(str::to_owned));
    }

    /// The name of `tool` of a connection to `provider` (`label`: set when the tenant holds more
    /// than one connection of that provider).
    pub fn name(&mut self, provider: &str, label: Option<&str>, tool: &str) -> String {
        let base = match label {
            Some(l) => format!("{}_{}_{}", clean(provider), clean(l), clean(tool)),
            None => format!("{}_{}", clean(provider), clean(tool)),
        };
        let mut name = fit(&base, &base);
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            let suffixed = format!("{base}_{n}");
            name = fit(&suffixed, &format!("{base}#{n}"));
            n += 1;
        }
        name
    }
}

/// `name` if it fits, else its head and a hash of `whole` (so long names stay distinct).
fn fit(name: &str, whole: &str) -> String {
    if name.len() <= MAX_NAME {
        return name.to_owned();
    }
    let hash = short_hash(whole);
    let head: String = name.chars().take(MAX_NAME - hash.len() - 1).collect();
    format!("{head}_{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(n: &str) -> bool {
        (1..=MAX_NAME).contains(&n.len())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    }

    #[test]
    fn names_are_namespaced_and_within_the_rules() {
        let mut n = Namer::default();
        assert_eq!(n.name("github", None, "create_issue"), "github_create_issue");
        assert_eq!(n.name("google", Some("a1b2c3"), "send email"), "google_a1b2c3_send_email");
        let long = n.name("notion", None, &"x".repeat(300));
        assert!(valid(&long) && long.len() == MAX_NAME, "{long}");
        assert!(valid(&n.name("slack", None, "post/message:é")));
    }

    #[test]
    fn collisions_get_a_numbered_suffix_in_order() {
        let mut n = Namer::default();
        n.reserve(["whoami"]);
        assert_eq!(n.name("acme", None, "a b"), "acme_a_b");
        assert_eq!(n.name("acme", None, "a/b"), "acme_a_b_2");
        assert_eq!(n.name("acme", None, "a:b"), "acme_a_b_3");
        // Long names that only differ past the cut stay distinct.
        let (x, y) = (
            n.name("acme", None, &format!("{}1", "y".repeat(200))),
            n.name("acme", None, &format!("{}2", "y".repeat(200))),
        );
        assert_ne!(x, y);
        assert!(valid(&x) && valid(&y));
    }

    #[test]
    fn the_same_input_gives_the_same_names() {
        let run = || {
            let mut n = Namer::default();
            ["t1", "t 1", "t2"].iter().map(|t| n.name("p", Some("abc123"), t)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert_eq!(connection_label("conn_01HZX9ABCDEF"), "abcdef");
    }
}
