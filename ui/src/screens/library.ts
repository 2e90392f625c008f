// The Library screen: folders, their counts, indexing progress, skipped and failed files.

import { $, el, showError } from "../dom";
import { humanBytes, humanDuration, readyShare, sentence } from "../format";
import { QuarryError, type FolderStatus, type Progress, type Transport } from "../transport";

/** What the Library screen needs from the rest of the app. */
export interface LibraryDeps {
  /** Tell Search how much of the library meaning search covers (`pending` chunks still lack vectors). */
  showCoverage(chunks: number, pending: number): void;
  /** The engine has no models yet (a first run): `e` says which is missing. */
  onModelsMissing(e: QuarryError): void;
}

/** What the Library screen offers the rest of the app. */
export interface Library {
  /** Re-read the library's status and redraw the screen (and Search's coverage line). */
  refreshStatus(): Promise<void>;
  /** Follow the indexing run's progress until it ends, then refresh. */
  watchIndexing(): void;
}

/** Wire the Library screen's controls to `api`; nothing is fetched until `refreshStatus`. */
export function initLibrary(api: Transport, deps: LibraryDeps): Library {
  /** The library's folders, as last read. */
  let folders: string[] = [];
  /** What Resume indexes: a stopped run's paths (or every folder), else none. */
  let resumePaths: string[] = [];
  let lastPhase = "";
  let lastRefresh = 0;
  /** Stops following the progress, while it is followed. */
  let watching: (() => void) | null = null;
  /** How an encrypted library's key is kept (`keychain`, `passphrase`); null when plain. */
  let keptBy: string | null = null;

  $("unlock-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>("unlock-passphrase");
    const button = $<HTMLButtonElement>("unlock-button");
    button.disabled = true;
    showError("");
    try {
      await api.unlockLibrary(input.value);
      input.value = "";
      $("unlock-form").hidden = true;
      await refreshStatus();
    } catch (e) {
      input.value = "";
      showError(sentence(e, "unlock the library"));
    } finally {
      button.disabled = false;
    }
  });

  $("encrypt-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const keychain = $<HTMLInputElement>("encrypt-keychain").checked;
    const first = $<HTMLInputElement>("encrypt-passphrase");
    const again = $<HTMLInputElement>("encrypt-again");
    showError("");
    if (!keychain && first.value.length < 8) return showError("The passphrase needs 8 characters or more.");
    if (!keychain && first.value !== again.value) return showError("The two passphrases differ.");
    const warning = keychain
      ? "Encrypt the library with a key kept in this computer's keychain?"
      : "Encrypt the library under this passphrase? Keep it safe: without it nothing in the library can be read.";
    if (!confirm(warning)) return;
    const button = $<HTMLButtonElement>("encrypt-button");
    button.disabled = true;
    $("encryption-state").textContent = "Encrypting every file of the library…";
    try {
      await api.encryptLibrary(keychain ? null : first.value);
      ($("encrypt-section") as HTMLDetailsElement).open = false;
    } catch (e) {
      showError(sentence(e, "encrypt the library"));
    } finally {
      first.value = "";
      again.value = "";
      button.disabled = false;
      await refreshStatus();
    }
  });

  $("rekey-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const keychain = $<HTMLInputElement>("rekey-keychain").checked;
    const current = $<HTMLInputElement>("rekey-current");
    const first = $<HTMLInputElement>("rekey-passphrase");
    const again = $<HTMLInputElement>("rekey-again");
    showError("");
    if (!keychain && first.value.length < 8) return showError("The new passphrase needs 8 characters or more.");
    if (!keychain && first.value !== again.value) return showError("The two new passphrases differ.");
    const button = $<HTMLButtonElement>("rekey-button");
    button.disabled = true;
    $("encryption-state").textContent = "Sealing every file of the library under a new key…";
    try {
      await api.rekeyLibrary(current.value || null, keychain ? null : first.value);
      ($("rekey-section") as HTMLDetailsElement).open = false;
      const note = $("encryption-note");
      note.textContent = "Every file is sealed under a new key; the old key is destroyed.";
      note.hidden = false;
    } catch (e) {
      showError(sentence(e, "replace the library's key"));
    } finally {
      for (const input of [current, first, again]) input.value = "";
      button.disabled = false;
      await refreshStatus();
    }
  });

  /** After a removal from an encrypted library: a copy of the removed text
   * outside the library's files (a backup, a snapshot) is unreadable once the
   * key it was sealed under is destroyed — offer to replace the key now (in
   * the desktop app; `quarry rekey` where quarry serve runs). */
  function offerKeyChange(note: HTMLElement) {
    const why = " Copies made before the removal (backups, snapshots) stay readable to whoever holds the key: replacing it destroys the old one.";
    if (!("__TAURI_INTERNALS__" in window)) {
      note.append(`${why} Run \`quarry rekey\` where quarry serve runs to replace it.`);
      return;
    }
    const button = el("button", { type: "button", id: "removed-rekey" }, "Replace the key now");
    button.addEventListener("click", () => {
      const section = $("rekey-section") as HTMLDetailsElement;
      section.open = true;
      section.scrollIntoView({ block: "center" });
      ($(keptBy === "passphrase" ? "rekey-current" : "rekey-button") as HTMLElement).focus();
    });
    note.append(why, " ", button);
  }

  /** Say how the library's files are kept, and offer to encrypt a plain one (in the desktop app). */
  function showEncryption(kept: string | null) {
    keptBy = kept;
    const state = $("encryption-state");
    const desktop = "__TAURI_INTERNALS__" in window;
    if (kept) {
      state.textContent =
        `Encrypted: every file of this library is encrypted; its key ` +
        (kept === "keychain" ? "is kept in this computer's keychain." : "opens with your passphrase.");
    } else {
      state.textContent =
        "Not encrypted: whoever can read the library's folder can read the indexed text." +
        (desktop ? "" : " Run `quarry encrypt` where quarry serve runs to encrypt it.");
    }
    $("encrypt-section").hidden = Boolean(kept) || !desktop;
    $("rekey-section").hidden = !kept || !desktop;
    $("rekey-current-row").hidden = kept !== "passphrase";
  }

  async function refreshStatus() {
    try {
      const s = await api.status();
      const lib = s.library;
      const summary = $("summary");
      summary.replaceChildren(
        ...[
          ["Documents", String(lib.documents)],
          ["Chunks", String(lib.chunks)],
          ...(lib.pending_embeddings > 0
            ? [
                [
                  "Meaning search",
                  `${readyShare(lib.chunks, lib.pending_embeddings)} of chunks ready; ` +
                    `${lib.pending_embeddings} searchable by keyword until they are embedded`,
                ],
              ]
            : []),
          ["Skipped", String(lib.skipped)],
          ["Failed", String(lib.failed)],
          ["Size on disk", humanBytes(lib.size_bytes)],
          ["Embedder", lib.embedder],
          ["Library", lib.library],
        ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
      );
      showEncryption(s.encryption);
      // Search says how much of the library meaning search covers yet.
      deps.showCoverage(lib.chunks, lib.pending_embeddings);
      const stats = new Map(lib.per_folder.map((f) => [f.path, f]));
      $("folders").replaceChildren(
        ...(lib.folders.length
          ? lib.folders.map((f) => folderItem(f, stats.get(f), s.indexing.running))
          : [el("li", {}, "No folders yet: add one above.")]),
      );
      folders = lib.folders;
      $<HTMLButtonElement>("reindex").disabled = !lib.folders.length || s.indexing.running;
      renderReasons(lib.failures.map(([path, reason]) => ({ path, reason })), s.indexing);
      showProgress(s.indexing);
    } catch (e) {
      if (e instanceof QuarryError && e.code === "model_missing") return deps.onModelsMissing(e);
      if (e instanceof QuarryError && e.code === "key_needed") {
        $("unlock-form").hidden = false;
        $<HTMLInputElement>("unlock-passphrase").focus();
        return;
      }
      showError(sentence(e, "read the library's status"));
    }
  }

  function folderItem(path: string, stats: FolderStatus | undefined, busy: boolean): HTMLLIElement {
    const remove = el("button", { type: "button", className: "remove" }, "Remove");
    remove.setAttribute("aria-label", `Remove ${path} from the library`);
    remove.addEventListener("click", async () => {
      if (!confirm(`Remove ${path} and its documents from the library? The files themselves stay.`)) return;
      showError("");
      try {
        const r = await api.removeFolder(path);
        const note = $("removed");
        note.textContent = `Removed ${path} and its ${r.removed_documents} documents. ${r.check ?? ""}`.trim();
        if (keptBy) offerKeyChange(note);
        note.hidden = false;
        await refreshStatus();
      } catch (e) {
        showError(sentence(e, `remove ${path}`));
      }
    });
    const recheck = el("button", { type: "button", className: "recheck", disabled: busy }, "Check for changes");
    recheck.setAttribute("aria-label", `Check ${path} for new and changed files`);
    recheck.addEventListener("click", () => indexFolders([path], `check ${path}`));
    const counts = stats
      ? [
          `${stats.documents} documents, ${stats.chunks} chunks`,
          stats.failed ? `${stats.failed} failed` : "",
          stats.skipped ? `${stats.skipped} skipped` : "",
          stats.last_indexed_ms ? `indexed ${new Date(stats.last_indexed_ms).toLocaleString()}` : "",
        ]
          .filter(Boolean)
          .join(" · ")
      : "";
    return el(
      "li",
      {},
      el("span", { className: "path" }, path),
      " ",
      recheck,
      remove,
      counts ? el("div", { className: "hint" }, counts) : "",
    );
  }

  async function indexFolders(paths: string[], doing: string) {
    showError("");
    try {
      await api.index(paths);
      watchIndexing();
    } catch (e) {
      showError(sentence(e, doing));
    }
  }

  function renderReasons(failures: { path: string; reason: string }[], p: Progress | null) {
    const report = p?.report ?? null;
    // Scanned pages OCR could not read well enough are listed with their page.
    const all = [...failures, ...(report?.skipped ?? []), ...(report?.ocr_problems ?? [])];
    $("failures").replaceChildren(
      ...(all.length
        ? all.map((f) => el("li", {}, el("span", { className: "path" }, f.path), " — ", f.reason))
        : [el("li", {}, "None.")]),
    );
  }

  function showProgress(p: Progress) {
    const box = $("progress");
    if (p.phase === "idle") {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const reembedding = p.phase === "re-embedding";
    const embedding = reembedding || p.phase === "embedding" || (p.phase === "stopping" && p.embed_done > 0);
    const bar = $<HTMLProgressElement>("progress-bar");
    bar.max = Math.max(embedding ? p.embed_total : p.files_total, 1);
    bar.value = p.phase === "done" || p.phase === "re-embedded" ? bar.max : embedding ? p.embed_done : p.files_done;
    const eta = p.eta_s != null && p.running ? `, about ${humanDuration(p.eta_s)} left` : "";
    const waiting = Math.max(p.embed_total - p.embed_done, 0);
    const text =
      p.phase === "failed"
        ? `${p.embedder ? `Switching meaning search to ${p.embedder}` : "Indexing"} failed: ${p.error?.message ?? "unknown error"}`
        : reembedding
          ? `Embedding every passage again with ${p.embedder}: ${p.embed_done} of ${p.embed_total} chunks, ` +
            `${p.embed_per_s.toFixed(1)} chunks/s${eta}. Search works as before meanwhile.`
        : p.phase === "re-embedded"
          ? `Meaning search now uses ${p.embedder} for all ${p.chunks} chunks (${humanDuration(p.elapsed_s)}).`
        : p.phase === "stopped" && p.embedder
          ? `Stopped switching meaning search to ${p.embedder} after ${p.embed_done} of ${p.embed_total} chunks; ` +
            `search still uses the previous embedder. "Use for search" in Settings carries on where it stopped.`
        : p.phase === "stopped"
          ? waiting > 0 && p.files_done >= p.files_total
            ? `Stopped: every file is searchable by keyword; ${waiting} chunks still wait for meaning search. Resume carries on.`
            : `Stopped: ${p.files_done} files done; Resume (or any later check) indexes the rest.`
          : p.phase === "stopping"
            ? "Stopping after the current batch…"
            : p.phase === "done"
              ? `Done: ${p.files_done} files indexed or checked, ${p.chunks} chunks written` +
                (p.ocr_pages ? `, ${p.ocr_pages} scanned pages read by OCR` : "") +
                (p.embed_done ? `, ${p.embed_done} embedded` : "") +
                ` in ${humanDuration(p.elapsed_s)}.` +
                // Most of the text is not English and the embedder is English-only.
                (p.report?.embedder_advice ? ` Note: ${p.report.embedder_advice}` : "")
              : p.phase === "walking"
                ? "Looking for files…"
                : embedding
                  ? `Keyword search is ready. Embedding for meaning search: ${p.embed_done} of ${p.embed_total} chunks, ` +
                    `${p.embed_per_s.toFixed(1)} chunks/s${eta}`
                  : `Indexing ${p.files_done} of ${p.files_total} files, ${p.chunks} chunks, ${p.files_per_s.toFixed(1)} files/s` +
                    (p.ocr_pages ? `, ${p.ocr_pages} scanned pages read by OCR` : "") +
                    eta;
    $("progress-text").textContent = text;
    box.dataset.phase = p.phase;
    // Indexing and a switch of embedder both stop after their current batch.
    $("stop-indexing").hidden = !p.running;
    // A stopped job that only embedded has no paths of its own: resuming
    // checks every folder, which carries on with the waiting chunks. A
    // stopped switch carries on from Settings, not here.
    resumePaths = p.phase === "stopped" && !p.embedder ? (p.paths.length ? p.paths : folders) : [];
    $("resume-indexing").hidden = !resumePaths.length;
    // Keyword search covers the new files once embedding starts: show their
    // counts, and meaning search's share as it grows.
    if (p.phase === "embedding" && (lastPhase !== "embedding" || Date.now() - lastRefresh > 30_000)) {
      lastRefresh = Date.now();
      refreshStatus();
    }
    lastPhase = p.phase;
  }

  function watchIndexing() {
    watching?.();
    watching = api.watchProgress((p) => {
      showProgress(p);
      if (!p.running && ["done", "failed", "stopped", "re-embedded"].includes(p.phase)) {
        watching?.();
        watching = null;
        refreshStatus();
      }
    });
  }

  async function addFolder(path: string) {
    showError("");
    try {
      await api.index([path]);
      $<HTMLInputElement>("folder").value = "";
      watchIndexing();
    } catch (err) {
      showError(sentence(err, `add ${path}`));
    }
  }

  $("resume-indexing").addEventListener("click", () => indexFolders(resumePaths, "resume indexing"));

  $("add-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("folder");
    const path = input.value.trim();
    if (path) await addFolder(path);
  });

  if (api.pickFolder) {
    const pick = $<HTMLButtonElement>("pick-folder");
    pick.hidden = false;
    pick.addEventListener("click", async () => {
      try {
        const folder = await api.pickFolder!();
        if (folder) await addFolder(folder);
      } catch (e) {
        showError(sentence(e, "choose a folder"));
      }
    });
  }

  $("stop-indexing").addEventListener("click", () => api.cancelIndexing().catch((e) => showError(sentence(e, "stop indexing"))));
  $("reindex").addEventListener("click", () => indexFolders(folders, "check the folders"));

  return { refreshStatus, watchIndexing };
}
