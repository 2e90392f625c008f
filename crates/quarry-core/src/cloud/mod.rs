//! Remote providers and the rules for using them: [`privacy`] decides whether
//! text may leave the machine, [`providers`] holds the configured endpoints
//! and finds their keys, [`redact`] hides personal data, [`audit`] records
//! every outbound request, and [`egress`] is the single place that sends.

pub mod audit;
pub mod egress;
pub mod privacy;
pub mod providers;
pub mod redact;

pub use egress::{CloudReply, Egress, Outbound, Preview};
pub use privacy::{LibraryPrivacy, Policy, PrivacyMode, Settings};
pub use providers::{ApiKey, KeySource, Provider, Providers};

use std::path::Path;

use crate::error::Result;
use crate::store::library::Library;

/// The policy in force for `library` and, when a provider is configured, the
/// egress to it: what the CLI, the server and the app build before asking.
/// `preferred` names a provider (default: the settings' provider, else the
/// first configured one); `env` looks up environment variables for keys.
pub fn setup(
    config_dir: &Path,
    library: &Library,
    flag: Option<PrivacyMode>,
    preferred: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    use_keychain: bool,
) -> Result<(Policy, Option<Egress>)> {
    let settings = Settings::load(config_dir)?;
    // The library's settings as on disk now: another process (`quarry privacy`)
    // may have marked it never-leaves-device since this handle was opened.
    let privacy = crate::store::library::read_meta(library.dir())
        .map(|m| m.privacy)
        .unwrap_or_else(|_| library.meta().privacy.clone());
    let policy = Policy::resolve(flag, &privacy, &settings);
    let providers = Providers::load(config_dir)?;
    // A provider named for this command must exist; a stale default is ignored.
    if let Some(name) = preferred {
        providers.get(name)?;
    }
    let wanted = preferred.or(settings
        .provider
        .as_deref()
        .filter(|n| providers.get(n).is_ok()));
    let egress = providers.choose(wanted).map(|p| {
        // Keys are only looked up when something may be sent.
        let key = if policy.allows_egress() {
            providers::find_key(p, env, use_keychain).0
        } else {
            None
        };
        Egress::new(policy.clone(), p.clone(), key, library.dir().to_path_buf())
    });
    Ok((policy, egress))
}
