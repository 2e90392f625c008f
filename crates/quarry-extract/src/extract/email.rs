//! E-mail (.eml): headers worth searching, then the text bodies.

use super::{blocks_from_markdown, Block, ExtractError, Extracted};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let msg = mail_parser::MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ExtractError::Corrupt {
            format: "e-mail",
            reason: "not a MIME message".into(),
        })?;
    let subject = msg.subject().map(str::to_string);
    let addr = |a: Option<&mail_parser::Address>| {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut header = String::new();
    header.push_str(&format!("From: {}\n", addr(msg.from())));
    header.push_str(&format!("To: {}\n", addr(msg.to())));
    if let Some(d) = msg.date() {
        header.push_str(&format!("Date: {}\n", d.to_rfc3339()));
    }
    if let Some(s) = &subject {
        header.push_str(&format!("Subject: {s}\n"));
    }
    let mut blocks = vec![Block {
        text: header,
        page: None,
        heading: subject.clone(),
    }];
    for i in 0..msg.text_body_count() {
        if let Some(body) = msg.body_text(i) {
            for mut b in blocks_from_markdown(&body, None) {
                b.heading = b.heading.or_else(|| subject.clone());
                blocks.push(b);
            }
        }
    }
    Ok(Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks,
        title: subject,
    })
}
