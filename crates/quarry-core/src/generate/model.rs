//! Loading a GGUF model and generating from it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::Serialize;
use tokenizers::Tokenizer;

use super::template::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Re-quantize tensors whose type has no fast CPU kernel (Q4_1, Q5_0, Q5_1)
    /// to Q8_0 at load time, caching the result in `cache_dir`.
    pub requantize_slow: bool,
    /// Where converted files are cached (next to nothing else; safe to delete).
    pub cache_dir: Option<PathBuf>,
    /// Run prompts through the quantized kernels even when the model is small
    /// enough to keep dense copies of its weights: less memory, slower prompts.
    /// Models past the dense budget always run this way.
    pub quantized_prompts: bool,
}

/// Sampling and stopping.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most new tokens.
    pub max_tokens: usize,
    /// 0 for greedy.
    pub temperature: f64,
    /// Nucleus sampling mass (used when temperature > 0).
    pub top_p: f64,
    /// Random seed.
    pub seed: u64,
    /// Extra stop strings (the template's end-of-turn tokens always stop).
    pub stop: Vec<String>,
    /// Prompt-lookup decoding when greedy: draft tokens from the prompt and
    /// verify them in one step (same output, fewer passes over the weights).
    pub lookup: bool,
    /// Copy bias (see [`super::copy`]): added to the logits of tokens that
    /// continue the answer as the prompt does; 0 turns it off.
    pub copy_bias: f32,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 512,
            temperature: 0.0,
            top_p: 0.9,
            seed: 299792458,
            stop: Vec::new(),
            lookup: true,
            copy_bias: 0.0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// End-of-turn token.
    EndOfTurn,
    /// A stop string.
    StopString,
    /// `max_tokens` reached.
    MaxTokens,
    /// The caller asked to stop.
    Cancelled,
    /// The context window is full.
    ContextFull,
}

/// Figures of one generation.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were reused from the cache.
    pub reused_tokens: usize,
    /// Generated tokens.
    pub generated_tokens: usize,
    /// Tokens drafted by prompt lookup.
    pub drafted_tokens: usize,
    /// Drafted tokens the model confirmed.
    pub accepted_tokens: usize,
    /// Tokens a grammar forced (constrained decoding), run in batches.
    pub forced_tokens: usize,
    /// Time to process the prompt.
    pub prefill: Duration,
    /// Time to the first generated token.
    pub first_token: Duration,
    /// Time decoding after the first token.
    pub decode: Duration,
    /// Wall time.
    pub total: Duration,
    /// Why it stopped.
    pub stop: StopReason,
}

impl GenerationStats {
    /// The times of a generation that started at `started` and ends now;
    /// the token counts are left at zero for the caller to fill in.
    pub(super) fn timed(
        started: Instant,
        prefill: Duration,
        first_token: Option<Duration>,
        stop: StopReason,
    ) -> Self {
        let total = started.elapsed();
        let first = first_token.unwrap_or(total);
        GenerationStats {
            prompt_tokens: 0,
            reused_tokens: 0,
            generated_tokens: 0,
            drafted_tokens: 0,
            accepted_tokens: 0,
            forced_tokens: 0,
            prefill,
            first_token: first,
            decode: total.saturating_sub(first),
            total,
            stop,
        }
    }
}

/// Tokens of a prompt processed in one forward pass at most. 256 rather than
/// 512: the 1.5B's prefill went from 54–68 to 69–72 tok/s (the attention's
/// masked triangle and its fresh score buffers shrink; the weights are
/// streamed a few more times, which Quarry's kernels make cheap).
pub(crate) const PREFILL_SLICE: usize = 256;

/// Longest context Quarry's own decoder preallocates a KV cache for.
const DECODER_MAX_CONTEXT: usize = 8192;

/// Architectures Quarry runs.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "phi3", "gemma3"];

/// End-of-turn markers of common templates.
const END_MARKERS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
];

/// A loaded local model.
pub struct LocalModel {
    net: super::decoder::Decoder,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    architecture: String,
    context_length: usize,
    eos_ids: Vec<u32>,
    name: String,
    /// The tokens whose keys and values sit in the decoder's cache, at
    /// positions 0..
    cached: Vec<u32>,
    /// What each token's text is in bytes, for constrained decoding.
    token_bytes: Vec<Vec<u8>>,
    /// Built at the first constrained generation.
    grammars: Option<super::constrained::Grammars>,
}

fn md_str(ct: &gguf_file::Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| {
        v.to_u32()
            .ok()
            .or_else(|| v.to_u64().ok().map(|x| x as u32))
    })
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::ModelLoad {
        id: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Types whose CPU dot product in candle 0.11 is a scalar loop.
fn is_slow(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Write a copy of the GGUF at `src` with slow tensor types re-quantized to Q8_0.
fn requantize(src: &Path, dst: &Path) -> Result<()> {
    let mut f = fs_err::File::open(src)?;
    let ct = gguf_file::Content::read(&mut f).map_err(|e| load_err(src, e))?;
    let device = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(ct.tensor_infos.len());
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let q = ct.tensor(&mut f, name, &device)?;
        let q = if is_slow(q.dtype()) && q.shape().dims().last().is_some_and(|d| d % 32 == 0) {
            QTensor::quantize(&q.dequantize(&device)?, GgmlDType::Q8_0)?
        } else {
            q
        };
        tensors.push((name.clone(), q));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // A unique temporary file renamed into place: concurrent loads of the same
    // model (two processes, parallel tests) each write a whole file.
    let dir = dst.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file());
        gguf_file::write(&mut out, &metadata, &tensor_refs)?;
        std::io::Write::flush(&mut out)?;
    }
    tmp.persist(dst).map_err(|e| Error::from(e.error))?;
    Ok(())
}

impl LocalModel {
    /// Load a generator from `store`: `model` is a registry id, a `.gguf`
    /// path, or `None` for the default ([`ModelStore::generator_file`]); slow
    /// quantisations are converted once into the store's `.converted` cache.
    pub fn from_store(store: &crate::models::ModelStore, model: Option<&str>) -> Result<Self> {
        Self::load(
            &store.generator_file(model)?,
            &LoadOptions {
                requantize_slow: true,
                cache_dir: Some(store.root().join(".converted")),
                ..Default::default()
            },
        )
    }

    /// Load a GGUF file.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let mut file = fs_err::File::open(path)?;
        let ct = gguf_file::Content::read(&mut file)
            .map_err(|e| load_err(path, format!("not a GGUF file: {e}")))?;
        let architecture = md_str(&ct, "general.architecture")
            .ok_or_else(|| load_err(path, "no general.architecture"))?;
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(load_err(
                path,
                format!(
                    "architecture '{architecture}' is not supported (supported: {})",
                    SUPPORTED_ARCHITECTURES.join(", ")
                ),
            ));
        }
        let has_slow = ct.tensor_infos.values().any(|t| is_slow(t.ggml_dtype));
        let (ct, mut file, path_used) = if opts.requantize_slow && has_slow {
            let dir = opts
                .cache_dir
                .clone()
                .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
            fs_err::create_dir_all(&dir)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let converted = dir.join(format!("{stem}.quarry-q8_0.gguf"));
            let fresh = match (std::fs::metadata(&converted), std::fs::metadata(path)) {
                (Ok(c), Ok(o)) => c.modified().ok() >= o.modified().ok(),
                _ => false,
            };
            if !fresh {
                requantize(path, &converted)?;
            }
            let mut f = fs_err::File::open(&converted)?;
            let ct = gguf_file::Content::read(&mut f).map_err(|e| load_err(&converted, e))?;
            (ct, f, converted)
        } else {
            (ct, file.try_clone()?, path.to_path_buf())
        };
        let tokenizer =
            super::tokenizer::tokenizer_from_gguf(&ct).map_err(|e| load_err(&path_used, e))?;
        // Without it only constrained decoding is unavailable (and says so).
        let token_bytes = super::constrained::token_bytes(&ct).unwrap_or_default();
        let token_text = |key: &str| {
            md_u32(&ct, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        let template = ChatTemplate::new(
            md_str(&ct, "tokenizer.chat_template").as_deref(),
            &architecture,
            &bos,
            &eos,
        )?;
        let mut eos_ids: Vec<u32> = md_u32(&ct, "tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect();
        for m in END_MARKERS {
            if let Some(id) = tokenizer.token_to_id(m) {
                eos_ids.push(id);
            }
        }
        let context_length =
            md_u32(&ct, &format!("{architecture}.context_length")).unwrap_or(2048) as usize;
        // Quarry's decoder preallocates its KV cache; longer contexts are
        // capped. A LongRoPE model (Phi-3.x, Phi-4-mini) stays within its
        // original context, where it uses the short factors it was trained
        // with (transformers uses them up to there too).
        let mut context_length = context_length.min(DECODER_MAX_CONTEXT);
        if ct.tensor_infos.contains_key("rope_factors_short.weight") {
            if let Some(original) = md_u32(
                &ct,
                &format!("{architecture}.rope.scaling.original_context_length"),
            ) {
                context_length = context_length.min(original as usize);
            }
        }
        let name = md_str(&ct, "general.name").unwrap_or_else(|| path.display().to_string());
        let net = super::decoder::Decoder::from_gguf(
            &ct,
            &mut file,
            &architecture,
            context_length,
            !opts.quantized_prompts,
        )?;
        Ok(LocalModel {
            net,
            tokenizer,
            template,
            architecture,
            context_length,
            eos_ids,
            name,
            cached: Vec::new(),
            token_bytes,
            grammars: None,
        })
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// `general.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Context window in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The tokenizer built from the GGUF.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens in `text` (no special tokens added).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or(text.len() / 3)
    }

    /// Render a conversation with the model's chat template.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages)
    }

    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// Logits of the token after `text` (tokenized without special tokens added).
    pub fn next_token_logits(&mut self, text: &str) -> Result<Vec<f32>> {
        let ids = self.token_ids(text)?;
        if ids.is_empty() || ids.len() >= self.context_length {
            return Err(Error::InvalidInput(
                "text must be 1 token to the context length".into(),
            ));
        }
        self.cached.clear();
        let logits = self.net.forward(&ids, 0)?.squeeze(0)?;
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1()?)
    }

    /// Logits of the token after `text`, reusing the cached keys and values
    /// of its longest common prefix with the previous prompt as
    /// [`LocalModel::generate`] does: scoring many texts that begin alike
    /// (one question against several passages) computes the beginning once.
    pub fn continuation_logits(&mut self, text: &str) -> Result<Vec<f32>> {
        let ids = self.token_ids(text)?;
        if ids.is_empty() || ids.len() >= self.context_length {
            return Err(Error::InvalidInput(format!(
                "text must be 1 token to the {}-token context, not {}",
                self.context_length,
                ids.len()
            )));
        }
        let (logits, _) = self.prefill(&ids)?;
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1()?)
    }

    /// The same logits as [`LocalModel::next_token_logits`], computed the way
    /// generation does: all tokens but the last as a prompt, then the last as
    /// a single decoding step (the quantized kernels and the decode attention
    /// path). Lets tests hold the two paths to each other.
    pub fn next_token_logits_stepwise(&mut self, text: &str) -> Result<Vec<f32>> {
        let ids = self.token_ids(text)?;
        if ids.len() < 2 || ids.len() >= self.context_length {
            return Err(Error::InvalidInput(
                "text must be 2 tokens to the context length".into(),
            ));
        }
        self.cached.clear();
        let n = ids.len();
        self.net.forward(&ids[..n - 1], 0)?;
        let logits = self.net.forward(&ids[n - 1..], n - 1)?.squeeze(0)?;
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1()?)
    }

    /// Generate a continuation of `prompt` (already templated). `on_text`
    /// receives text as it is produced and returns `false` to stop; while a
    /// model writes reasoning (`<think>…`, held back, see
    /// [`super::reasoning`]) it receives empty text once per token.
    ///
    /// The prompt's longest common prefix with what the KV cache already
    /// holds (the previous prompt and answer, or a prefix warmed with
    /// [`LocalModel::prefill_prefix`]) is not computed again. Greedy decoding
    /// drafts tokens by prompt lookup (see [`super::lookup`]) and verifies
    /// them in one batched step computed as the single steps would be (see
    /// [`super::decoder::Decoder::forward_steps`] for where the quantized
    /// kernels make that exact and where only nearly so).
    pub fn generate(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(String, GenerationStats)> {
        let started = Instant::now();
        let prompt_ids = self.prompt_ids(prompt)?;
        let (logits, reused) = self.prefill(&prompt_ids)?;
        let prefill = started.elapsed();
        let mut picker = Picker::new(opts);
        let mut drafts =
            (picker.greedy() && opts.lookup).then(|| super::lookup::Drafter::new(&prompt_ids));
        let copy = (opts.copy_bias > 0.0).then(|| {
            super::copy::CopyBias::new(
                &prompt_ids,
                &self.token_bytes,
                &self.eos_ids,
                opts.copy_bias,
            )
        });
        let mut out = Emitter::new(&opts.stop).after_prompt(prompt);
        let mut logits = Some(logits);
        let mut pending: std::collections::VecDeque<u32> = Default::default();
        let mut pos = prompt_ids.len();
        let mut first_token = None;
        let (mut drafted, mut accepted) = (0usize, 0usize);
        let reason = loop {
            let next = match pending.pop_front() {
                Some(t) => t,
                None => {
                    let logits = logits.take().expect("logits of the last step");
                    picker.pick_biased(&logits, copy.as_ref(), &out.generated)?
                }
            };
            first_token.get_or_insert_with(|| started.elapsed());
            if self.eos_ids.contains(&next) {
                break StopReason::EndOfTurn;
            }
            if let Some(reason) = out.push(next, &self.tokenizer, on_text)? {
                break reason;
            }
            if out.generated.len() >= opts.max_tokens {
                break StopReason::MaxTokens;
            }
            if !pending.is_empty() {
                // Verified already: its keys and values are in the cache.
                continue;
            }
            if pos + 1 >= self.context_length {
                break StopReason::ContextFull;
            }
            match self.advance(next, pos, drafts.as_mut(), &out.generated, copy.as_ref())? {
                Advance::Logits(l) => {
                    logits = Some(l);
                    pos += 1;
                }
                Advance::Verified {
                    draft,
                    taken,
                    after,
                } => {
                    drafted += draft.len();
                    accepted += taken;
                    pending.extend(&draft[..taken]);
                    pending.push_back(after);
                    pos += 1 + taken;
                }
            }
        };
        let generated = out.generated.len();
        let text = out.finish(reason, on_text);
        let mut stats = GenerationStats::timed(started, prefill, first_token, reason);
        stats.prompt_tokens = prompt_ids.len();
        stats.reused_tokens = reused;
        stats.generated_tokens = generated;
        stats.drafted_tokens = drafted;
        stats.accepted_tokens = accepted;
        Ok((text, stats))
    }

    /// The tokens of a prompt that fits the context.
    pub(super) fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let prompt_ids = self.token_ids(prompt)?;
        if prompt_ids.is_empty() {
            return Err(Error::InvalidInput("empty prompt".into()));
        }
        if prompt_ids.len() >= self.context_length {
            return Err(Error::InvalidInput(format!(
                "prompt of {} tokens does not fit the {}-token context",
                prompt_ids.len(),
                self.context_length
            )));
        }
        Ok(prompt_ids)
    }

    /// Run `ids` (from position `pos`) through the model; the logits after
    /// the last.
    pub(super) fn step(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        let logits = self.net.forward(ids, pos)?.squeeze(0)?;
        self.cached.truncate(pos);
        self.cached.extend_from_slice(ids);
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1()?)
    }

    /// The grammar engine over this model's vocabulary, for logits `n_vocab` wide.
    pub(super) fn grammars(&mut self, n_vocab: usize) -> Result<&super::constrained::Grammars> {
        if self
            .grammars
            .as_ref()
            .is_none_or(|g| g.n_vocab() != n_vocab)
        {
            if self.token_bytes.is_empty() {
                return Err(Error::Tokenizer(format!(
                    "{}: the GGUF's token list could not be read, so output cannot be constrained",
                    self.name
                )));
            }
            self.grammars = Some(super::constrained::Grammars::new(
                &self.token_bytes,
                &self.tokenizer,
                &self.eos_ids,
                n_vocab,
            )?);
        }
        Ok(self.grammars.as_ref().expect("built above"))
    }

    /// End-of-turn token ids.
    pub(super) fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Run `next` (at `pos`) through the model: alone, for the logits of the
    /// token after it; or with a draft from `drafts`, verified in one step.
    fn advance(
        &mut self,
        next: u32,
        pos: usize,
        drafts: Option<&mut super::lookup::Drafter>,
        generated: &[u32],
        copy: Option<&super::copy::CopyBias>,
    ) -> Result<Advance> {
        let room = self.context_length - pos - 2;
        let draft = drafts
            .as_ref()
            .map_or_else(Vec::new, |d| d.propose(generated, room));
        match drafts {
            Some(d) if !draft.is_empty() => {
                let (taken, after) = self.verify(next, &draft, pos, generated, copy)?;
                d.record(draft.len(), taken);
                Ok(Advance::Verified {
                    draft,
                    taken,
                    after,
                })
            }
            _ => {
                let logits = self.net.forward(&[next], pos)?.squeeze(0)?;
                self.cached.truncate(pos);
                self.cached.push(next);
                Ok(Advance::Logits(logits))
            }
        }
    }

    /// Run the prompt through the model, reusing the cached keys and values
    /// of its longest common prefix with the previous run. Returns the
    /// logits after the prompt and how many prompt tokens were reused.
    pub(super) fn prefill(&mut self, ids: &[u32]) -> Result<(Tensor, usize)> {
        // The last two tokens always run, together: a prompt's last logits
        // then come from the same kernels (several rows) as when it is
        // processed whole, so a reused prefix does not change the answer.
        let reused = common_prefix(&self.cached, ids).min(ids.len().saturating_sub(2));
        // Invalid until the prompt is through (an error leaves it empty).
        self.cached.clear();
        let logits = self.run_slices(ids, reused)?;
        self.cached = ids.to_vec();
        Ok((logits.expect("a token to run").squeeze(0)?, reused))
    }

    /// Run `ids[from..]` (at their positions) through the model in slices
    /// that end at the same positions whatever `from` is, so attention memory
    /// stays bounded and a token's result does not depend on what was
    /// cached; a last token is never run alone. The logits after the last.
    fn run_slices(&mut self, ids: &[u32], from: usize) -> Result<Option<Tensor>> {
        let mut logits = None;
        let mut pos = from;
        while pos < ids.len() {
            let end = ((pos / PREFILL_SLICE + 1) * PREFILL_SLICE).min(ids.len());
            let end = if ids.len() - end == 1 { ids.len() } else { end };
            logits = Some(self.net.forward(&ids[pos..end], pos)?);
            pos = end;
        }
        Ok(logits)
    }

    /// Check `draft` (proposed after `next`, which sits at `pos`) with one
    /// batched step: how many draft tokens the model itself would have
    /// produced, and the token it produces after them. `generated` is the
    /// answer so far (ending with `next`), for the copy bias.
    fn verify(
        &mut self,
        next: u32,
        draft: &[u32],
        pos: usize,
        generated: &[u32],
        copy: Option<&super::copy::CopyBias>,
    ) -> Result<(usize, u32)> {
        let d = &mut self.net;
        let mut ids = Vec::with_capacity(draft.len() + 1);
        ids.push(next);
        ids.extend_from_slice(draft);
        self.cached.truncate(pos);
        let mut rows = d.forward_steps(&ids, pos)?;
        if let Some(c) = copy {
            // Row i follows `next` and the draft's first i tokens.
            let mut answer = generated.to_vec();
            for (i, row) in rows.iter_mut().enumerate() {
                if i > 0 {
                    answer.push(draft[i - 1]);
                }
                c.apply(&answer, row);
            }
        }
        let predicted: Vec<u32> = rows.iter().map(|r| argmax(r)).collect();
        let taken = draft
            .iter()
            .zip(&predicted)
            .take_while(|(d, p)| d == p)
            .count();
        // Keys and values past the accepted tokens are left to be overwritten.
        self.cached.extend_from_slice(&ids[..=taken]);
        Ok((taken, predicted[taken]))
    }

    /// Forget the cached keys and values: the next prompt is computed whole.
    pub fn forget_prefix(&mut self) {
        self.cached.clear();
    }

    /// Run `text` (already templated, the start of prompts to come: the
    /// instructions, a conversation so far) through the model now, so that a
    /// later [`LocalModel::generate`] whose prompt starts with it computes
    /// only the rest. Returns how many tokens were computed (0 when the cache
    /// already held them).
    pub fn prefill_prefix(&mut self, text: &str) -> Result<usize> {
        let ids = self.token_ids(text)?;
        if ids.len() >= self.context_length {
            return Err(Error::InvalidInput(format!(
                "a prefix of {} tokens does not fit the {}-token context",
                ids.len(),
                self.context_length
            )));
        }
        let reused = common_prefix(&self.cached, &ids);
        if reused == ids.len() {
            return Ok(0);
        }
        self.cached.truncate(reused);
        self.run_slices(&ids, reused)?;
        let computed = ids.len() - reused;
        self.cached = ids;
        Ok(computed)
    }
}

/// What a decoding step produced.
enum Advance {
    /// The logits after the token.
    Logits(Tensor),
    /// A draft was checked: its first `taken` tokens are confirmed (their
    /// keys and values cached) and `after` is the model's token after them.
    Verified {
        draft: Vec<u32>,
        taken: usize,
        after: u32,
    },
}

/// Picks the next token: the arg-max when greedy (also what drafts are
/// checked against), else nucleus sampling.
pub(super) struct Picker {
    greedy: bool,
    sampler: LogitsProcessor,
}

impl Picker {
    pub(super) fn new(opts: &GenerateOptions) -> Self {
        Picker {
            greedy: opts.temperature <= 0.0,
            sampler: LogitsProcessor::from_sampling(
                opts.seed,
                Sampling::TopP {
                    p: opts.top_p,
                    temperature: opts.temperature.max(1e-6),
                },
            ),
        }
    }

    fn greedy(&self) -> bool {
        self.greedy
    }

    /// Pick from logits some of which may be minus infinity (masked).
    pub(super) fn pick_from(&mut self, logits: &[f32]) -> Result<u32> {
        if self.greedy {
            Ok(argmax(logits))
        } else {
            self.pick(&Tensor::new(logits, &Device::Cpu)?)
        }
    }

    /// Pick after adding the copy bias for `answer` (the tokens so far), if any.
    fn pick_biased(
        &mut self,
        logits: &Tensor,
        copy: Option<&super::copy::CopyBias>,
        answer: &[u32],
    ) -> Result<u32> {
        let Some(c) = copy else {
            return self.pick(logits);
        };
        let mut v = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        c.apply(answer, &mut v);
        self.pick_from(&v)
    }

    fn pick(&mut self, logits: &Tensor) -> Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        if self.greedy {
            Ok(argmax(&logits.to_vec1::<f32>()?))
        } else {
            Ok(self.sampler.sample(&logits)?)
        }
    }
}

/// Index of the largest value (the first of equals).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Generated tokens turned into text for the caller: stop strings cut the
/// text, nothing is shown that could still turn out to be the start of a
/// stop string or half of a character, and a reasoning block
/// (`<think>…</think>`) is never shown: the text is what follows it.
pub(super) struct Emitter<'a> {
    stops: Vec<&'a str>,
    pub(super) generated: Vec<u32>,
    text: String,
    emitted: usize,
    /// The prompt opened a reasoning block the model is writing in.
    reasoning_opened: bool,
}

impl<'a> Emitter<'a> {
    pub(super) fn new(stops: &'a [String]) -> Self {
        Emitter {
            stops: stops.iter().map(String::as_str).collect(),
            generated: Vec::new(),
            text: String::new(),
            emitted: 0,
            reasoning_opened: false,
        }
    }

    /// The prompt ended by opening a reasoning block (see [`super::reasoning`]).
    pub(super) fn after_prompt(mut self, prompt: &str) -> Self {
        self.reasoning_opened = super::reasoning::prompt_opens_reasoning(prompt);
        self
    }

    /// Add a token; `Some` when generation must stop (a stop string, or the
    /// caller said stop).
    pub(super) fn push(
        &mut self,
        token: u32,
        tokenizer: &Tokenizer,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<StopReason>> {
        self.generated.push(token);
        let all = tokenizer
            .decode(&self.generated, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let Some(answer) = super::reasoning::answer_part(&all, self.reasoning_opened) else {
            // Reasoning, never shown: empty text lets the caller say that
            // the model is thinking, and stop it.
            return Ok((!on_text("")).then_some(StopReason::Cancelled));
        };
        self.text = answer.to_string();
        let text = &mut self.text;
        if let Some(cut) = self.stops.iter().filter_map(|s| text.find(s)).min() {
            text.truncate(cut);
            if text.len() > self.emitted {
                on_text(&text[self.emitted..]);
            }
            self.emitted = text.len();
            return Ok(Some(StopReason::StopString));
        }
        let mut safe = text.len();
        for s in &self.stops {
            if let Some(k) = (1..s.len()).rev().find(|&k| text.ends_with(&s[..k])) {
                safe = safe.min(text.len() - k);
            }
        }
        if text.ends_with('\u{FFFD}') {
            safe = safe.min(text.len() - '\u{FFFD}'.len_utf8());
        }
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        if safe > self.emitted {
            let keep_going = on_text(&text[self.emitted..safe]);
            self.emitted = safe;
            if !keep_going {
                return Ok(Some(StopReason::Cancelled));
            }
        }
        Ok(None)
    }

    /// Show what was held back (unless a stop string or the caller ended
    /// it); the whole text.
    pub(super) fn finish(
        self,
        reason: StopReason,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> String {
        if reason != StopReason::StopString && reason != StopReason::Cancelled {
            let tail = self.text.trim_end_matches('\u{FFFD}');
            if tail.len() > self.emitted {
                on_text(&tail[self.emitted..]);
            }
        }
        self.text
    }
}

#[cfg(test)]
mod registry_tests {
    use super::SUPPORTED_ARCHITECTURES;
    use crate::models::{ModelRole, Registry, Source};

    /// Every generator in the built-in registry is a GGUF of an architecture
    /// this module loads, with at least one source that names where it is.
    #[test]
    fn every_registered_generator_is_loadable_and_fetchable() {
        let r = Registry::builtin();
        let generators: Vec<_> = r
            .models()
            .iter()
            .filter(|m| m.role == ModelRole::Generator)
            .collect();
        assert!(generators.len() >= 7, "the tiny, test and general models");
        for m in generators {
            assert_eq!(m.format, "gguf", "{}", m.id);
            assert!(
                SUPPORTED_ARCHITECTURES.contains(&m.architecture.as_str()),
                "{}: {}",
                m.id,
                m.architecture
            );
            assert!(
                m.files.iter().all(|f| f.path.ends_with(".gguf")),
                "{}",
                m.id
            );
            assert!(!m.sources.is_empty(), "{} has no source", m.id);
            for s in &m.sources {
                if let Source::Huggingface { repo, .. } = s {
                    assert!(repo.contains('/'), "{}: repo {repo}", m.id);
                }
            }
            assert!(m.download_mb.is_some(), "{}: its download size", m.id);
        }
    }
}
