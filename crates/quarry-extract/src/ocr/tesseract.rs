//! Tesseract, opened at run time through its C API (`capi.h`).
//!
//! The library is loaded with `dlopen` rather than linked, so a Quarry
//! built here starts on a machine without Tesseract and says "OCR is not
//! available" instead of failing to start. One engine per worker thread and
//! language set is kept (initialising the LSTM model takes ~0.2 s).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use libloading::Library;

use super::{OcrError, Recognition};

#[repr(C)]
struct TessBaseApi {
    _private: [u8; 0],
}

#[repr(C)]
struct EtextDesc {
    _private: [u8; 0],
}

type CancelFn = extern "C" fn(*mut c_void, c_int) -> bool;

/// The functions of `capi.h` Quarry calls.
struct Api {
    _lib: Library,
    /// The `tessdata` folder beside the library, passed to Init when
    /// `TESSDATA_PREFIX` is not set (see [`tessdata_beside`]).
    tessdata: Option<CString>,
    version: unsafe extern "C" fn() -> *const c_char,
    create: unsafe extern "C" fn() -> *mut TessBaseApi,
    delete: unsafe extern "C" fn(*mut TessBaseApi),
    init3: unsafe extern "C" fn(*mut TessBaseApi, *const c_char, *const c_char) -> c_int,
    set_variable: unsafe extern "C" fn(*mut TessBaseApi, *const c_char, *const c_char) -> c_int,
    languages: unsafe extern "C" fn(*const TessBaseApi) -> *mut *mut c_char,
    delete_text_array: unsafe extern "C" fn(*mut *mut c_char),
    set_image: unsafe extern "C" fn(*mut TessBaseApi, *const u8, c_int, c_int, c_int, c_int),
    set_resolution: unsafe extern "C" fn(*mut TessBaseApi, c_int),
    recognize: unsafe extern "C" fn(*mut TessBaseApi, *mut EtextDesc) -> c_int,
    utf8_text: unsafe extern "C" fn(*mut TessBaseApi) -> *mut c_char,
    delete_text: unsafe extern "C" fn(*const c_char),
    mean_conf: unsafe extern "C" fn(*mut TessBaseApi) -> c_int,
    clear: unsafe extern "C" fn(*mut TessBaseApi),
    monitor_create: unsafe extern "C" fn() -> *mut EtextDesc,
    monitor_delete: unsafe extern "C" fn(*mut EtextDesc),
    monitor_cancel_fn: unsafe extern "C" fn(*mut EtextDesc, CancelFn),
    monitor_cancel_this: unsafe extern "C" fn(*mut EtextDesc, *mut c_void),
    monitor_deadline: unsafe extern "C" fn(*mut EtextDesc, c_int),
}

/// Where the library is looked for: `QUARRY_TESSERACT_LIB` first, then the
/// names the platform's packages install.
fn candidates() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(p) = std::env::var("QUARRY_TESSERACT_LIB") {
        names.push(p);
        return names;
    }
    let platform: &[&str] = if cfg!(target_os = "windows") {
        &[
            "libtesseract-5.dll",
            "tesseract55.dll",
            "tesseract54.dll",
            "tesseract53.dll",
            "C:\\Program Files\\Tesseract-OCR\\libtesseract-5.dll",
        ]
    } else if cfg!(target_os = "macos") {
        &[
            "libtesseract.5.dylib",
            "/opt/homebrew/lib/libtesseract.5.dylib",
            "/usr/local/lib/libtesseract.5.dylib",
            "/opt/local/lib/libtesseract.5.dylib",
        ]
    } else {
        &["libtesseract.so.5", "libtesseract.so"]
    };
    names.extend(platform.iter().map(|s| s.to_string()));
    names
}

/// The file a library name that loaded refers to, where Quarry can tell:
/// a path as given; on Windows, a bare name found on `PATH` (the loader
/// looks there too). Elsewhere a bare name is the system loader's business
/// and its folder holds no language data.
fn located(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.components().count() > 1 {
        return Some(path.to_path_buf());
    }
    if !cfg!(windows) {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The `tessdata` folder beside a Tesseract library, when it holds language
/// data. Tesseract's Windows builds (UB Mannheim's installer) keep their
/// languages there, but Tesseract looks for them beside the *program* that
/// loaded it — Quarry's — unless `TESSDATA_PREFIX` is set; passing this
/// folder makes the installer's default layout work as it is.
fn tessdata_beside(library: &Path) -> Option<PathBuf> {
    let dir = library.parent()?.join("tessdata");
    let has_language = std::fs::read_dir(&dir).ok()?.flatten().any(|e| {
        e.path()
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("traineddata"))
    });
    has_language.then_some(dir)
}

/// How to get Tesseract on this platform.
pub(super) fn install_hint() -> &'static str {
    if cfg!(target_os = "windows") {
        "install Tesseract 5 (the UB Mannheim build) and add its folder to PATH, or set QUARRY_TESSERACT_LIB to libtesseract-5.dll"
    } else if cfg!(target_os = "macos") {
        "brew install tesseract (more languages: brew install tesseract-lang)"
    } else {
        "install the tesseract-ocr package (Debian/Ubuntu: apt install tesseract-ocr tesseract-ocr-eng)"
    }
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the symbol's type is its declaration in Tesseract's capi.h.
        let s = unsafe { $lib.get($name) }
            .map_err(|e| format!("{}: {e}", String::from_utf8_lossy($name)))?;
        *s
    }};
}

impl Api {
    /// The data path for Init: Quarry's choice, or null for Tesseract's own.
    fn datapath(&self) -> *const c_char {
        self.tessdata
            .as_ref()
            .map_or(std::ptr::null(), |d| d.as_ptr())
    }

    fn load() -> Result<Api, String> {
        let mut errors = Vec::new();
        for name in candidates() {
            // SAFETY: loading Tesseract runs its static constructors only.
            match unsafe { Library::new(&name) } {
                Ok(lib) => {
                    let mut api = Api::from(lib)?;
                    api.tessdata = std::env::var_os("TESSDATA_PREFIX")
                        .is_none()
                        .then(|| located(&name))
                        .flatten()
                        .and_then(|lib| tessdata_beside(&lib))
                        .and_then(|d| CString::new(d.to_string_lossy().into_owned()).ok());
                    return Ok(api);
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(format!(
            "Tesseract was not found ({}); {}",
            errors.first().cloned().unwrap_or_default(),
            install_hint()
        ))
    }

    fn from(lib: Library) -> Result<Api, String> {
        Ok(Api {
            version: sym!(lib, b"TessVersion"),
            create: sym!(lib, b"TessBaseAPICreate"),
            delete: sym!(lib, b"TessBaseAPIDelete"),
            init3: sym!(lib, b"TessBaseAPIInit3"),
            set_variable: sym!(lib, b"TessBaseAPISetVariable"),
            languages: sym!(lib, b"TessBaseAPIGetAvailableLanguagesAsVector"),
            delete_text_array: sym!(lib, b"TessDeleteTextArray"),
            set_image: sym!(lib, b"TessBaseAPISetImage"),
            set_resolution: sym!(lib, b"TessBaseAPISetSourceResolution"),
            recognize: sym!(lib, b"TessBaseAPIRecognize"),
            utf8_text: sym!(lib, b"TessBaseAPIGetUTF8Text"),
            delete_text: sym!(lib, b"TessDeleteText"),
            mean_conf: sym!(lib, b"TessBaseAPIMeanTextConf"),
            clear: sym!(lib, b"TessBaseAPIClear"),
            monitor_create: sym!(lib, b"TessMonitorCreate"),
            monitor_delete: sym!(lib, b"TessMonitorDelete"),
            monitor_cancel_fn: sym!(lib, b"TessMonitorSetCancelFunc"),
            monitor_cancel_this: sym!(lib, b"TessMonitorSetCancelThis"),
            monitor_deadline: sym!(lib, b"TessMonitorSetDeadlineMSecs"),
            tessdata: None,
            _lib: lib,
        })
    }
}

fn api() -> Result<&'static Api, OcrError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(Api::load)
        .as_ref()
        .map_err(|e| OcrError::Unavailable(e.clone()))
}

/// Tesseract's version, when it can be loaded.
pub(super) fn version() -> Result<String, OcrError> {
    let api = api()?;
    // SAFETY: TessVersion returns a static NUL-terminated string.
    Ok(unsafe { CStr::from_ptr((api.version)()) }
        .to_string_lossy()
        .into_owned())
}

/// An initialised engine for one language set.
struct Engine {
    api: &'static Api,
    handle: *mut TessBaseApi,
    langs: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle came from TessBaseAPICreate and is deleted once.
        unsafe { (self.api.delete)(self.handle) }
    }
}

impl Engine {
    /// A bare handle (not initialised with a language).
    fn create() -> Result<Engine, OcrError> {
        let api = api()?;
        // SAFETY: plain constructor.
        let handle = unsafe { (api.create)() };
        if handle.is_null() {
            return Err(OcrError::Unavailable("TessBaseAPICreate failed".into()));
        }
        let engine = Engine {
            api,
            handle,
            langs: String::new(),
        };
        // Tesseract's own diagnostics would go to stderr, in the middle of
        // Quarry's progress lines: they go nowhere.
        engine.set(
            "debug_file",
            if cfg!(windows) { "NUL" } else { "/dev/null" },
        );
        Ok(engine)
    }

    fn set(&self, name: &str, value: &str) {
        let (n, v) = (cstring(name), cstring(value));
        // SAFETY: valid handle and NUL-terminated strings.
        unsafe { (self.api.set_variable)(self.handle, n.as_ptr(), v.as_ptr()) };
    }

    fn init(langs: &str) -> Result<Engine, OcrError> {
        // Tesseract starts with the languages it has and only warns about
        // the others: a missing one is found here, before it.
        if let Some(missing) = missing_languages(langs) {
            return Err(missing);
        }
        let mut engine = Engine::create()?;
        let l = cstring(langs);
        // SAFETY: valid handle; a null datapath means Tesseract's own default
        // (or TESSDATA_PREFIX).
        let rc = unsafe { (engine.api.init3)(engine.handle, engine.api.datapath(), l.as_ptr()) };
        if rc != 0 {
            return Err(missing_languages(langs).unwrap_or_else(|| {
                OcrError::Unavailable(format!("Tesseract could not load the languages {langs}"))
            }));
        }
        engine.set(
            "debug_file",
            if cfg!(windows) { "NUL" } else { "/dev/null" },
        );
        engine.langs = langs.to_string();
        Ok(engine)
    }

    /// The languages whose data is installed.
    fn languages(&self) -> Vec<String> {
        // SAFETY: the array is NULL-terminated and freed with its deleter.
        unsafe {
            let arr = (self.api.languages)(self.handle);
            if arr.is_null() {
                return Vec::new();
            }
            let mut out = Vec::new();
            let mut p = arr;
            while !(*p).is_null() {
                out.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
                p = p.add(1);
            }
            (self.api.delete_text_array)(arr);
            out
        }
    }

    /// Recognise an 8-bit grey image.
    fn recognize(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        dpi: u32,
        deadline: Duration,
        cancel: Option<&AtomicBool>,
    ) -> Result<Recognition, OcrError> {
        assert_eq!(pixels.len(), width as usize * height as usize);
        let api = self.api;
        // SAFETY: `pixels` outlives the call (Clear drops Tesseract's copy of
        // the pointer); the monitor is deleted on every path below.
        unsafe {
            (api.set_image)(
                self.handle,
                pixels.as_ptr(),
                width as c_int,
                height as c_int,
                1,
                width as c_int,
            );
            (api.set_resolution)(self.handle, dpi as c_int);
            let monitor = (api.monitor_create)();
            (api.monitor_cancel_fn)(monitor, cancel_requested);
            let flag = cancel.map_or(std::ptr::null_mut(), |c| {
                c as *const AtomicBool as *mut c_void
            });
            (api.monitor_cancel_this)(monitor, flag);
            (api.monitor_deadline)(monitor, deadline.as_millis().min(i32::MAX as u128) as c_int);
            let rc = (api.recognize)(self.handle, monitor);
            (api.monitor_delete)(monitor);
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                (api.clear)(self.handle);
                return Ok(Recognition::Cancelled);
            }
            if rc != 0 {
                (api.clear)(self.handle);
                return Ok(Recognition::TimedOut);
            }
            let text = (api.utf8_text)(self.handle);
            let out = if text.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(text).to_string_lossy().into_owned();
                (api.delete_text)(text);
                s
            };
            let conf = (api.mean_conf)(self.handle) as f32;
            (api.clear)(self.handle);
            Ok(Recognition::Text(out, conf))
        }
    }
}

/// Tesseract's cancel callback: the flag Quarry set, if any.
extern "C" fn cancel_requested(this: *mut c_void, _words: c_int) -> bool {
    if this.is_null() {
        return false;
    }
    // SAFETY: `this` is the &AtomicBool passed for the duration of Recognize.
    unsafe { &*(this as *const AtomicBool) }.load(Ordering::Relaxed)
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("NULs removed")
}

/// The installed languages (from a handle initialised with none).
pub(super) fn installed_languages() -> Result<Vec<String>, OcrError> {
    let engine = Engine::create()?;
    // Listing needs the data path, which Init sets; "osd" or any installed
    // language will do, and failing all, the list is read from a bare init.
    let empty = cstring("");
    // SAFETY: valid handle; empty language string loads no model.
    unsafe { (engine.api.init3)(engine.handle, engine.api.datapath(), empty.as_ptr()) };
    Ok(engine.languages())
}

/// The error for a language set some of whose data is not installed.
fn missing_languages(langs: &str) -> Option<OcrError> {
    let installed = installed_languages().ok()?;
    let missing: Vec<String> = langs
        .split('+')
        .filter(|l| !l.is_empty() && !installed.iter().any(|i| i == l))
        .map(str::to_string)
        .collect();
    (!missing.is_empty()).then(|| OcrError::MissingLanguages {
        hint: language_hint(&missing),
        missing,
        installed,
    })
}

/// The packages that bring the data of `missing` languages.
fn language_hint(missing: &[String]) -> String {
    if cfg!(target_os = "linux") {
        let pkgs: Vec<String> = missing
            .iter()
            .map(|l| format!("tesseract-ocr-{}", l.to_lowercase().replace('_', "-")))
            .collect();
        format!("Debian/Ubuntu: apt install {}", pkgs.join(" "))
    } else if cfg!(target_os = "macos") {
        "brew install tesseract-lang".into()
    } else {
        "add the languages' .traineddata files to Tesseract's tessdata folder".into()
    }
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Recognise a grey image with this thread's engine for `langs`.
pub(super) fn recognize(
    pixels: &[u8],
    width: u32,
    height: u32,
    dpi: u32,
    langs: &str,
    deadline: Duration,
    cancel: Option<&AtomicBool>,
) -> Result<Recognition, OcrError> {
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|e| e.langs != langs) {
            *slot = None;
            *slot = Some(Engine::init(langs)?);
        }
        let engine = slot.as_mut().expect("initialised above");
        engine.recognize(pixels, width, height, dpi, deadline, cancel)
    })
}

/// Check that `langs` can be loaded (initialises this thread's engine).
pub(super) fn check(langs: &str) -> Result<(), OcrError> {
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|e| e.langs != langs) {
            *slot = None;
            *slot = Some(Engine::init(langs)?);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_data_beside_the_library_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("libtesseract-5.dll");
        std::fs::write(&lib, b"").unwrap();
        // No tessdata folder, then an empty one: Tesseract's own default.
        assert_eq!(tessdata_beside(&lib), None);
        std::fs::create_dir(tmp.path().join("tessdata")).unwrap();
        assert_eq!(tessdata_beside(&lib), None);
        std::fs::write(tmp.path().join("tessdata/eng.traineddata"), b"").unwrap();
        assert_eq!(tessdata_beside(&lib), Some(tmp.path().join("tessdata")));
    }

    #[test]
    fn a_library_given_by_path_is_located_there() {
        let given = "C:/Program Files/Tesseract-OCR/libtesseract-5.dll";
        assert_eq!(located(given), Some(PathBuf::from(given)));
        if !cfg!(windows) {
            // A bare name is left to the system loader.
            assert_eq!(located("libtesseract.so.5"), None);
        }
    }
}
