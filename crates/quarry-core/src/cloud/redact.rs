//! Redaction of personal data before text is sent to a provider: e-mail
//! addresses, phone numbers, payment card numbers (Luhn-checked) and national
//! ID numbers (US SSN, Canadian SIN) become placeholders such as `[EMAIL_1]`;
//! the placeholders in the provider's answer are turned back into the
//! originals before the user sees it.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// Kinds of personal data, in the order they are looked for.
const KINDS: &[&str] = &["EMAIL", "CARD", "SSN", "SIN", "PHONE"];

static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("redaction pattern");
    vec![
        (
            "EMAIL",
            re(r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b"),
        ),
        // 13 to 19 digits, optionally grouped by spaces or dashes.
        ("CARD", re(r"\b\d(?:[ \-]?\d){12,18}\b")),
        ("SSN", re(r"\b\d{3}-\d{2}-\d{4}\b")),
        ("SIN", re(r"\b\d{3}[ \-]\d{3}[ \-]\d{3}\b")),
        (
            "PHONE",
            re(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)|\b\d{2,4})[ .\-]\d{3,4}[ .\-]\d{3,4}\b"),
        ),
    ]
});

/// Whether a digit string passes the Luhn check (card numbers do).
fn luhn(digits: &str) -> bool {
    let ds: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if ds.len() < 13 {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Replaces personal data by placeholders and remembers the originals.
#[derive(Debug, Default)]
pub struct Redactor {
    by_original: HashMap<String, String>,
    by_placeholder: HashMap<String, String>,
    counts: BTreeMap<String, usize>,
}

/// What was redacted: placeholders per kind (never the originals).
#[derive(ts_rs::TS, Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RedactionSummary {
    /// Distinct values replaced, per kind (`EMAIL`, `PHONE`, `CARD`, `SSN`, `SIN`).
    pub counts: BTreeMap<String, usize>,
}

impl Redactor {
    /// A redactor with no placeholders yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `text` with personal data replaced; the same value gets the same
    /// placeholder everywhere it appears.
    pub fn redact(&mut self, text: &str) -> String {
        let mut out = text.to_string();
        for kind in KINDS {
            let re = &PATTERNS.iter().find(|(k, _)| k == kind).expect("kind").1;
            let mut result = String::with_capacity(out.len());
            let mut last = 0;
            for m in re.find_iter(&out) {
                let value = m.as_str();
                if *kind == "CARD" && !luhn(value) {
                    continue;
                }
                result.push_str(&out[last..m.start()]);
                result.push_str(&self.placeholder(kind, value));
                last = m.end();
            }
            result.push_str(&out[last..]);
            out = result;
        }
        out
    }

    fn placeholder(&mut self, kind: &str, value: &str) -> String {
        if let Some(p) = self.by_original.get(value) {
            return p.clone();
        }
        let n = self.counts.entry(kind.to_string()).or_insert(0);
        *n += 1;
        let p = format!("[{kind}_{n}]");
        self.by_original.insert(value.to_string(), p.clone());
        self.by_placeholder.insert(p.clone(), value.to_string());
        p
    }

    /// `text` with every known placeholder turned back into its original.
    pub fn restore(&self, text: &str) -> String {
        if self.by_placeholder.is_empty() {
            return text.to_string();
        }
        static PLACEHOLDER: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\[[A-Z]+_\d+\]").expect("placeholder pattern"));
        PLACEHOLDER
            .replace_all(text, |c: &regex::Captures| {
                let p = &c[0];
                self.by_placeholder
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| p.to_string())
            })
            .into_owned()
    }

    /// Placeholders made so far, per kind.
    pub fn summary(&self) -> RedactionSummary {
        RedactionSummary {
            counts: self.counts.clone(),
        }
    }
}

/// Restores placeholders in streamed text, where a placeholder may arrive
/// split across tokens: text from an unclosed `[` is held back until it can
/// be decided.
#[derive(Debug, Default)]
pub struct StreamRestorer {
    pending: String,
}

impl StreamRestorer {
    /// Feed a piece; returns what can be shown now.
    pub fn push(&mut self, redactor: &Redactor, piece: &str) -> String {
        self.pending.push_str(piece);
        let hold_from = match self.pending.rfind('[') {
            Some(i) if !self.pending[i..].contains(']') && self.pending.len() - i < 24 => i,
            _ => self.pending.len(),
        };
        let ready: String = self.pending[..hold_from].to_string();
        self.pending.drain(..hold_from);
        redactor.restore(&ready)
    }

    /// Whatever is still held back, restored.
    pub fn finish(&mut self, redactor: &Redactor) -> String {
        redactor.restore(&std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "Contact jane.doe@example.com or +1 (555) 123-4567, card 4111 1111 1111 1111, \
SSN 123-45-6789, SIN 046 454 286. Order 1234567890123 is not a card; 2023-01-15 is a date. \
Jane again: jane.doe@example.com.";

    #[test]
    fn personal_data_becomes_placeholders_and_comes_back() {
        let mut r = Redactor::new();
        let sent = r.redact(TEXT);
        for secret in [
            "jane.doe@example.com",
            "555",
            "4111 1111 1111 1111",
            "123-45-6789",
            "046 454 286",
        ] {
            assert!(!sent.contains(secret), "{secret} leaked: {sent}");
        }
        assert!(sent.contains("[EMAIL_1]"), "{sent}");
        assert_eq!(
            sent.matches("[EMAIL_1]").count(),
            2,
            "same value, same placeholder"
        );
        assert!(sent.contains("[CARD_1]") && sent.contains("[SSN_1]") && sent.contains("[SIN_1]"));
        assert!(sent.contains("[PHONE_1]"), "{sent}");
        assert!(
            sent.contains("1234567890123"),
            "not Luhn-valid, kept: {sent}"
        );
        assert!(sent.contains("2023-01-15"), "dates are kept: {sent}");
        assert_eq!(r.restore(&sent), TEXT);
        let s = r.summary();
        assert_eq!(s.counts["EMAIL"], 1);
        assert_eq!(s.counts["CARD"], 1);
    }

    #[test]
    fn streamed_placeholders_split_across_tokens_are_restored() {
        let mut r = Redactor::new();
        let sent = r.redact("Write to bob@corp.example about it.");
        assert_eq!(sent, "Write to [EMAIL_1] about it.");
        let answer = "You can write to [EMAIL_1] [1]. Also [EMAIL_1].";
        let mut s = StreamRestorer::default();
        let mut shown = String::new();
        for piece in answer.as_bytes().chunks(3) {
            shown.push_str(&s.push(&r, std::str::from_utf8(piece).unwrap()));
        }
        shown.push_str(&s.finish(&r));
        assert_eq!(
            shown,
            "You can write to bob@corp.example [1]. Also bob@corp.example."
        );
    }

    #[test]
    fn luhn_accepts_real_card_numbers_only() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("5500 0000 0000 0004"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn("1234"));
    }
}
