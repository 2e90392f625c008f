//! An OpenAI-compatible endpoint, so other tools can use Quarry as a private
//! model: `GET /v1/models` and `POST /v1/chat/completions` (streaming or not).
//!
//! Two models are offered: `quarry-rag` answers the last user message with
//! retrieval over the library and citations (the local pipeline; never routed
//! off the machine), and the local generator's own id chats with the messages
//! as given (no retrieval), which is what another Quarry sends when it uses
//! this server as its provider.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use quarry_core::answer::{answer, AnswerEvent, AnswerOptions};
use quarry_core::generate::{ChatMessage, GenerateOptions};
use serde::Deserialize;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use quarry_app::{AppError, Engine};

/// The retrieval-augmented model id.
pub const RAG_MODEL: &str = "quarry-rag";

/// `GET /v1/models`.
pub async fn models(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    let created = chrono::Utc::now().timestamp();
    Json(serde_json::json!({
        "object": "list",
        "data": [
            {"id": RAG_MODEL, "object": "model", "created": created, "owned_by": "quarry"},
            {"id": engine.model_name(), "object": "model", "created": created, "owned_by": "quarry"},
        ]
    }))
}

/// A message's content: a string or a list of parts (only text parts are read).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<serde_json::Value>),
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A chat message as clients send it.
#[derive(Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (others are ignored).
    pub role: String,
    /// Its content.
    #[serde(default)]
    pub content: Option<Content>,
}

/// The request body (the fields Quarry honours; others are ignored).
#[derive(Deserialize)]
pub struct ChatRequest {
    /// `quarry-rag` or the local generator's id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Most answer tokens.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Same, newer name.
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Stop sequences (a string or a list).
    #[serde(default)]
    pub stop: Option<serde_json::Value>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn openai_error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"message": message, "type": kind, "code": kind}})),
    )
        .into_response()
}

fn app_error(e: AppError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    openai_error(status, &e.code, e.message)
}

struct Completion {
    id: String,
    created: i64,
    model: String,
}

impl Completion {
    fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Event {
        Event::default().data(
            serde_json::json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    }
}

/// What the blocking generator reports.
enum Piece {
    Text(String),
    Done {
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(AppError),
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(engine): State<Arc<Engine>>,
    Json(req): Json<ChatRequest>,
) -> Response {
    let rag = req.model == RAG_MODEL || req.model == "quarry";
    if !rag && req.model != engine.model_name() {
        return openai_error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "model '{}' is not served here; use '{RAG_MODEL}' or '{}'",
                req.model,
                engine.model_name()
            ),
        );
    }
    let messages: Vec<ChatMessage> = req
        .messages
        .iter()
        .filter(|m| {
            matches!(
                m.role.as_str(),
                "system" | "user" | "assistant" | "developer"
            )
        })
        .map(|m| {
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            ChatMessage::new(
                role,
                m.content.as_ref().map(Content::text).unwrap_or_default(),
            )
        })
        .collect();
    if !messages.iter().any(|m| m.role == "user") {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages must include a user message".into(),
        );
    }
    let mut gen = GenerateOptions {
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(512)
            .clamp(1, 4096),
        temperature: req.temperature.unwrap_or(0.0),
        top_p: req.top_p.unwrap_or(0.9),
        ..Default::default()
    };
    if let Some(seed) = req.seed {
        gen.seed = seed;
    }
    gen.stop = match &req.stop {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
    let handle = tokio::runtime::Handle::current();
    let worker_engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let result = if rag {
            rag_blocking(&worker_engine, &handle, messages, gen, &tx)
        } else {
            chat_blocking(&worker_engine, &messages, &gen, &tx)
        };
        if let Err(e) = result {
            let _ = tx.send(Piece::Failed(e));
        }
    });
    let completion = Completion {
        id: format!("chatcmpl-{:016x}", rand_id()),
        created: chrono::Utc::now().timestamp(),
        model: req.model.clone(),
    };
    if req.stream {
        let mut first = true;
        let stream = UnboundedReceiverStream::new(rx).map(move |piece| {
            let ev = match piece {
                Piece::Text(t) => {
                    let delta = if first {
                        serde_json::json!({"role": "assistant", "content": t})
                    } else {
                        serde_json::json!({"content": t})
                    };
                    first = false;
                    vec![completion.chunk(delta, None)]
                }
                Piece::Done { .. } => vec![
                    completion.chunk(serde_json::json!({}), Some("stop")),
                    Event::default().data("[DONE]"),
                ],
                Piece::Failed(e) => vec![Event::default().data(e.body().to_string())],
            };
            futures::stream::iter(ev.into_iter().map(Ok::<_, Infallible>))
        });
        return Sse::new(futures::StreamExt::flatten(stream))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let mut rx = rx;
    let mut text = String::new();
    let mut usage = (0, 0);
    while let Some(piece) = rx.recv().await {
        match piece {
            Piece::Text(t) => text.push_str(&t),
            Piece::Done {
                prompt_tokens,
                completion_tokens,
            } => usage = (prompt_tokens, completion_tokens),
            Piece::Failed(e) => return app_error(e),
        }
    }
    Json(serde_json::json!({
        "id": completion.id, "object": "chat.completion", "created": completion.created,
        "model": completion.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1},
    }))
    .into_response()
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Plain chat with the local model over the messages as given.
fn chat_blocking(
    engine: &Engine,
    messages: &[ChatMessage],
    gen: &GenerateOptions,
    tx: &tokio::sync::mpsc::UnboundedSender<Piece>,
) -> Result<(), AppError> {
    let mut guard = engine.lock_model()?;
    let model = guard.as_mut().expect("loaded by lock_model");
    let prompt = model.render_chat(messages)?;
    let needed = model.count_tokens(&prompt) + gen.max_tokens;
    if needed > model.context_length() {
        return Err(AppError::user(
            "context_length_exceeded",
            format!(
                "the prompt and max_tokens need {needed} tokens; the model's window is {}",
                model.context_length()
            ),
        ));
    }
    let (_, stats) = model.generate(&prompt, gen, &mut |t| {
        // Empty: a reasoning token, not shown (a closed connection still stops it).
        tx.send(Piece::Text(t.to_string())).is_ok()
    })?;
    let _ = tx.send(Piece::Done {
        prompt_tokens: stats.prompt_tokens,
        completion_tokens: stats.generated_tokens,
    });
    Ok(())
}

/// Retrieval-augmented answer to the last user message, sources appended.
fn rag_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    mut messages: Vec<ChatMessage>,
    gen: GenerateOptions,
    tx: &tokio::sync::mpsc::UnboundedSender<Piece>,
) -> Result<(), AppError> {
    let last_user = messages
        .iter()
        .rposition(|m| m.role == "user")
        .expect("checked by the caller");
    let question = messages.remove(last_user).content;
    let history: Vec<ChatMessage> = messages
        .into_iter()
        .take(last_user)
        .filter(|m| m.role != "system")
        .collect();
    let opts = AnswerOptions {
        generate: gen,
        ..Default::default()
    };
    let (lib, embedder) = engine.library_and_embedder();
    let mut guard = engine.lock_model()?;
    let model = guard.as_mut().expect("loaded by lock_model");
    let mut on_event = |e: AnswerEvent| match e {
        AnswerEvent::Token(t) => tx.send(Piece::Text(t)).is_ok(),
        _ => true,
    };
    let a = handle.block_on(answer(
        &lib,
        &embedder,
        model,
        &question,
        &history,
        &opts,
        &mut on_event,
    ))?;
    if !a.sources.is_empty() {
        let mut tail = String::from("\n\nSources:");
        for s in a.sources.iter().filter(|s| a.cited.contains(&s.n)) {
            tail.push_str(&format!("\n[{}] {}", s.n, s.path));
            if let Some(p) = s.page {
                tail.push_str(&format!(", page {p}"));
            }
        }
        if a.cited.is_empty() {
            tail.clear();
        }
        if !tail.is_empty() {
            let _ = tx.send(Piece::Text(tail));
        }
    }
    let _ = tx.send(Piece::Done {
        prompt_tokens: a.timings.prompt_tokens,
        completion_tokens: a.timings.generated_tokens,
    });
    Ok(())
}
