//! Reasoning models (Qwen3 in thinking mode, DeepSeek-R1 distills, QwQ)
//! write `<think>…</think>` before their answer. Quarry asks them not to
//! (the chat template's `enable_thinking` is false), but a model or template
//! that reasons anyway must not have its reasoning shown, cited or cached as
//! the answer: only what follows `</think>` is the answer.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// The answer part of `text` generated so far: all of it when the model is
/// not reasoning; `None` while a reasoning block is open (or `text` could
/// still be the start of one); what follows the block, leading whitespace
/// dropped, once it closes. `opened`: the prompt itself ended by opening
/// the block (some templates force reasoning that way).
pub(super) fn answer_part(text: &str, opened: bool) -> Option<&str> {
    let start = text.trim_start();
    let inside = if opened {
        text
    } else if let Some(rest) = start.strip_prefix(OPEN) {
        rest
    } else if !start.is_empty() && OPEN.starts_with(start) {
        return None;
    } else {
        return Some(text);
    };
    inside
        .find(CLOSE)
        .map(|i| inside[i + CLOSE.len()..].trim_start())
}

/// Whether a rendered prompt ends inside an opened reasoning block.
pub(super) fn prompt_opens_reasoning(prompt: &str) -> bool {
    prompt.trim_end().ends_with(OPEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_reasoning_is_all_answer() {
        assert_eq!(
            answer_part("The notice period is 30 days [1].", false),
            Some("The notice period is 30 days [1].")
        );
        assert_eq!(answer_part("", false), Some(""));
        assert_eq!(answer_part("<b>bold</b>", false), Some("<b>bold</b>"));
    }

    #[test]
    fn reasoning_is_held_back_until_it_closes() {
        for partial in [
            "<",
            "<thi",
            "<think>",
            "<think>\nThe user asks",
            "\n<think>hm </thi",
        ] {
            assert_eq!(answer_part(partial, false), None, "{partial:?}");
        }
        assert_eq!(
            answer_part("<think>\nhm\n</think>\n\nThirty days [1].", false),
            Some("Thirty days [1].")
        );
        assert_eq!(answer_part("<think>\n\n</think>\n\n", false), Some(""));
    }

    #[test]
    fn a_block_the_prompt_opened_is_reasoning_too() {
        assert!(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
        assert!(!prompt_opens_reasoning(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert_eq!(answer_part("Let me look at source 2.", true), None);
        assert_eq!(
            answer_part("Let me look.</think>\nThirty days [2].", true),
            Some("Thirty days [2].")
        );
    }
}
