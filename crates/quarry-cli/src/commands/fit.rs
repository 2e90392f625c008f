//! `quarry models recommend` and `quarry models use`: picking the answer
//! model for this machine, and choosing the one commands use by default.

use anyhow::{bail, Context as _, Result};
use quarry_core::generate::machine::{
    available_memory_mb, recommend, MachineProfile, Recommendation, TYPICAL_PROMPT_TOKENS,
};
use quarry_core::generate::measure_model;
use quarry_core::models::ModelRole;

use crate::context::Context;

/// Options of `quarry models recommend`.
#[derive(clap::Args)]
pub struct RecommendArgs {
    /// Seconds you will wait for the first word of an answer.
    #[arg(long, default_value_t = quarry_core::generate::machine::DEFAULT_BUDGET_S)]
    pub budget: f64,
    /// Prompt tokens of a typical question (five sources cut to 600 characters).
    #[arg(long, default_value_t = TYPICAL_PROMPT_TOKENS)]
    pub prompt_tokens: usize,
    /// Run installed answer models on a typical prompt and keep their
    /// measured speeds (about 10 s per billion weights on 2 cores): the ids
    /// given, or every installed one.
    #[arg(long, num_args = 0.., value_delimiter = ',', value_name = "ID")]
    pub measure: Option<Vec<String>>,
    /// Probe the machine again (otherwise the saved probe is used).
    #[arg(long)]
    pub reprobe: bool,
    /// Use the best installed model for answers from now on.
    #[arg(long)]
    pub apply: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `quarry models recommend`.
pub fn models_recommend(ctx: &Context, args: RecommendArgs) -> Result<()> {
    if !args.budget.is_finite() || args.budget <= 0.0 {
        bail!("--budget must be a positive number of seconds");
    }
    let config = &ctx.dirs.config;
    if !args.json && (args.reprobe || MachineProfile::load(config).is_none()) {
        eprintln!("probing this machine's speed (a few seconds)…");
    }
    let mut profile =
        MachineProfile::load_or_probe(config, args.reprobe).context("probing this machine")?;
    if let Some(ids) = &args.measure {
        measure_installed(ctx, &mut profile, ids, args.prompt_tokens, args.json)?;
        profile.save(config)?;
    }
    let rec = recommend(
        ctx.store.registry(),
        |m| ctx.store.is_installed(m),
        &profile,
        available_memory_mb(),
        args.budget,
        args.prompt_tokens,
    );
    if args.json {
        let out = serde_json::json!({"machine": profile, "recommendation": rec,
            "in_use": ctx.store.generator_name(None)?});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_recommendation(ctx, &profile, &rec)?;
    }
    if args.apply {
        apply(ctx, &rec, args.json)?;
    }
    Ok(())
}

/// Measure the installed answer models named by `ids` (all when empty) on a
/// `prompt_tokens` prompt.
fn measure_installed(
    ctx: &Context,
    profile: &mut MachineProfile,
    ids: &[String],
    prompt_tokens: usize,
    quiet: bool,
) -> Result<()> {
    let registry = ctx.store.registry();
    for id in ids {
        let m = registry.get(id)?;
        if m.role != ModelRole::Generator || m.params_m.is_none() {
            bail!("{id} is not an answer model");
        }
        if !ctx.store.is_installed(m) {
            bail!("{id} is not installed: quarry models fetch {id}");
        }
    }
    let answer_models = registry.models().iter().filter(|m| {
        m.role == ModelRole::Generator
            && m.params_m.is_some()
            && ctx.store.is_installed(m)
            && (ids.is_empty() || ids.contains(&m.id))
    });
    for m in answer_models {
        if !quiet {
            eprintln!("measuring {} on a {prompt_tokens}-token prompt…", m.id);
        }
        let mut model = crate::commands::ask::load_generator(ctx, Some(&m.id))?;
        let speed = measure_model(&mut model, prompt_tokens)
            .with_context(|| format!("measuring {}", m.id))?;
        profile.measured.insert(m.id.clone(), speed);
    }
    Ok(())
}

fn print_recommendation(
    ctx: &Context,
    profile: &MachineProfile,
    rec: &Recommendation,
) -> Result<()> {
    let f = &profile.facts;
    let free = if rec.available_mb == u64::MAX {
        "free memory unknown".to_string()
    } else {
        format!("{:.1} GB free", rec.available_mb as f64 / 1000.0)
    };
    println!(
        "this machine: {}, {} threads, {}, {:.1} GB memory ({free})",
        f.cpu,
        f.threads,
        if f.simd == "none" {
            "no AVX2 (portable kernels)"
        } else {
            &f.simd
        },
        f.memory_mb as f64 / 1000.0,
    );
    println!(
        "probe ({}, {}): {:.1} GB/s of weights per token, {:.0} G multiply-adds/s over a prompt",
        profile.products.kernels,
        profile.probed_at,
        profile.products.decode_gb_s,
        profile.products.prefill_gmac_s
    );
    println!(
        "first word of a typical answer ({} prompt tokens), budget {:.0} s:",
        rec.prompt_tokens, rec.budget_s
    );
    for m in &rec.models {
        let mark = match (&rec.best, m.installed) {
            (Some(b), _) if *b == m.id => "→",
            (_, true) => "✓",
            _ => " ",
        };
        let verdict = if !m.fits_memory {
            format!(" — needs ~{:.1} GB free", m.ram_mb as f64 / 1000.0)
        } else if !m.within_budget {
            " — over budget".to_string()
        } else {
            String::new()
        };
        println!("{mark} {:<36} {}{verdict}", m.id, m.describe());
    }
    let in_use = ctx.store.generator_name(None)?;
    match (&rec.best, &rec.best_installed) {
        (Some(best), _) if !rec.models.iter().any(|m| &m.id == best && m.installed) => {
            println!("recommended: {best} (not installed: quarry models fetch {best})");
            if let Some(inst) = &rec.best_installed {
                println!("best installed: {inst}");
            }
        }
        (Some(best), _) => println!("recommended: {best} (installed)"),
        (None, _) => println!("no answer model fits in the memory free now"),
    }
    println!("answers use: {in_use} (change with: quarry models use ID, or --apply)");
    Ok(())
}

/// Choose the best installed model for answers.
fn apply(ctx: &Context, rec: &Recommendation, quiet: bool) -> Result<()> {
    let Some(id) = &rec.best_installed else {
        bail!("no installed answer model fits this machine's free memory; fetch one with `quarry models fetch ID`");
    };
    set_choice(ctx, Some(id.clone()))?;
    if !quiet {
        println!("answers now use {id}");
    }
    Ok(())
}

/// Save (or with `None` clear) the user's answer model.
fn set_choice(ctx: &Context, id: Option<String>) -> Result<()> {
    let mut settings = ctx.settings()?;
    settings.generator = id;
    settings.save(&ctx.dirs.config)?;
    Ok(())
}

/// Run `quarry models use ID|PATH.gguf` (or `--default`).
pub fn models_use(ctx: &Context, model: Option<String>) -> Result<()> {
    let Some(model) = model else {
        set_choice(ctx, None)?;
        let id = ctx.store.default_id(ModelRole::Generator)?;
        println!("answers use the registry's default: {id}");
        return Ok(());
    };
    // The file must exist and be a generator that is installed.
    let file = ctx
        .store
        .generator_file(Some(&model))
        .with_context(|| format!("{model} cannot be used for answers"))?;
    if !file.is_file() {
        bail!("{} does not exist", file.display());
    }
    if let Ok(spec) = ctx.store.registry().get(&model) {
        if spec.role != ModelRole::Generator {
            bail!("{model} is not an answer model (its role: {:?})", spec.role);
        }
    }
    set_choice(ctx, Some(model.clone()))?;
    println!("answers now use {model} ({})", file.display());
    Ok(())
}
