//! Tauri's build step for the desktop app: `tauri.conf.json` is read from the
//! top of the repository (the package root), the capabilities from here.

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new().capabilities_path_pattern("./src-tauri/capabilities/**/*"),
    )
    .expect("tauri build step");
}
