//! Opening a document in the system's viewer, at the cited page where the
//! viewer takes one (the PDF viewers of Linux desktops do; macOS's and
//! Windows' default handlers are given the file only).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// How a document was opened, for the UI to say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Opened {
    /// The program or handler that got the file.
    pub with: String,
    /// The page it was opened at, when the viewer was told one.
    pub page: Option<u32>,
}

/// Open `path` (at `page` for PDFs, where the viewer allows). `open_with` is
/// a command to use instead of the platform's default (a user's preferred
/// viewer, or a test's recorder); it gets the path, then `--page N` for a
/// page. The viewer runs detached; this returns once it has started.
pub fn open(
    path: &Path,
    page: Option<u32>,
    open_with: Option<OsString>,
) -> std::io::Result<Opened> {
    let is_pdf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pdf"));
    let page = page.filter(|p| is_pdf && *p > 0);
    if let Some(program) = open_with.filter(|p| !p.is_empty()) {
        let mut cmd = Command::new(&program);
        cmd.arg(path);
        if let Some(p) = page {
            cmd.arg("--page").arg(p.to_string());
        }
        spawn_detached(cmd)?;
        return Ok(Opened {
            with: program.to_string_lossy().into_owned(),
            page,
        });
    }
    if let Some(p) = page {
        if let Some((viewer, cmd)) = pdf_viewer_at_page(path, p) {
            spawn_detached(cmd)?;
            return Ok(Opened {
                with: viewer,
                page: Some(p),
            });
        }
    }
    ::open::that_detached(path)?;
    Ok(Opened {
        with: "the default application".into(),
        page: None,
    })
}

/// Run `cmd` without waiting for it; a thread reaps it when it exits.
fn spawn_detached(mut cmd: Command) -> std::io::Result<()> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// The default PDF viewer of a Linux desktop, told to show page `page`, when
/// it is one whose page option is known.
#[cfg(all(unix, not(target_os = "macos")))]
fn pdf_viewer_at_page(path: &Path, page: u32) -> Option<(String, Command)> {
    let out = Command::new("xdg-mime")
        .args(["query", "default", "application/pdf"])
        .output()
        .ok()?;
    let desktop = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let (program, args) = page_args(&desktop, page)?;
    let mut cmd = Command::new(program);
    cmd.args(args).arg(path);
    Some((program.to_string(), cmd))
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn pdf_viewer_at_page(_path: &Path, _page: u32) -> Option<(String, Command)> {
    None
}

/// The program and its page arguments for a viewer's desktop entry name.
#[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
fn page_args(desktop_entry: &str, page: u32) -> Option<(&'static str, Vec<String>)> {
    type PageArgs = fn(u32) -> Vec<String>;
    let known: [(&str, &'static str, PageArgs); 5] = [
        ("evince", "evince", |p| vec![format!("--page-index={p}")]),
        ("papers", "papers", |p| vec![format!("--page-index={p}")]),
        ("okular", "okular", |p| vec!["--page".into(), p.to_string()]),
        ("zathura", "zathura", |p| vec![format!("--page={p}")]),
        ("atril", "atril", |p| vec![format!("--page-index={p}")]),
    ];
    known
        .iter()
        .find(|(name, _, _)| desktop_entry.contains(name))
        .map(|(_, program, args)| (*program, args(page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_viewers_get_their_page_option() {
        assert_eq!(
            page_args("org.gnome.evince.desktop\n", 3),
            Some(("evince", vec!["--page-index=3".to_string()]))
        );
        assert_eq!(
            page_args("okularapplication_pdf.desktop", 7),
            Some(("okular", vec!["--page".to_string(), "7".to_string()]))
        );
        assert_eq!(page_args("libreoffice-draw.desktop", 2), None);
    }

    #[test]
    fn a_custom_command_gets_the_path_and_the_page_of_a_pdf_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args.txt");
        let script = dir.path().join("viewer.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let pdf = dir.path().join("a.pdf");
            let txt = dir.path().join("b.txt");
            let opened = open(&pdf, Some(4), Some(script.clone().into())).unwrap();
            assert_eq!(opened.page, Some(4));
            let opened = open(&txt, Some(4), Some(script.clone().into())).unwrap();
            assert_eq!(opened.page, None, "pages only mean something in PDFs");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let got = std::fs::read_to_string(&log).unwrap_or_default();
                if got.lines().count() == 2 {
                    assert!(
                        got.contains(&format!("{} --page 4", pdf.display())),
                        "{got}"
                    );
                    assert!(got.contains(&format!("{}\n", txt.display())), "{got}");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "viewer never ran: {got}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
