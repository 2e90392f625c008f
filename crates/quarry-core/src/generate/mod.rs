//! Local text generation: GGUF models through candle's quantized
//! implementations, chosen by the file's `general.architecture`; the tokenizer
//! is built from the GGUF's own metadata and the chat template
//! (`tokenizer.chat_template`) is rendered with minijinja.

mod constrained;
mod copy;
mod decoder;
mod linear;
mod lookup;
pub mod machine;
mod model;
mod probe;
mod reasoning;
mod spm;
pub mod synthetic;
mod template;
mod tokenizer;

pub use constrained::{cited_text_grammar, json_grammar, MAX_UNCITED_CHARS};
pub use model::{GenerateOptions, GenerationStats, LoadOptions, LocalModel, StopReason};
pub use probe::{measure_model, probe_products, ModelSpeed, ProductSpeed};
pub use template::{ChatMessage, ChatTemplate};
pub use tokenizer::tokenizer_from_gguf;
