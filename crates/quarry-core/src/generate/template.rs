//! Chat templates: the model's own Jinja template, with a per-architecture
//! fallback when the GGUF has none.

use minijinja::{context, Environment};
use serde::Serialize;

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with a role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
/// Gemma has no system role: a system message opens the first user turn.
const GEMMA: &str = "{{ bos_token }}{% if messages and messages[0].role == 'system' %}{% set prefix = messages[0].content + '\n\n' %}{% set rest = messages[1:] %}{% else %}{% set prefix = '' %}{% set rest = messages %}{% endif %}{% for m in rest %}<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n{{ prefix if loop.first else '' }}{{ m.content }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
/// Qwen3 answers at once (its "no thinking" turn opening) rather than
/// reasoning aloud first: Quarry's prompts ask for short, cited answers.
const QWEN3: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}";
const PHI3: &str = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

impl ChatTemplate {
    /// Compile `source` (a GGUF's `tokenizer.chat_template`), or the fallback
    /// for `architecture` when `source` is `None`.
    pub fn new(source: Option<&str>, architecture: &str, bos: &str, eos: &str) -> Result<Self> {
        let source = match source {
            Some(s) => s.to_string(),
            None => match architecture {
                "llama" if bos.contains("begin_of_text") => LLAMA3,
                "gemma" | "gemma2" | "gemma3" => GEMMA,
                "phi3" => PHI3,
                "qwen3" => QWEN3,
                _ => CHATML,
            }
            .to_string(),
        };
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| Error::ModelLoad {
                id: "chat template".into(),
                reason: e.to_string(),
            })?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// Render a conversation, ending with the assistant's turn opened.
    /// Templates of models that can reason before answering (Qwen3's
    /// `enable_thinking`) are asked not to: the answer comes first.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Internal(e.to_string()))?;
        t.render(context! {
            messages => messages,
            add_generation_prompt => true,
            enable_thinking => false,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::InvalidInput(format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::new(None, "qwen2", "", "<|im_end|>").unwrap();
        let s = t.render(&[ChatMessage::new("user", "hi")]).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn gemma_fallback_folds_system_into_first_user_turn() {
        let t = ChatTemplate::new(None, "gemma3", "<bos>", "<eos>").unwrap();
        let s = t
            .render(&[
                ChatMessage::new("system", "S"),
                ChatMessage::new("user", "Q1"),
                ChatMessage::new("assistant", "A1"),
                ChatMessage::new("user", "Q2"),
            ])
            .unwrap();
        assert_eq!(
            s,
            "<bos><start_of_turn>user\nS\n\nQ1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n\
             <start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    /// The constructs Qwen3's own template uses (a namespace set in a
    /// reversed loop, `split`/`lstrip`, `enable_thinking`) render, and the
    /// turn opens without reasoning.
    #[test]
    fn a_qwen3_style_template_opens_the_answer_without_thinking() {
        let src = "{%- set ns = namespace(last=messages|length - 1) %}\
                   {%- for m in messages[::-1] %}{%- if m.role == 'user' and ns.last == messages|length - 1 %}{%- set ns.last = (messages|length - 1) - loop.index0 %}{%- endif %}{%- endfor %}\
                   {%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content.split('</think>')[-1].lstrip('\\n') + '<|im_end|>\\n' }}{%- endfor %}\
                   {%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";
        let t = ChatTemplate::new(Some(src), "qwen3", "", "<|im_end|>").unwrap();
        let s = t
            .render(&[
                ChatMessage::new("user", "Q1"),
                ChatMessage::new("assistant", "<think>\nhm\n</think>\n\nA1"),
                ChatMessage::new("user", "Q2"),
            ])
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n\
             <|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
        let fallback = ChatTemplate::new(None, "qwen3", "", "<|im_end|>").unwrap();
        assert!(fallback
            .render(&[ChatMessage::new("user", "hi")])
            .unwrap()
            .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }

    /// Phi-4-mini-instruct's template (with its tool branch) renders turns
    /// closed by `<|end|>` and opens the assistant's.
    #[test]
    fn phi4_mini_template_renders() {
        let src = "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}\
                   {{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}\
                   {% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}\
                   {% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}";
        let t = ChatTemplate::new(Some(src), "phi3", "", "<|endoftext|>").unwrap();
        let s = t
            .render(&[
                ChatMessage::new("system", "S"),
                ChatMessage::new("user", "Q"),
            ])
            .unwrap();
        assert_eq!(s, "<|system|>S<|end|><|user|>Q<|end|><|assistant|>");
    }

    #[test]
    fn python_methods_work() {
        let src = "{% for m in messages %}{{ m.content.strip() }}{% endfor %}";
        let t = ChatTemplate::new(Some(src), "llama", "", "").unwrap();
        assert_eq!(t.render(&[ChatMessage::new("user", "  x  ")]).unwrap(), "x");
    }
}
