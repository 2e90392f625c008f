//! Picking the answer model for the machine.
//!
//! What this computer is (CPU, threads, vector extensions, memory) and how
//! fast it runs the decoder's products ([`crate::generate::probe_products`], a
//! few seconds) are measured once and kept in `machine.json` in the
//! configuration folder, with the speeds of the models measured on it. From
//! that, each registered answer model gets its expected speed and time to the
//! first word of a typical answer, and the recommendation is the largest model
//! that fits in memory and answers within a time budget. Models measured here
//! are judged on their measurement, the others on the probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{probe_products, ModelSpeed, ProductSpeed};
use crate::error::Result;
use crate::models::{ModelRole, ModelSpec, Registry};

/// Bumped when the probe changes, so older profiles are measured again.
const PROBE_VERSION: u32 = 1;
/// Time the probe spends measuring (after ~1 s of set-up).
const PROBE_TIME: Duration = Duration::from_secs(2);
/// A typical question's prompt: five sources cut to 600 characters, about
/// 720 tokens (`quarry eval --answers` on squaddev, BENCHMARKS.md).
pub const TYPICAL_PROMPT_TOKENS: usize = 720;
/// The default budget for the first word of an answer, seconds.
pub const DEFAULT_BUDGET_S: f64 = 10.0;

/// Share of the probe's product speed a whole model reaches on Quarry's
/// kernels: prefill also runs attention, norms and the Q6_K layers; decoding
/// streams the whole file (Q6_K layers and the output matrix too), close to
/// the probe's rate. Measured with Qwen2.5-Coder-1.5B Q4_K_M against the probe
/// on the same machine (`quarry models recommend --measure`, BENCHMARKS.md):
/// 0.67 and 1.06 on a 2-core AMD EPYC (Zen 4).
const PREFILL_SHARE: f64 = 0.67;
const DECODE_SHARE: f64 = 1.0;
/// Models whose weights Quarry's kernels do not cover (Q4_0, Q5_K, Q3_K…)
/// run on candle's quantized products, 2–4× slower per product (`cargo run
/// -p quarry-kernels --example qmatmul`). A middle value; `--measure`
/// replaces it.
const CANDLE_SHARE: f64 = 0.3;
/// Models under this many million weights spend much of a token on
/// per-operation overhead that a larger model amortises.
const SMALL_MODEL_PARAMS_M: u64 = 500;
/// Their share of the estimate: SmolLM2-135M (on Quarry's Q8_0 kernels)
/// measured 0.47 of the prefill and 0.37 of the decoding speed the estimate
/// gives it, relative to the 1.5B on the same machine (Intel Xeon, 2 cores,
/// `quarry models recommend --measure`, 2026-12-06).
const SMALL_MODEL_SHARE: f64 = 0.4;

/// What this computer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineFacts {
    /// The CPU's name.
    pub cpu: String,
    /// Threads the decoder runs on.
    pub threads: usize,
    /// The vector extensions Quarry's kernels use ("AVX-512 VNNI", "AVX2" or
    /// "none").
    pub simd: String,
    /// Installed memory, megabytes (0 when the OS does not say).
    pub memory_mb: u64,
}

impl MachineFacts {
    /// Read them from this machine.
    pub fn detect() -> Self {
        use quarry_kernels::quantized::Level;
        let sys = system();
        let cpu = sys
            .as_ref()
            .and_then(|s| s.cpus().first())
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        MachineFacts {
            cpu,
            threads: quarry_kernels::threads(),
            simd: match Level::detect() {
                Some(Level::Avx512Vnni) => "AVX-512 VNNI",
                Some(Level::Avx2) => "AVX2",
                None => "none",
            }
            .to_string(),
            memory_mb: sys.map_or(0, |s| s.total_memory() / 1_000_000),
        }
    }
}

/// The CPU and memory as the OS reports them (`None` where it cannot).
fn system() -> Option<sysinfo::System> {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind};
    sysinfo::System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_err(|e| tracing::debug!("cannot read the CPU and memory: {e}"))
    .ok()
}

/// Memory available for a model now, megabytes (`u64::MAX` when the OS does
/// not say: then every model is taken to fit).
pub fn available_memory_mb() -> u64 {
    system().map_or(u64::MAX, |s| s.available_memory() / 1_000_000)
}

/// The machine, its measured product speeds and the models measured on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineProfile {
    /// What the machine is.
    pub facts: MachineFacts,
    /// The decoder's product speeds.
    pub products: ProductSpeed,
    /// Models measured on this machine, by id.
    #[serde(default)]
    pub measured: BTreeMap<String, ModelSpeed>,
    /// When the probe ran (RFC 3339).
    pub probed_at: String,
    /// The probe's version.
    pub version: u32,
}

impl MachineProfile {
    /// The profile's file under a configuration folder.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("machine.json")
    }

    /// Probe this machine (a few seconds, both cores busy).
    pub fn probe() -> Result<Self> {
        Ok(MachineProfile {
            facts: MachineFacts::detect(),
            products: probe_products(PROBE_TIME)?,
            measured: BTreeMap::new(),
            probed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            version: PROBE_VERSION,
        })
    }

    /// The saved profile, if there is one for this machine as it is now (a
    /// different CPU, thread count, SIMD cap or probe version makes it stale;
    /// an unreadable file counts as none).
    pub fn load(config_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(config_dir)).ok()?;
        let p: MachineProfile = match serde_json::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", Self::path(config_dir).display());
                return None;
            }
        };
        let now = MachineFacts::detect();
        let same = p.version == PROBE_VERSION
            && p.facts.cpu == now.cpu
            && p.facts.threads == now.threads
            && p.facts.simd == now.simd;
        same.then_some(p)
    }

    /// The saved profile, or a new probe saved for next time; `fresh` probes
    /// again (keeping the models measured before).
    pub fn load_or_probe(config_dir: &Path, fresh: bool) -> Result<Self> {
        let old = Self::load(config_dir);
        if let (Some(p), false) = (&old, fresh) {
            return Ok(p.clone());
        }
        let mut p = Self::probe()?;
        if let Some(old) = old {
            p.measured = old.measured;
        }
        p.save(config_dir)?;
        Ok(p)
    }

    /// Write it atomically.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        fs_err::create_dir_all(config_dir)?;
        crate::fsio::write_atomically(&Self::path(config_dir), &text)
    }

    /// A model's expected speed: measured here, else estimated from the probe
    /// and the model's size (`None` for models the registry gives no size).
    pub fn speed_of(&self, spec: &ModelSpec) -> Option<(ModelSpeed, Basis)> {
        if let Some(m) = self.measured.get(&spec.id) {
            return Some((*m, Basis::Measured));
        }
        let params = spec.params_m? as f64 * 1e6;
        let bytes = spec.download_mb? as f64 * 1e6;
        let mut share = if self.products.kernels != "candle" && !on_quarry_kernels(spec) {
            CANDLE_SHARE
        } else {
            1.0
        };
        if spec.params_m? < SMALL_MODEL_PARAMS_M {
            share *= SMALL_MODEL_SHARE;
        }
        let speed = ModelSpeed {
            prefill_tok_s: PREFILL_SHARE * share * self.products.prefill_gmac_s * 1e9 / params,
            decode_tok_s: DECODE_SHARE * share * self.products.decode_gb_s * 1e9 / bytes,
            prompt_tokens: TYPICAL_PROMPT_TOKENS,
        };
        Some((speed, Basis::Estimated))
    }
}

/// Whether Quarry's kernels run a model's weights: the k-quants they cover,
/// Q8_0, and the types converted to Q8_0 at load (Q4_1, Q5_0, Q5_1, Q5_K).
fn on_quarry_kernels(spec: &ModelSpec) -> bool {
    matches!(
        spec.weights.as_deref(),
        Some(
            "q4_k_m"
                | "q4_k_s"
                | "q4_k"
                | "q5_k_m"
                | "q5_k_s"
                | "q5_k"
                | "q6_k"
                | "q8_0"
                | "q4_1"
                | "q5_0"
                | "q5_1"
        )
    )
}

/// Where a model's speed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The model ran on this machine.
    Measured,
    /// From the machine's probe and the model's size.
    Estimated,
}

/// How one answer model suits this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFit {
    /// Registry id.
    pub id: String,
    /// Installed in the models folder.
    pub installed: bool,
    /// Weights in its layers, millions.
    pub params_m: u64,
    /// Memory it needs, megabytes.
    pub ram_mb: u64,
    /// Prompt tokens per second.
    pub prefill_tok_s: f64,
    /// Generated tokens per second.
    pub decode_tok_s: f64,
    /// Seconds to the first word of an answer to a typical question.
    pub first_word_s: f64,
    /// Measured here or estimated.
    pub basis: Basis,
    /// Its memory is available.
    pub fits_memory: bool,
    /// Its first word comes within the budget.
    pub within_budget: bool,
}

impl ModelFit {
    /// One line for people: "~70 tok/s reading, ~14 writing, first word ~10 s
    /// (measured here)".
    pub fn describe(&self) -> String {
        format!(
            "~{:.0} tok/s reading, ~{:.0} writing, first word ~{:.0} s ({})",
            self.prefill_tok_s,
            self.decode_tok_s,
            self.first_word_s,
            match self.basis {
                Basis::Measured => "measured here",
                Basis::Estimated => "estimated for this machine",
            }
        )
    }
}

/// The answer models ranked for this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The budget for the first word, seconds.
    pub budget_s: f64,
    /// The typical prompt the first word is timed on, tokens.
    pub prompt_tokens: usize,
    /// Memory available now, megabytes.
    pub available_mb: u64,
    /// Every registered answer model, largest first.
    pub models: Vec<ModelFit>,
    /// The largest model that fits memory and the budget (the fastest that
    /// fits memory when none is within it).
    pub best: Option<String>,
    /// The same among installed models.
    pub best_installed: Option<String>,
}

/// Rank the registry's answer models (generators with a size) for `profile`
/// with `available_mb` of memory free, a first-word budget of `budget_s` on
/// a `prompt_tokens` prompt; `installed` says which are in the models folder.
pub fn recommend(
    registry: &Registry,
    installed: impl Fn(&ModelSpec) -> bool,
    profile: &MachineProfile,
    available_mb: u64,
    budget_s: f64,
    prompt_tokens: usize,
) -> Recommendation {
    let mut models: Vec<ModelFit> = registry
        .models()
        .iter()
        .filter(|m| m.role == ModelRole::Generator)
        .filter_map(|m| {
            let (speed, basis) = profile.speed_of(m)?;
            let ram_mb = m.ram_mb.unwrap_or(m.download_mb? * 3 / 2 + 500);
            let first_word_s = prompt_tokens as f64 / speed.prefill_tok_s.max(1e-9)
                + 1.0 / speed.decode_tok_s.max(1e-9);
            Some(ModelFit {
                id: m.id.clone(),
                installed: installed(m),
                params_m: m.params_m?,
                ram_mb,
                prefill_tok_s: speed.prefill_tok_s,
                decode_tok_s: speed.decode_tok_s,
                first_word_s,
                basis,
                fits_memory: ram_mb <= available_mb,
                within_budget: first_word_s <= budget_s,
            })
        })
        .collect();
    models.sort_by(|a, b| b.params_m.cmp(&a.params_m).then(a.id.cmp(&b.id)));
    let best = pick(models.iter());
    let best_installed = pick(models.iter().filter(|m| m.installed));
    Recommendation {
        budget_s,
        prompt_tokens,
        available_mb,
        models,
        best,
        best_installed,
    }
}

/// The largest model within memory and budget (installed first among equals),
/// else the quickest to its first word within memory.
fn pick<'a>(fits: impl Iterator<Item = &'a ModelFit> + Clone) -> Option<String> {
    let in_memory = fits.filter(|m| m.fits_memory);
    in_memory
        .clone()
        .filter(|m| m.within_budget)
        .max_by(|a, b| {
            a.params_m
                .cmp(&b.params_m)
                .then(a.installed.cmp(&b.installed))
        })
        .or_else(|| in_memory.min_by(|a, b| a.first_word_s.total_cmp(&b.first_word_s)))
        .map(|m| m.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(decode_gb_s: f64, prefill_gmac_s: f64) -> MachineProfile {
        MachineProfile {
            facts: MachineFacts {
                cpu: "test".into(),
                threads: 2,
                simd: "AVX2".into(),
                memory_mb: 16_000,
            },
            products: ProductSpeed {
                decode_gb_s,
                prefill_gmac_s,
                kernels: "Quarry AVX2".into(),
            },
            measured: BTreeMap::new(),
            probed_at: String::new(),
            version: PROBE_VERSION,
        }
    }

    fn rank(p: &MachineProfile, available_mb: u64, budget_s: f64) -> Recommendation {
        let r = Registry::builtin();
        recommend(
            &r,
            |m| m.id.starts_with("smollm2"),
            p,
            available_mb,
            budget_s,
            720,
        )
    }

    #[test]
    fn a_faster_machine_gets_a_larger_model() {
        let slow = rank(&profile(4.0, 30.0), 16_000, DEFAULT_BUDGET_S);
        let fast = rank(&profile(40.0, 600.0), 16_000, DEFAULT_BUDGET_S);
        let params = |r: &Recommendation| {
            let id = r.best.clone().unwrap();
            r.models.iter().find(|m| m.id == id).unwrap().params_m
        };
        assert!(params(&fast) > params(&slow), "{fast:#?}\n{slow:#?}");
        assert!(fast.models.iter().all(|m| m.basis == Basis::Estimated));
        // Only SmolLM2 is "installed" here.
        assert_eq!(
            fast.best_installed.as_deref(),
            Some("smollm2-135m-instruct-q4_1")
        );
        // The test model without a size is not an answer model.
        assert!(fast.models.iter().all(|m| !m.id.starts_with("gemma3")));
    }

    #[test]
    fn memory_and_budget_rule_models_out() {
        let p = profile(40.0, 600.0);
        let tight = rank(&p, 1_500, DEFAULT_BUDGET_S);
        let id = tight.best.unwrap();
        let fit = tight.models.iter().find(|m| m.id == id).unwrap();
        assert!(fit.ram_mb <= 1_500, "{fit:?}");
        // No model within a 1 ms budget: the quickest that fits memory.
        let none = rank(&p, 16_000, 0.001);
        assert!(none.models.iter().all(|m| !m.within_budget));
        let quickest = none
            .models
            .iter()
            .min_by(|a, b| a.first_word_s.total_cmp(&b.first_word_s))
            .unwrap();
        assert_eq!(none.best.as_deref(), Some(quickest.id.as_str()));
    }

    #[test]
    fn a_measured_speed_overrides_the_estimate() {
        let mut p = profile(40.0, 600.0);
        let id = "qwen2.5-coder-1.5b-instruct-q4_k_m";
        p.measured.insert(
            id.into(),
            ModelSpeed {
                prefill_tok_s: 1.0,
                decode_tok_s: 1.0,
                prompt_tokens: 500,
            },
        );
        let r = rank(&p, 16_000, DEFAULT_BUDGET_S);
        let fit = r.models.iter().find(|m| m.id == id).unwrap();
        assert_eq!(fit.basis, Basis::Measured);
        assert!(fit.first_word_s > 700.0 && !fit.within_budget);
        assert!(fit.describe().contains("measured here"));
    }

    #[test]
    fn profiles_round_trip_and_a_bad_file_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = profile(10.0, 100.0);
        p.facts = MachineFacts::detect();
        p.save(dir.path()).unwrap();
        assert_eq!(MachineProfile::load(dir.path()), Some(p.clone()));
        // Another CPU: stale.
        p.facts.cpu.push_str(" (other)");
        p.save(dir.path()).unwrap();
        assert_eq!(MachineProfile::load(dir.path()), None);
        std::fs::write(MachineProfile::path(dir.path()), "{not json").unwrap();
        assert_eq!(MachineProfile::load(dir.path()), None);
    }
}
