// The Settings screen: privacy, providers, and the models (fetch and import).

import type { AgentAccess } from "../bindings/AgentAccess";
import type { PrivacyMode } from "../bindings/PrivacyMode";
import type { Settings as SettingsData } from "../transport";
import { $, el, showError } from "../dom";
import { humanBytes, sentence } from "../format";
import { QuarryError, type HttpEndpoint, type ModelInfo, type Models, type Transport } from "../transport";

/** What the Settings screen needs from the rest of the app. */
export interface SettingsDeps {
  /** The default embedder is installed after `awaitModels`: open the library. */
  onModelsReady(): Promise<void>;
  /** A switch of embedder started: follow its progress. */
  onReembedStarted(): void;
}

/** What the Settings screen offers the rest of the app. */
export interface Settings {
  /** Load the settings and the models, as when the screen is shown. */
  show(): void;
  /** Re-read the settings (privacy mode and its badge, providers). */
  reload(): Promise<void>;
  /** A first run: once the default embedder is installed, call `onModelsReady` (once). */
  awaitModels(): void;
}

/** Wire the Settings screen's controls to `api`; nothing is fetched until `show` or `reload`. */
export function initSettings(api: Transport, deps: SettingsDeps): Settings {
  /** A first run is waiting for the default embedder. */
  let waitingForModels = false;
  /** Polls a running model fetch. */
  let fetchTimer: number | undefined;

  async function loadSettings(given?: SettingsData) {
    try {
      const s = given ?? (await api.settings());
      $<HTMLSelectElement>("privacy-mode").value = s.privacy.global;
      $<HTMLInputElement>("never-leaves").checked = !!s.privacy.library?.never_leaves_device;
      const inForce = s.privacy.in_force;
      $("privacy-badge").textContent = `privacy: ${inForce.mode}`;
      $("privacy-badge").title = inForce.why;
      $("settings-list").replaceChildren(
        ...[
          ["Privacy mode in force", `${inForce.mode} (${inForce.why})`],
          ["Never leaves this device", s.privacy.library?.never_leaves_device ? "yes" : "no"],
          ["Library", s.library],
          ["Embedder", s.embedder],
          ["Local model", s.generator],
          ["OCR (scanned pages, images)", s.ocr],
          ["Default provider", s.default_provider ?? "the first one listed"],
        ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]),
      );
      $("providers").replaceChildren(
        ...(s.providers.length
          ? s.providers.map((p) =>
              el("li", {}, `${p.name}: ${p.model} at ${p.base_url}; key from ${p.key}${p.redact ? "; redacts personal data" : ""}`),
            )
          : [el("li", {}, "None configured: answers always come from this machine.")]),
      );
    } catch (e) {
      if (e instanceof QuarryError && (e.code === "model_missing" || e.code === "key_needed")) return;
      showError(sentence(e, "read the settings"));
    }
  }

  async function changePrivacy(change: {
    mode?: PrivacyMode;
    never_leaves_device?: boolean;
    not_shared_with_agents?: boolean;
  }) {
    showError("");
    try {
      await loadSettings(await api.setPrivacy(change));
      loadAgents();
    } catch (e) {
      showError(sentence(e, "change the privacy settings"));
      loadSettings();
    }
  }

  async function loadAgents() {
    try {
      const a = await api.agents();
      $<HTMLInputElement>("agents-shared").checked = a.shared;
      $("agents-claude").textContent = a.setup.claude_desktop;
      $("agents-vscode").textContent = a.setup.vscode;
      $("agents-claude-file").textContent = a.setup.claude_config_file ? ` (here: ${a.setup.claude_config_file})` : "";
      $("agents-count").textContent = a.total ? `(${a.total} calls in all; the latest first)` : "(none yet)";
      $("agents-log").replaceChildren(...a.recent.map(accessRow));
    } catch (e) {
      if (e instanceof QuarryError && (e.code === "model_missing" || e.code === "key_needed")) return;
      showError(sentence(e, "read what agents did"));
    }
  }

  function accessRow(e: AgentAccess): HTMLTableRowElement {
    const row = el(
      "tr",
      {},
      el("td", {}, new Date(e.time).toLocaleString()),
      el("td", {}, `${e.client} (${e.transport})`),
      el("td", { title: e.arguments }, e.tool),
      el("td", {}, e.reason ? `${e.outcome}: ${e.reason}` : e.outcome),
      el(
        "td",
        { title: e.documents.join("\n") },
        `${humanBytes(e.bytes_returned)}${e.documents.length ? ` from ${e.documents.length} document${e.documents.length > 1 ? "s" : ""}` : ""}`,
      ),
    );
    row.dataset.outcome = e.outcome;
    return row;
  }

  async function loadModels() {
    try {
      const m = await api.models();
      showModels(m);
      const p = m.fetch;
      const box = $("fetch-progress");
      box.hidden = p.phase === "idle";
      const bar = $<HTMLProgressElement>("fetch-bar");
      bar.max = Math.max(p.bytes_total, 1);
      bar.value = p.phase === "done" ? bar.max : Math.min(p.bytes_done, bar.max);
      $("fetch-text").textContent =
        p.phase === "failed"
          ? `Could not fetch ${p.id}: ${p.error}`
          : p.phase === "done"
            ? `${p.id} is installed.`
            : p.phase === "verifying"
              ? `Checking ${p.id}'s files…`
              : p.phase === "downloading"
                ? `Fetching ${p.id}: ${p.file}, ${humanBytes(p.bytes_done)}${p.bytes_total ? ` of ${humanBytes(p.bytes_total)}` : ""}`
                : `Fetching ${p.id} from ${p.source ?? "its source"}…`;
      box.dataset.phase = p.phase;
      clearTimeout(fetchTimer);
      if (p.running) fetchTimer = window.setTimeout(loadModels, 500);
      // The first run's models are in: open the library.
      if (waitingForModels && m.models.some((x) => x.role === "embedder" && x.default && x.installed)) {
        waitingForModels = false;
        showError("");
        deps.onModelsReady().then(() => {
          loadSettings();
          loadModels();
        });
      }
    } catch (e) {
      showError(sentence(e, "list the models"));
    }
  }

  function showModels(m: Models) {
    $("models-dir").textContent = `Models are kept in ${m.models_dir}.`;
    $("machine").textContent = m.machine
      ? `This machine: ${m.machine}. Recommended: the largest answer model whose first word comes within ${m.budget_s} s on a typical question.`
      : "This machine has not been measured yet: check it to see each answer model's speed here and which one to use.";
    $("probe-machine").textContent = m.machine ? "Check again" : "Check this machine";
    $("models").replaceChildren(...m.models.map((x) => modelRow(x, m.fetch.running)));
  }

  async function probeMachine() {
    const b = $<HTMLButtonElement>("probe-machine");
    b.disabled = true;
    $("machine").textContent = "Measuring this machine's speed (a few seconds)…";
    showError("");
    try {
      showModels(await api.probeMachine());
    } catch (e) {
      showError(sentence(e, "measure this machine"));
    } finally {
      b.disabled = false;
    }
  }

  function useButton(m: ModelInfo): HTMLButtonElement {
    const b = el("button", { type: "button" }, "Use for answers");
    b.setAttribute("aria-label", `Use ${m.id} for answers`);
    b.addEventListener("click", async () => {
      showError("");
      try {
        showModels(await api.useModel(m.id));
      } catch (e) {
        showError(sentence(e, `choose ${m.id}`));
      }
    });
    return b;
  }

  function searchButton(m: ModelInfo): HTMLButtonElement {
    const b = el("button", { type: "button" }, "Use for search");
    b.setAttribute("aria-label", `Use ${m.id} for meaning search`);
    b.addEventListener("click", async () => {
      showError("");
      const ok = window.confirm(
        `Embed every passage of this library again with ${m.id}? ` +
          "Search keeps working with the current embedder until it is done; the progress shows on the Library tab.",
      );
      if (!ok) return;
      b.disabled = true;
      try {
        await api.switchEmbedder(m.id);
        deps.onReembedStarted();
      } catch (e) {
        b.disabled = false;
        showError(sentence(e, `switch meaning search to ${m.id}`));
      }
    });
    return b;
  }

  function modelRow(m: ModelInfo, fetching: boolean): HTMLTableRowElement {
    const state = m.installed
      ? m.in_use
        ? "installed, in use"
        : m.chosen
          ? "installed, used from the next start"
          : "installed"
      : "not installed";
    let action: Node | string = "";
    if (m.installed && m.role === "generator" && !m.in_use && !m.chosen) action = useButton(m);
    if (m.installed && m.role === "embedder" && !m.in_use) action = searchButton(m);
    if (!m.installed && m.fetchable) {
      const b = el("button", { type: "button", disabled: fetching }, "Fetch");
      b.setAttribute("aria-label", `Fetch ${m.id}`);
      b.addEventListener("click", async () => {
        showError("");
        try {
          await api.fetchModel(m.id);
          loadModels();
        } catch (e) {
          showError(sentence(e, `fetch ${m.id}`));
        }
      });
      action = b;
    }
    const facts = [
      m.ram_mb != null ? `needs ~${(m.ram_mb / 1024).toFixed(1)} GB RAM` : null,
      m.this_machine ? `this machine: ${m.this_machine}` : m.speed,
    ].filter((f): f is string => !!f);
    const name = el(
      "td",
      {},
      el("strong", {}, m.id),
      m.default ? " (default)" : "",
      ...(m.recommended ? [" ", el("span", { className: "badge" }, "recommended for this machine")] : []),
      el("div", { className: "hint" }, m.description),
      ...(facts.length ? [el("div", { className: "hint" }, facts.join(" · "))] : []),
    );
    return el(
      "tr",
      {},
      name,
      el("td", {}, m.role),
      el("td", {}, state),
      el("td", {}, m.installed ? humanBytes(m.size_bytes) : m.download_mb != null ? `${m.download_mb} MB to fetch` : "—"),
      el("td", {}, action),
    );
  }

  $("probe-machine").addEventListener("click", probeMachine);
  $("privacy-mode").addEventListener("change", () =>
    changePrivacy({ mode: $<HTMLSelectElement>("privacy-mode").value as PrivacyMode }),
  );
  $("never-leaves").addEventListener("change", () =>
    changePrivacy({ never_leaves_device: $<HTMLInputElement>("never-leaves").checked }),
  );
  $("agents-shared").addEventListener("change", () =>
    changePrivacy({ not_shared_with_agents: !$<HTMLInputElement>("agents-shared").checked }),
  );
  if (api.serveAgents) {
    // The desktop app runs its own MCP endpoint on demand.
    $("agents-http-row").hidden = false;
    $("agents-http-hint").hidden = true;
    let serving: HttpEndpoint | null = null;
    const button = $<HTMLButtonElement>("agents-http");
    button.addEventListener("click", async () => {
      showError("");
      button.disabled = true;
      try {
        serving = await api.serveAgents!(serving === null);
        button.textContent = serving ? "Stop serving agents over HTTP" : "Serve agents over HTTP";
        $("agents-http-state").textContent = serving
          ? `Agents on this machine can connect at ${serving.url}, sending the header Authorization: Bearer ${serving.token}`
          : "";
      } catch (e) {
        showError(sentence(e, "serve agents over HTTP"));
      } finally {
        button.disabled = false;
      }
    });
  }

  $("import-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("import-path");
    const path = input.value.trim();
    if (!path) return;
    showError("");
    const button = $<HTMLButtonElement>("import-button");
    button.disabled = true;
    try {
      const r = await api.importModel(path);
      input.value = "";
      $("fetch-progress").hidden = false;
      $("fetch-text").textContent = `Imported ${r.id}.`;
      await loadModels();
    } catch (err) {
      showError(sentence(err, `import ${path}`));
    } finally {
      button.disabled = false;
    }
  });
  if (api.pickModelFile) {
    const pick = $<HTMLButtonElement>("pick-model");
    pick.hidden = false;
    pick.addEventListener("click", async () => {
      const file = await api.pickModelFile!().catch(() => null);
      if (file) $<HTMLInputElement>("import-path").value = file;
    });
  }

  return {
    show() {
      loadSettings();
      loadModels();
      loadAgents();
    },
    reload: () => loadSettings(),
    awaitModels() {
      waitingForModels = true;
    },
  };
}
