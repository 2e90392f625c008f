//! Checking an extracted value against the passages the model read: text
//! must appear in a passage (ignoring case, spacing and quote styles);
//! numbers and dates must equal one the passage writes in any common form
//! (`1,234.50`, `1.234,50`; `2024-03-12`, `12 March 2024`, `March 12, 2024`,
//! `12/03/2024`). A value found nowhere is unverified, never silently kept.
//! Choices and yes/no answers are judgements: verified only when the
//! passage says the choice in words.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::FieldType;

/// How a value was checked.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Written in the passage as it is.
    Quoted,
    /// Equal to a number or date the passage writes in another form.
    Normalised,
    /// A choice or yes/no the passage does not spell out: the model's judgement.
    Inferred,
    /// Not in any passage the model read.
    NotFound,
    /// The model left the field empty.
    Missing,
}

impl Check {
    /// Whether the value was found in its passage.
    pub fn verified(self) -> bool {
        matches!(self, Check::Quoted | Check::Normalised)
    }
}

/// The outcome for one value: how it was checked and the passage (index
/// into the passages given) that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// How.
    pub check: Check,
    /// Where: the passage the value was found in, else the best passage for
    /// the field.
    pub passage: Option<usize>,
}

/// Check `value` of a field of type `kind` against `passages`, trying them
/// in the order of `preferred` (the field's own search ranking) and then
/// the rest.
pub fn check(value: &Value, kind: &FieldType, passages: &[&str], preferred: &[usize]) -> Verdict {
    let order: Vec<usize> = preferred
        .iter()
        .copied()
        .filter(|&i| i < passages.len())
        .chain((0..passages.len()).filter(|i| !preferred.contains(i)))
        .collect();
    let fallback = order.first().copied();
    let found = |test: &dyn Fn(&str) -> Option<Check>| {
        order.iter().find_map(|&i| {
            test(passages[i]).map(|c| Verdict {
                check: c,
                passage: Some(i),
            })
        })
    };
    let verdict = match (value, kind) {
        (Value::Null, _) => Some(Verdict {
            check: Check::Missing,
            passage: None,
        }),
        (Value::Array(items), _) => check_list(items, passages, &order),
        (Value::Number(n), _) => n.as_f64().and_then(|x| found(&|p| number_in(x, p))),
        (Value::String(s), FieldType::Date) => found(&|p| date_in(s, p)),
        (Value::String(s), FieldType::Enum(_)) => found(&|p| text_in(s, p)).or(Some(Verdict {
            check: Check::Inferred,
            passage: fallback,
        })),
        (Value::String(s), _) => found(&|p| text_in(s, p)),
        (Value::Bool(_), _) => Some(Verdict {
            check: Check::Inferred,
            passage: fallback,
        }),
        (Value::Object(_), _) => None,
    };
    verdict.unwrap_or(Verdict {
        check: Check::NotFound,
        passage: fallback,
    })
}

/// Every item must be found; cited at the first item's passage.
fn check_list(items: &[Value], passages: &[&str], order: &[usize]) -> Option<Verdict> {
    if items.is_empty() {
        return Some(Verdict {
            check: Check::Missing,
            passage: None,
        });
    }
    let mut first = None;
    for item in items {
        let s = item.as_str()?;
        let at = order
            .iter()
            .copied()
            .find(|&i| text_in(s, passages[i]).is_some())?;
        first.get_or_insert(at);
    }
    Some(Verdict {
        check: Check::Quoted,
        passage: first,
    })
}

/// Text for comparison: lower case, one kind of quote and dash, single
/// spaces, no punctuation at the ends.
fn normalise(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '`' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2010}'..='\u{2015}' => '-',
            c if c.is_whitespace() => ' ',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    let single: Vec<&str> = mapped.split(' ').filter(|w| !w.is_empty()).collect();
    single
        .join(" ")
        .trim_matches(|c: char| c.is_ascii_punctuation() && c != '$' && c != '%')
        .to_string()
}

fn text_in(value: &str, passage: &str) -> Option<Check> {
    let v = normalise(value);
    (!v.is_empty() && normalise(passage).contains(&v)).then_some(Check::Quoted)
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[-+]?\d(?:[\d,.'\u{00A0} ]*\d)?").expect("a valid number pattern")
});

/// The values a written number can stand for: `1,234.5` and `1.234,5` and
/// `1 234` all as 1234(.5); several when the separators are ambiguous.
fn number_readings(written: &str) -> Vec<f64> {
    let compact: String = written
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{00A0}' | '\''))
        .collect();
    let mut out = Vec::new();
    let mut push = |s: String| {
        if let Ok(x) = s.parse::<f64>() {
            out.push(x);
        }
    };
    push(compact.replace(',', ""));
    push(compact.replace('.', "").replace(',', "."));
    push(compact.replace(',', "."));
    out
}

fn number_in(x: f64, passage: &str) -> Option<Check> {
    let same = |y: f64| (x - y).abs() <= 1e-9 * x.abs().max(1.0);
    for m in NUMBER.find_iter(passage) {
        let written = m.as_str().trim();
        // Also each space-separated part ("12 March 2024" holds 12 and 2024).
        let parts = std::iter::once(written).chain(written.split([' ', '\u{00A0}']));
        for part in parts {
            if number_readings(part).into_iter().any(same) {
                let quoted = part.parse::<f64>().is_ok_and(same);
                return Some(if quoted {
                    Check::Quoted
                } else {
                    Check::Normalised
                });
            }
        }
    }
    None
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_number(name: &str) -> Option<u32> {
    let n = name.to_lowercase();
    let n = n.get(..3)?;
    MONTHS.iter().position(|m| *m == n).map(|i| i as u32 + 1)
}

static DATES: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    let month = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";
    [
        // 2024-03-12, 2024/3/12, 2024.03.12
        Regex::new(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b"),
        // 12/03/2024, 3-12-24: day-month or month-day
        Regex::new(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})\b"),
        // 12 March 2024, 12th of March, 2024
        Regex::new(&format!(
            r"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{month},?\s+(\d{{4}})\b"
        )),
        // March 12, 2024
        Regex::new(&format!(
            r"(?i)\b{month}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b"
        )),
    ]
    .map(|r| r.expect("a valid date pattern"))
});

fn year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    Some(if y.len() == 2 { 2000 + n } else { n })
}

/// The dates a passage writes (ambiguous numeric forms give both readings).
fn dates_in(passage: &str) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let num = |s: &str| s.parse::<u32>().ok();
    let [iso, numeric, day_month, month_day] = &*DATES;
    for c in iso.captures_iter(passage) {
        out.extend(year(&c[1]).and_then(|y| NaiveDate::from_ymd_opt(y, num(&c[2])?, num(&c[3])?)));
    }
    for c in numeric.captures_iter(passage) {
        let (a, b) = (num(&c[1]), num(&c[2]));
        if let (Some(y), Some(a), Some(b)) = (year(&c[3]), a, b) {
            out.extend(NaiveDate::from_ymd_opt(y, b, a));
            out.extend(NaiveDate::from_ymd_opt(y, a, b));
        }
    }
    for c in day_month.captures_iter(passage) {
        out.extend((|| {
            NaiveDate::from_ymd_opt(year(&c[3])?, month_number(&c[2])?, num(&c[1])?)
        })());
    }
    for c in month_day.captures_iter(passage) {
        out.extend((|| {
            NaiveDate::from_ymd_opt(year(&c[3])?, month_number(&c[1])?, num(&c[2])?)
        })());
    }
    out
}

fn date_in(value: &str, passage: &str) -> Option<Check> {
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    if passage.contains(value) {
        return Some(Check::Quoted);
    }
    dates_in(passage)
        .contains(&date)
        .then_some(Check::Normalised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(value: Value, kind: FieldType, passage: &str) -> Check {
        check(&value, &kind, &[passage], &[]).check
    }

    #[test]
    fn text_is_found_despite_case_spacing_and_quotes() {
        let p = "The claimant, Ms  Jane O\u{2019}Brien, reported the loss.";
        assert_eq!(
            one(json!("jane o'brien"), FieldType::String, p),
            Check::Quoted
        );
        assert_eq!(
            one(json!("John Smith"), FieldType::String, p),
            Check::NotFound
        );
        assert_eq!(one(json!(null), FieldType::String, p), Check::Missing);
    }

    #[test]
    fn numbers_match_in_any_common_form() {
        let p = "A total of EUR 1.234,50 was paid on 12 March 2024; 3,000 remain.";
        assert_eq!(one(json!(1234.5), FieldType::Number, p), Check::Normalised);
        assert_eq!(one(json!(3000), FieldType::Number, p), Check::Normalised);
        assert_eq!(one(json!(12), FieldType::Number, p), Check::Quoted);
        assert_eq!(one(json!(2024), FieldType::Number, p), Check::Quoted);
        assert_eq!(one(json!(1234), FieldType::Number, p), Check::NotFound);
        assert_eq!(one(json!(300), FieldType::Number, p), Check::NotFound);
    }

    #[test]
    fn dates_match_in_any_common_form() {
        for p in [
            "Loss occurred on 2024-03-12.",
            "Loss occurred on 12 March 2024.",
            "Loss occurred on the 12th of March, 2024.",
            "Loss occurred on March 12, 2024.",
            "Loss occurred on Mar. 12 2024.",
            "Loss occurred on 12/03/2024.",
            "Loss occurred on 03/12/2024.",
            "Loss occurred on 12.03.24.",
        ] {
            let c = one(json!("2024-03-12"), FieldType::Date, p);
            assert!(c.verified(), "{p}: {c:?}");
        }
        let c = one(json!("2024-03-13"), FieldType::Date, "on 12 March 2024");
        assert_eq!(c, Check::NotFound);
    }

    #[test]
    fn judgements_are_not_verified_unless_spelled_out() {
        let kind = FieldType::Enum(vec!["fire".into(), "flood".into()]);
        assert_eq!(
            one(json!("fire"), kind.clone(), "The kitchen fire spread."),
            Check::Quoted
        );
        assert_eq!(
            one(json!("flood"), kind, "The kitchen fire spread."),
            Check::Inferred
        );
        assert_eq!(
            one(json!(true), FieldType::Boolean, "Renews."),
            Check::Inferred
        );
    }

    #[test]
    fn a_value_is_cited_where_it_is_found_and_lists_need_every_item() {
        let passages = ["Nothing here.", "Signed by Ann Lee and Bo Chan."];
        let v = check(&json!("Bo Chan"), &FieldType::String, &passages, &[0]);
        assert_eq!(
            v,
            Verdict {
                check: Check::Quoted,
                passage: Some(1)
            }
        );
        let v = check(
            &json!(["Ann Lee", "Bo Chan"]),
            &FieldType::List,
            &passages,
            &[0],
        );
        assert_eq!(v.check, Check::Quoted);
        let v = check(
            &json!(["Ann Lee", "Cy Dee"]),
            &FieldType::List,
            &passages,
            &[0],
        );
        assert_eq!(
            v,
            Verdict {
                check: Check::NotFound,
                passage: Some(0)
            }
        );
    }
}
