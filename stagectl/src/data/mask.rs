//! Deterministic masking of fixture values. Pure.
//!
//! A masked value depends only on (seed, rule, raw value) — not on the table or column — so
//! the same e-mail address masks to the same fake address everywhere and joins survive.
//! HMAC-SHA256 keyed by the seed makes the mapping one-way for anyone without the seed.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::manifest::MaskRule;

const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Alice", "Amara", "Ana", "Ben", "Carla", "Chen", "Dara", "David", "Elena", "Emil", "Farah", "Felix", "Grace", "Hana",
    "Ivan", "Jonas", "Kai", "Lea", "Luis", "Maya", "Mina", "Noah", "Omar", "Priya", "Rosa", "Sami", "Tara", "Theo", "Uma", "Yara",
];
const LAST_NAMES: &[&str] = &[
    "Abe", "Berg", "Costa", "Diaz", "Evans", "Fischer", "Garcia", "Haas", "Ito", "Jansen", "Kim", "Larsen", "Moreau", "Novak", "Okafor",
    "Park", "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Vogel", "Weber", "Xu", "Young", "Zhou",
];

/// Masks values by `table.column` rules.
#[derive(Debug, Clone)]
pub struct Masker {
    seed: String,
    rules: BTreeMap<(String, String), MaskRule>,
}

impl Masker {
    /// `rules` are keyed `table.column`.
    pub fn new(seed: &str, rules: &BTreeMap<String, MaskRule>) -> Self {
        let rules = rules.iter().filter_map(|(k, r)| k.split_once('.').map(|(t, c)| ((t.to_string(), c.to_string()), r.clone()))).collect();
        Masker { seed: seed.to_string(), rules }
    }

    pub fn rule(&self, table: &str, column: &str) -> Option<&MaskRule> {
        self.rules.get(&(table.to_string(), column.to_string()))
    }

    pub fn has_rules_for(&self, table: &str) -> bool {
        self.rules.keys().any(|(t, _)| t == table)
    }

    fn digest(&self, rule: &str, value: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.seed.as_bytes()).expect("HMAC takes any key length");
        mac.update(rule.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The masked value; `None` means SQL NULL.
    pub fn apply(&self, rule: &MaskRule, value: &str) -> Option<String> {
        let d = |name: &str| self.digest(name, value);
        let n = |bytes: &[u8]| u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        match rule {
            MaskRule::Keep => Some(value.to_string()),
            MaskRule::Null => None,
            MaskRule::Fixed(v) => Some(v.clone()),
            MaskRule::Hash => Some(hex::encode(&d("hash")[..8])),
            MaskRule::Email => Some(format!("user-{}@example.com", hex::encode(&d("email")[..5]))),
            MaskRule::Name => {
                let h = d("name");
                Some(format!(
                    "{} {}-{}",
                    FIRST_NAMES[(n(&h[..8]) % FIRST_NAMES.len() as u64) as usize],
                    LAST_NAMES[(n(&h[8..16]) % LAST_NAMES.len() as u64) as usize],
                    &hex::encode(&h[16..18])
                ))
            }
            MaskRule::Phone => Some(format!("+1-555-{:07}", n(&d("phone")[..8]) % 10_000_000)),
        }
    }

    /// Whether a stored value looks like something this rule produced (or is empty/NULL).
    pub fn looks_masked(rule: &MaskRule, value: Option<&str>) -> bool {
        let Some(v) = value else { return true };
        match rule {
            MaskRule::Keep => true,
            MaskRule::Null => v.is_empty(),
            MaskRule::Fixed(f) => v == f,
            MaskRule::Hash => v.len() == 16 && v.chars().all(|c| c.is_ascii_hexdigit()),
            MaskRule::Email => v.starts_with("user-") && v.ends_with("@example.com"),
            MaskRule::Name => {
                let mut parts = v.splitn(2, ' ');
                let first = parts.next().unwrap_or("");
                let rest = parts.next().unwrap_or("");
                FIRST_NAMES.contains(&first)
                    && rest.rsplit_once('-').is_some_and(|(last, tag)| LAST_NAMES.contains(&last) && tag.len() == 4)
            }
            MaskRule::Phone => v.starts_with("+1-555-") && v.len() == 14,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(seed: &str) -> Masker {
        let rules = BTreeMap::from([("users.email".to_string(), MaskRule::Email), ("orders.customer_email".to_string(), MaskRule::Email)]);
        Masker::new(seed, &rules)
    }

    #[test]
    fn masking_is_deterministic_per_seed_and_consistent_across_columns() {
        let m = masker("s1");
        let a = m.apply(&MaskRule::Email, "jane@corp.com").unwrap();
        assert_eq!(a, m.apply(&MaskRule::Email, "jane@corp.com").unwrap());
        // Same raw value in another table's column: same masked value (joins survive).
        let r1 = m.rule("users", "email").unwrap();
        let r2 = m.rule("orders", "customer_email").unwrap();
        assert_eq!(m.apply(r1, "jane@corp.com"), m.apply(r2, "jane@corp.com"));
        assert_ne!(a, m.apply(&MaskRule::Email, "john@corp.com").unwrap());
        assert_ne!(a, masker("s2").apply(&MaskRule::Email, "jane@corp.com").unwrap(), "the seed matters");
        assert!(!a.contains("jane") && !a.contains("corp"));
    }

    #[test]
    fn every_rule_produces_what_the_scanner_accepts_and_raw_values_are_flagged() {
        let m = masker("s");
        for (rule, raw) in [
            (MaskRule::Email, "jane@corp.com"),
            (MaskRule::Name, "Jane Q. Public"),
            (MaskRule::Phone, "+44 20 7946 0018"),
            (MaskRule::Hash, "123-45-6789"),
            (MaskRule::Fixed("NL".into()), "Germany"),
        ] {
            let masked = m.apply(&rule, raw);
            assert!(Masker::looks_masked(&rule, masked.as_deref()), "{rule:?} → {masked:?}");
            assert!(!Masker::looks_masked(&rule, Some(raw)), "raw {raw} must look unmasked for {rule:?}");
        }
        assert_eq!(m.apply(&MaskRule::Null, "x"), None);
        assert_eq!(m.apply(&MaskRule::Keep, "x").as_deref(), Some("x"));
    }
}
