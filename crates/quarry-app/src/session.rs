//! The ask session every front-end builds the same way: the privacy policy
//! in force for the library, the egress to a provider when one is configured,
//! and an [`Asker`] over the library, its embedder and the local model.

use std::path::{Path, PathBuf};

use quarry_core::answer::ask::{AskOptions, Asker};
use quarry_core::answer::cache::AnswerCache;
use quarry_core::answer::router::{RouteOverride, TaskClassifier};
use quarry_core::answer::AnswerOptions;
use quarry_core::cloud::{Egress, Policy, PrivacyMode};
use quarry_core::generate::LocalModel;
use quarry_core::models::ModelStore;
use quarry_core::{Embedder, Library, Result};

/// Where a question may go: the policy in force and, when a provider is
/// configured, the one way to it.
pub struct Routing {
    /// The privacy policy in force.
    pub policy: Policy,
    /// The provider's egress, when one is configured.
    pub egress: Option<Egress>,
}

impl Routing {
    /// The routing for `library` (its settings as on disk now), with an
    /// optional per-question privacy mode and provider; keys come from the
    /// environment or the OS keychain.
    pub fn for_library(
        config_dir: &Path,
        library: &Library,
        privacy: Option<PrivacyMode>,
        provider: Option<&str>,
    ) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok();
        let (policy, egress) =
            quarry_core::cloud::setup(config_dir, library, privacy, provider, &env, true)?;
        Ok(Routing { policy, egress })
    }

    /// Whether anything could be routed away (only then does the task
    /// classifier matter).
    pub fn may_route_away(&self) -> bool {
        self.egress.is_some() && self.policy.allows_egress()
    }

    /// An asker over these parts, under this routing.
    pub fn asker<'a>(
        &'a self,
        (library, embedder, model): (&'a Library, &'a Embedder, &'a mut LocalModel),
        classifier: Option<&'a TaskClassifier>,
        cache: Option<&'a mut AnswerCache>,
    ) -> Asker<'a> {
        Asker {
            library,
            embedder,
            model,
            policy: &self.policy,
            classifier: classifier.filter(|_| self.may_route_away()),
            egress: self.egress.as_ref(),
            cache,
        }
    }
}

/// The options of one question, stamped with the current time (read here, at
/// the edge, and passed into the engine for the audit log).
pub fn ask_options(answer: AnswerOptions, route: RouteOverride, use_cache: bool) -> AskOptions {
    AskOptions {
        answer,
        route,
        use_cache,
        now: chrono::Utc::now(),
    }
}

/// Where the router caches its example vectors.
pub fn router_cache_dir(store: &ModelStore) -> PathBuf {
    store.root().join(".router")
}

/// The router's task classifier over `embedder`, when something could be
/// routed away (`None` otherwise: building it embeds ~120 examples).
pub fn classifier_for(
    routing: &Routing,
    embedder: &Embedder,
    store: &ModelStore,
) -> Result<Option<TaskClassifier>> {
    if !routing.may_route_away() {
        return Ok(None);
    }
    TaskClassifier::builtin(embedder, &router_cache_dir(store)).map(Some)
}
