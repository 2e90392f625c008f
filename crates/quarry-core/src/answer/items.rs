//! Item notes for the whole-document questions that ask for a list or a
//! count ("list every licence…", "how many suppliers are named…"). On each
//! window of passages the model writes a JSON list of items, each with the
//! number of the passage it is in, under constrained decoding: the output
//! can only be that list, and a passage number can only be one of that
//! window's. The lists are then merged without the model (the same item, in
//! any case or spacing, once, with every passage it is in), and the answer
//! is written from them. Nothing is lost in a round of combining free-text
//! notes, and a count is the number of distinct items, not the model's
//! arithmetic.

use std::ops::Range;

use serde_json::{json, Value};

/// Most items the model may list for one window.
pub const MAX_ITEMS_PER_WINDOW: usize = 16;
/// Longest item, in characters.
pub const MAX_ITEM_CHARS: usize = 100;

/// The instructions for one window.
pub const ITEMS_PROMPT: &str = "You read one part of some documents for a question that \
needs all of them. List every item in these passages that answers the question, each once, in \
the words of the passage, with the number of the passage it is in. Give an empty list if no \
passage answers it.";

/// One item of the answer and the passages that name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The item, as the model copied it.
    pub text: String,
    /// Numbers of the passages it is in, in the order found.
    pub passages: Vec<usize>,
}

/// The JSON Schema of one window's notes: items whose passage is one of
/// `window` (passage numbers, from 1).
pub fn window_schema(window: Range<usize>) -> Value {
    let numbers: Vec<usize> = window.collect();
    json!({
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "maxItems": MAX_ITEMS_PER_WINDOW,
                "items": {
                    "type": "object",
                    "properties": {
                        "item": {"type": "string", "minLength": 1, "maxLength": MAX_ITEM_CHARS},
                        "passage": {"enum": numbers},
                    },
                    "required": ["item", "passage"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["items"],
        "additionalProperties": false,
    })
}

/// The items of one window's notes (`{"items": [{"item", "passage"}]}`);
/// blank items are dropped.
pub fn parse(notes: &Value) -> Vec<Item> {
    notes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let text = i["item"].as_str()?.split_whitespace().collect::<Vec<_>>();
            let passage = i["passage"].as_u64()? as usize;
            (!text.is_empty()).then(|| Item {
                text: text.join(" "),
                passages: vec![passage],
            })
        })
        .collect()
}

/// What makes two items the same: letters and digits, in lower case.
fn key(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Add `new` to `items`: an item already there gains the new passages; the
/// others are appended in order.
pub fn merge(items: &mut Vec<Item>, new: Vec<Item>) {
    for item in new {
        let k = key(&item.text);
        if k.is_empty() {
            continue;
        }
        match items.iter_mut().find(|i| key(&i.text) == k) {
            Some(found) => {
                for p in item.passages {
                    if !found.passages.contains(&p) {
                        found.passages.push(p);
                    }
                }
            }
            None => items.push(item),
        }
    }
}

/// The answer: the count first when the question asks how many, then one
/// line per item with its passages cited (`[n]`). `read` is how many
/// passages were read, for the answer that none answers.
pub fn render(items: &[Item], counting: bool, read: usize) -> String {
    if items.is_empty() {
        return format!("None of the {read} passages read answers that question.");
    }
    let mut out = String::new();
    if counting {
        let n = items.len();
        out.push_str(&format!(
            "{n} distinct item{} named:\n",
            if n == 1 { "" } else { "s" }
        ));
    }
    for i in items {
        let cites: String = i.passages.iter().map(|p| format!("[{p}]")).collect();
        out.push_str(&format!("- {} {cites}\n", i.text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_item_from_two_windows_is_listed_once_with_both_passages() {
        let mut items = Vec::new();
        merge(
            &mut items,
            parse(&json!({"items": [
                {"item": "GPL-2+", "passage": 1},
                {"item": "  MIT ", "passage": 2},
                {"item": " ", "passage": 2},
            ]})),
        );
        merge(
            &mut items,
            parse(
                &json!({"items": [{"item": "mit", "passage": 5}, {"item": "BSD-3-clause", "passage": 6}]}),
            ),
        );
        assert_eq!(
            items,
            vec![
                Item {
                    text: "GPL-2+".into(),
                    passages: vec![1]
                },
                Item {
                    text: "MIT".into(),
                    passages: vec![2, 5]
                },
                Item {
                    text: "BSD-3-clause".into(),
                    passages: vec![6]
                },
            ]
        );
        assert_eq!(
            render(&items, true, 9),
            "3 distinct items named:\n- GPL-2+ [1]\n- MIT [2][5]\n- BSD-3-clause [6]\n"
        );
        assert!(render(&[], false, 9).starts_with("None of the 9 passages"));
    }

    #[test]
    fn a_window_may_only_cite_its_own_passages() {
        let schema = window_schema(4..7);
        assert_eq!(
            schema["properties"]["items"]["items"]["properties"]["passage"]["enum"],
            json!([4, 5, 6])
        );
    }
}
