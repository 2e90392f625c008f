//! The whole question pipeline behind `quarry ask`, the server and the app:
//! cached answer → retrieval → router → local model or (through the single
//! egress point) a frontier provider, with a fallback to the local model when
//! the provider fails, times out or the user declines to send.

use std::time::Instant;

use crate::answer::cache::AnswerCache;
use crate::answer::router::{decide, RouteInputs, RouteOverride, Target, TaskClassifier};
use crate::answer::whole::{bounded, needs_every_passage, Reader, WholeOptions, WholeTask};
use crate::answer::{
    build_prompt, cloud_messages, generate_local, local_budget, not_found, retrieve, show_evidence,
    Answer, AnswerEvent, AnswerOptions, AnswerTimings, CitedText, Route,
};
use crate::answer::{Retrieved, Source, WholeReading};
use crate::cloud::{Egress, Outbound, Policy, Preview};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::generate::{ChatMessage, LocalModel};
use crate::store::library::Library;
use crate::store::selection::select_documents;
use crate::store::Filter;

/// Most documents a whole reading takes from the best passages (a folder
/// or file filter chooses any number, bounded by their passages).
pub const WHOLE_DOCUMENTS: usize = 3;

/// Why a whole reading read what it read, in the user's terms.
fn whole_reason(paths: &[String], passages: usize, left_out: usize) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.clone())
        })
        .collect();
    let docs = if names.len() == 1 {
        format!("1 document ({})", names[0])
    } else {
        format!("{} documents ({})", names.len(), names.join(", "))
    };
    if left_out == 0 {
        format!("the question needs whole documents: read all {passages} passages of {docs} on this machine")
    } else {
        format!(
            "the question needs whole documents: read the first {} of {passages} passages of {docs} on this machine; choose a folder or file to read all of one",
            passages - left_out
        )
    }
}

/// What answering needs; everything but the library, embedder and model is optional.
pub struct Asker<'a> {
    /// The library.
    pub library: &'a Library,
    /// Its embedder.
    pub embedder: &'a Embedder,
    /// The local model.
    pub model: &'a mut LocalModel,
    /// The privacy policy in force.
    pub policy: &'a Policy,
    /// The task classifier (without one, only `--route cloud` or a too-large
    /// context sends a question to the provider).
    pub classifier: Option<&'a TaskClassifier>,
    /// The provider's egress, when one is configured.
    pub egress: Option<&'a Egress>,
    /// The library's answer cache.
    pub cache: Option<&'a mut AnswerCache>,
}

/// Options of one question.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// Retrieval and generation settings.
    pub answer: AnswerOptions,
    /// The per-question route override.
    pub route: RouteOverride,
    /// Use and fill the answer cache.
    pub use_cache: bool,
    /// The time (for the audit log).
    pub now: chrono::DateTime<chrono::Utc>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A cached answer, replayed as events and marked `cache`.
fn replay_cached(
    mut hit: Answer,
    started: Instant,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> Answer {
    on_event(AnswerEvent::Sources(hit.sources.clone()));
    hit.route.reason = format!(
        "the same question was answered before ({}) and the library has not changed since",
        hit.route.target
    );
    hit.route.target = "cache".into();
    on_event(AnswerEvent::Route(hit.route.clone()));
    on_event(AnswerEvent::Token(hit.answer.clone()));
    let total = ms(started.elapsed());
    hit.timings = AnswerTimings {
        first_token_ms: total,
        total_ms: total,
        ..Default::default()
    };
    hit
}

impl Asker<'_> {
    /// Answer `question`. `confirm` is shown exactly what would be sent when
    /// the privacy mode is `ask` (true sends); `on_event` receives the answer's
    /// events (false stops generation). A second [`AnswerEvent::Route`] means
    /// the provider failed and the local model answers instead.
    pub async fn ask(
        &mut self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
        confirm: &mut dyn FnMut(&Preview) -> bool,
        on_event: &mut dyn FnMut(AnswerEvent) -> bool,
    ) -> Result<Answer> {
        let started = Instant::now();
        // The question's embedding serves both the cache and the classifier.
        let vector = self.question_vector(question, opts)?;
        let embed_ms = ms(started.elapsed());
        // Everything that changes the answer is part of the cache key.
        let scope = format!(
            "{:?}|{}|{}|{}|{:?}|{}|{:?}|{:?}",
            opts.answer.filter,
            self.model.name(),
            opts.answer.generate.max_tokens,
            opts.answer.sources,
            opts.answer.min_similarity,
            opts.answer.min_keyword_evidence,
            opts.answer.trim,
            opts.answer.whole
        );
        let content_version = self.library.content_version().await?;
        let cacheable = opts.use_cache && history.is_empty() && opts.route == RouteOverride::Auto;
        if let (true, Some(cache), Some(v)) = (cacheable, self.cache.as_deref(), &vector) {
            if let Some(hit) = cache.lookup(question, v, &content_version, &scope) {
                return Ok(replay_cached(hit, started, on_event));
            }
        }
        let mut retrieved =
            retrieve(self.library, self.embedder, question, history, &opts.answer).await?;
        if self.reads_whole(question, &retrieved, opts) {
            let (answer, stopped) = self
                .read_whole(question, &retrieved, opts, started, on_event)
                .await?;
            if cacheable && !answer.answer.is_empty() && !stopped {
                self.remember(question, vector, &content_version, &scope, &answer);
            }
            return Ok(answer);
        }
        if !retrieved.relevant {
            return Ok(not_found(&retrieved, &opts.answer, started, on_event));
        }
        let (trimmed, evidence_ms) = show_evidence(&mut retrieved, &opts.answer, started, on_event);
        let budget = local_budget(self.model, &opts.answer);
        let (messages, fitted) = build_prompt(
            self.model,
            history,
            question,
            &trimmed,
            budget,
            opts.answer.reread,
        )?;
        let route_started = Instant::now();
        let verdict = match (self.classifier, &vector) {
            (Some(c), Some(v)) => {
                let mut verdict = c.classify_vector(question, v);
                verdict.ms = embed_ms + ms(route_started.elapsed());
                Some(verdict)
            }
            _ => None,
        };
        let left_out = trimmed.len() - fitted.len();
        let (target, reason) = self.decide_route(opts, verdict.as_ref(), &retrieved, left_out);
        let route_ms = ms(route_started.elapsed()) + if verdict.is_some() { embed_ms } else { 0.0 };
        // An answer cut short (the caller stopped it) or a fallback is not cached.
        let stopped = std::cell::Cell::new(false);
        let mut on_event = |e: AnswerEvent| {
            let go_on = on_event(e);
            if !go_on {
                stopped.set(true);
            }
            go_on
        };
        let on_event: &mut dyn FnMut(AnswerEvent) -> bool = &mut on_event;
        let mut fell_back = false;
        let mut answer = None;
        if target == Target::Cloud {
            let egress = self
                .egress
                .expect("decide() picks cloud only with a provider");
            let route = Route {
                target: "cloud".into(),
                reason: reason.clone(),
                model: Some(egress.provider().model.clone()),
                task: verdict.clone(),
                provider: Some(egress.provider().name.clone()),
            };
            match self
                .cloud(
                    egress, &retrieved, history, question, route, opts, started, confirm, on_event,
                )
                .await
            {
                Ok(a) => answer = Some(a),
                Err(
                    e @ (Error::Provider { .. } | Error::SendDeclined | Error::PrivacyBlocked(_)),
                ) => {
                    fell_back = true;
                    let why = match &e {
                        Error::SendDeclined => "sending was declined".to_string(),
                        // The request did leave: say so (the audit log has it).
                        Error::Provider { .. } => format!(
                            "{e} (the question and passages were sent; `quarry audit` lists the request)"
                        ),
                        other => other.to_string(),
                    };
                    let route = Route {
                        target: "local".into(),
                        reason: format!("{why}; answered on this machine instead"),
                        model: Some(self.model.name().to_string()),
                        task: verdict.clone(),
                        provider: None,
                    };
                    on_event(AnswerEvent::Sources(fitted.clone()));
                    on_event(AnswerEvent::Route(route.clone()));
                    answer = Some(generate_local(
                        self.model,
                        &retrieved,
                        &messages,
                        fitted.clone(),
                        route,
                        &opts.answer,
                        started,
                        on_event,
                    )?);
                }
                Err(e) => return Err(e),
            }
        }
        let mut answer = match answer {
            Some(a) => a,
            None => {
                let route = Route {
                    target: "local".into(),
                    reason,
                    model: Some(self.model.name().to_string()),
                    task: verdict.clone(),
                    provider: None,
                };
                on_event(AnswerEvent::Sources(fitted.clone()));
                on_event(AnswerEvent::Route(route.clone()));
                generate_local(
                    self.model,
                    &retrieved,
                    &messages,
                    fitted,
                    route,
                    &opts.answer,
                    started,
                    on_event,
                )?
            }
        };
        answer.timings.route_ms = route_ms;
        answer.timings.evidence_ms = evidence_ms;
        if cacheable && !answer.answer.is_empty() && !fell_back && !stopped.get() {
            self.remember(question, vector, &content_version, &scope, &answer);
        }
        Ok(answer)
    }

    /// Keep `answer` in the cache (one that cannot be written costs only a
    /// recomputation).
    fn remember(
        &mut self,
        question: &str,
        vector: Option<Vec<f32>>,
        content_version: &str,
        scope: &str,
        answer: &Answer,
    ) {
        if let (Some(cache), Some(v)) = (self.cache.as_deref_mut(), vector) {
            if let Err(e) = cache.insert(question, v, content_version, scope, answer) {
                tracing::warn!("answer cache: {e}");
            }
        }
    }

    /// Whether the question is answered from every passage of its documents.
    fn reads_whole(&self, question: &str, retrieved: &Retrieved, opts: &AskOptions) -> bool {
        let scoped = opts.answer.filter != Filter::default();
        let wanted = match opts.answer.whole {
            WholeReading::Never => false,
            WholeReading::Always => true,
            WholeReading::Auto => needs_every_passage(question),
        };
        // Without a folder or file chosen, the documents are those of the
        // best passages: there must be relevant ones.
        wanted && (scoped || retrieved.relevant)
    }

    /// Answer from every passage of the documents in scope: those the
    /// filter selects, else those of the best passages (at most
    /// [`WHOLE_DOCUMENTS`]). Always on this machine. Also says whether the
    /// caller stopped it.
    async fn read_whole(
        &mut self,
        question: &str,
        retrieved: &Retrieved,
        opts: &AskOptions,
        started: Instant,
        on_event: &mut dyn FnMut(AnswerEvent) -> bool,
    ) -> Result<(Answer, bool)> {
        let whole = WholeOptions::default();
        let paths = self.whole_scope(retrieved, opts).await?;
        let mut sources = Vec::new();
        for p in &paths {
            for h in self.library.passages_of(p)? {
                sources.push(Source::of_hit(sources.len() + 1, &h));
            }
        }
        let all = sources.len();
        let (sources, left_out) = bounded(sources, whole.max_passages);
        let route = Route {
            target: "local".into(),
            reason: whole_reason(&paths, all, left_out),
            model: Some(self.model.name().to_string()),
            task: None,
            provider: None,
        };
        on_event(AnswerEvent::Sources(sources.clone()));
        on_event(AnswerEvent::Route(route.clone()));
        let before = started.elapsed();
        let reading = Reader::new(self.model, WholeTask::Question(question), &whole, on_event)
            .read(&sources)?;
        let timings = AnswerTimings {
            retrieval_ms: ms(retrieved.elapsed),
            first_token_ms: ms(before + reading.first_token),
            total_ms: ms(started.elapsed()),
            prompt_tokens: reading.prompt_tokens,
            generated_tokens: reading.generated_tokens,
            prefill_tokens_per_s: reading.prompt_tokens as f64
                / reading.prefill.as_secs_f64().max(1e-9),
            decode_tokens_per_s: reading.generated_tokens as f64
                / reading.decode.as_secs_f64().max(1e-9),
            ..Default::default()
        };
        let stopped = reading.stopped;
        let answer = Answer::finished(
            retrieved,
            reading.text,
            (sources, reading.cited),
            route,
            timings,
        );
        Ok((answer, stopped))
    }

    /// The documents a whole reading covers, in order.
    async fn whole_scope(&self, retrieved: &Retrieved, opts: &AskOptions) -> Result<Vec<String>> {
        if opts.answer.filter != Filter::default() {
            let docs = select_documents(self.library, &opts.answer.filter, &[]).await?;
            return Ok(docs.into_iter().map(|d| d.path).collect());
        }
        let mut paths: Vec<String> = Vec::new();
        for c in &retrieved.candidates {
            if !paths.contains(&c.path) && paths.len() < WHOLE_DOCUMENTS {
                paths.push(c.path.clone());
            }
        }
        Ok(paths)
    }

    /// The question's embedding, when the classifier or the cache needs it.
    fn question_vector(&self, question: &str, opts: &AskOptions) -> Result<Option<Vec<f32>>> {
        let needs_vector = self.classifier.is_some() || (opts.use_cache && self.cache.is_some());
        if !needs_vector {
            return Ok(None);
        }
        Ok(Some(
            self.embedder.embed_raw(&[question.to_string()])?.remove(0),
        ))
    }

    /// Where the answer should come from, and why, in the user's terms.
    fn decide_route(
        &self,
        opts: &AskOptions,
        verdict: Option<&crate::answer::router::TaskVerdict>,
        retrieved: &crate::answer::Retrieved,
        sources_left_out: usize,
    ) -> (Target, String) {
        let egress_ok = if self.policy.allows_egress() {
            Ok(())
        } else {
            Err(format!("privacy mode is local-only ({})", self.policy.why))
        };
        let (target, reason) = decide(&RouteInputs {
            requested: opts.route,
            verdict,
            best_similarity: retrieved.best_similarity,
            sources_left_out,
            egress: egress_ok,
            provider: self.egress.map(|e| e.provider().name.as_str()),
        });
        if target != Target::Local || verdict.is_some() || opts.route != RouteOverride::Auto {
            return (target, reason);
        }
        // Nothing could be routed away: say why.
        let reason = if !self.policy.allows_egress() {
            format!(
                "privacy mode local-only ({}): answered on this machine",
                self.policy.why
            )
        } else if self.egress.is_none() {
            "no provider is configured: answered on this machine".into()
        } else {
            reason
        };
        (target, reason)
    }

    #[allow(clippy::too_many_arguments)]
    async fn cloud(
        &mut self,
        egress: &Egress,
        retrieved: &crate::answer::Retrieved,
        history: &[ChatMessage],
        question: &str,
        route: Route,
        opts: &AskOptions,
        started: Instant,
        confirm: &mut dyn FnMut(&Preview) -> bool,
        on_event: &mut dyn FnMut(AnswerEvent) -> bool,
    ) -> Result<Answer> {
        let sources = retrieved.candidates.clone();
        let mut documents: Vec<String> = Vec::new();
        for s in &sources {
            if !documents.contains(&s.path) {
                documents.push(s.path.clone());
            }
        }
        let outbound = Outbound {
            messages: cloud_messages(history, question, &sources),
            documents,
            max_tokens: opts.answer.generate.max_tokens,
            temperature: opts.answer.generate.temperature,
        };
        on_event(AnswerEvent::Sources(sources.clone()));
        on_event(AnswerEvent::Route(route.clone()));
        let mut text = CitedText::new(sources.len());
        let reply = egress
            .send(&outbound, opts.now, confirm, &mut |piece| {
                text.push(piece, on_event)
            })
            .await?;
        let (text, cited) = text.finish(&sources, on_event);
        on_event(AnswerEvent::Sent(reply.sent.clone()));
        let timings = AnswerTimings {
            retrieval_ms: ms(retrieved.elapsed),
            first_token_ms: ms(started.elapsed() - reply.elapsed + reply.first_token),
            total_ms: ms(started.elapsed()),
            ..Default::default()
        };
        let mut answer = Answer::finished(retrieved, text, (sources, cited), route, timings);
        answer.sent = Some(reply.sent);
        Ok(answer)
    }
}
