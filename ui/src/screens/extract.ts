// The Extract screen: define fields (or load a schema saved with the
// library), pick documents (a folder and type, or the documents a search
// found), watch the table fill in document by document, open any cell's
// passage, export CSV/XLSX/JSON. Values not found in their passage are
// marked; judgements (a choice the passage does not spell out) are marked
// differently.

import type { DocumentFields } from "../bindings/DocumentFields";
import type { Field } from "../bindings/Field";
import type { FieldValue } from "../bindings/FieldValue";
import type { Schema } from "../bindings/Schema";
import { $, el, showError } from "../dom";
import { baseName, humanDuration, sentence } from "../format";
import { QuarryError, type ExtractRequest, type SavedSchema, type Transport } from "../transport";

/** What the Extract screen needs from the rest of the app. */
export interface ExtractDeps {
  /** Show `path` in the preview `pane` with `passage` highlighted (Search's preview). */
  showPassage(pane: HTMLElement, path: string, passage: string, page: number | null): void;
}

const TYPES = ["string", "number", "date", "boolean", "enum", "list"] as const;

/** What the Extract screen offers the rest of the app. */
export interface Extract {
  /** Extract from these documents (a search for `query` found them, best first). */
  useDocuments(query: string, paths: string[]): void;
  /** Read the library's saved schemas again (the tab is shown, or the library opened). */
  refreshSaved(): Promise<void>;
}

/** A value as a cell shows it. */
function cellText(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.map(cellText).join("; ");
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Wire the Extract screen to `api`. */
export function initExtract(api: Transport, deps: ExtractDeps): Extract {
  let abort: AbortController | null = null;
  let schema: Schema | null = null;
  let lastRequest: ExtractRequest | null = null;
  /** The documents a search found, when the user took them from Search. */
  let found: { query: string; paths: string[] } | null = null;
  let saved: SavedSchema[] = [];

  function addFieldRow(name = "", type = "string", description = "", choices = "") {
    const row = el("li", { className: "field-row" });
    const nameInput = el("input", { type: "text", className: "field-name", value: name, placeholder: "name" });
    nameInput.setAttribute("aria-label", "Field name");
    const typeSelect = el("select", { className: "field-type" }, ...TYPES.map((t) => el("option", { value: t }, t)));
    typeSelect.value = type;
    typeSelect.setAttribute("aria-label", "Field type");
    const desc = el("input", { type: "text", className: "field-description", value: description, placeholder: "what it is, in a few words" });
    desc.setAttribute("aria-label", "Field description");
    const choiceInput = el("input", { type: "text", className: "field-choices", value: choices, placeholder: "choices, comma-separated" });
    choiceInput.setAttribute("aria-label", "Choices");
    choiceInput.hidden = type !== "enum";
    typeSelect.addEventListener("change", () => (choiceInput.hidden = typeSelect.value !== "enum"));
    const remove = el("button", { type: "button", className: "remove-field" }, "Remove");
    remove.setAttribute("aria-label", "Remove this field");
    remove.addEventListener("click", () => row.remove());
    row.append(nameInput, typeSelect, desc, choiceInput, remove);
    $("fields").append(row);
  }

  /** The schema the form describes (a pasted JSON schema wins). */
  function readSchema(): unknown {
    const pasted = $<HTMLTextAreaElement>("schema-json").value.trim();
    if (pasted) {
      try {
        return JSON.parse(pasted);
      } catch (e) {
        throw new Error(`the pasted schema is not JSON (${(e as Error).message})`);
      }
    }
    const fields = [...document.querySelectorAll<HTMLLIElement>("#fields .field-row")]
      .map((row) => {
        const get = (c: string) => (row.querySelector(`.${c}`) as HTMLInputElement).value.trim();
        const type = get("field-type");
        return {
          name: get("field-name"),
          type,
          description: get("field-description"),
          ...(type === "enum" ? { choices: get("field-choices").split(",").map((c) => c.trim()).filter(Boolean) } : {}),
        };
      })
      .filter((f) => f.name);
    if (!fields.length) throw new Error("add at least one field with a name");
    return { fields };
  }

  function request(): ExtractRequest {
    const folder = $<HTMLInputElement>("extract-folder").value.trim();
    const ext = $<HTMLSelectElement>("extract-ext").value;
    const redo = $<HTMLInputElement>("extract-redo").checked;
    if (found) return { schema: readSchema(), paths: found.paths, ext: [], redo };
    return { schema: readSchema(), paths: folder ? [folder] : [], ext: ext ? [ext] : [], redo };
  }

  function useDocuments(query: string, paths: string[]) {
    found = { query, paths };
    $("extract-found-text").textContent =
      `From the search “${query}”: ${paths.length === 1 ? "1 document" : `${paths.length} documents`}, best match first.`;
    $("extract-found").hidden = false;
    $("extract-filters").hidden = true;
  }

  function useFilters() {
    found = null;
    $("extract-found").hidden = true;
    $("extract-filters").hidden = false;
  }

  // ---------- saved schemas ----------

  async function refreshSaved(select?: string) {
    try {
      saved = await api.schemas();
    } catch (e) {
      // A library that cannot open yet (no models, no key) is the Library
      // screen's message to give; the list is read again once it opens.
      if (e instanceof QuarryError && (e.code === "model_missing" || e.code === "key_needed")) return;
      showError(sentence(e, "list the saved schemas"));
      return;
    }
    const list = $<HTMLSelectElement>("schema-saved");
    list.replaceChildren(el("option", { value: "" }, "New schema"), ...saved.map((s) => el("option", { value: s.name }, s.name)));
    const pick = select ? saved.find((s) => s.name.toLowerCase() === select.toLowerCase()) : undefined;
    list.value = pick?.name ?? "";
    $<HTMLButtonElement>("schema-delete").disabled = !pick;
  }

  function loadSaved(name: string) {
    const s = saved.find((x) => x.name === name);
    $<HTMLButtonElement>("schema-delete").disabled = !s;
    if (!s) return;
    $("fields").replaceChildren();
    for (const f of s.schema.fields) addFieldRow(f.name, f.type, f.description, choicesOf(f));
    $<HTMLTextAreaElement>("schema-json").value = "";
    $<HTMLInputElement>("schema-name").value = s.name;
  }

  async function saveSchema() {
    showError("");
    const name = $<HTMLInputElement>("schema-name").value.trim() || $<HTMLSelectElement>("schema-saved").value;
    if (!name) {
      showError("Give the schema a name to save it under.");
      $("schema-name").focus();
      return;
    }
    try {
      const s = await api.saveSchema(name, readSchema());
      await refreshSaved(s.name);
      $<HTMLInputElement>("schema-name").value = s.name;
      const n = s.schema.fields.length;
      $("extract-status").textContent = `Saved the schema “${s.name}” with the library (${n} field${n === 1 ? "" : "s"}).`;
    } catch (e) {
      showError(e instanceof Error && !("code" in e) ? `Cannot save: ${e.message}.` : sentence(e, "save the schema"));
    }
  }

  async function deleteSaved() {
    const name = $<HTMLSelectElement>("schema-saved").value;
    if (!name) return;
    showError("");
    try {
      await api.deleteSchema(name);
      await refreshSaved();
      $("extract-status").textContent = `Deleted the schema “${name}”; its fields stay in the form.`;
    } catch (e) {
      showError(sentence(e, "delete the schema"));
    }
  }

  function startTable(s: Schema) {
    schema = s;
    const head = el("tr", {}, el("th", { scope: "col" }, "Document"), ...s.fields.map((f) => el("th", { scope: "col" }, f.name)));
    $("extract-head").replaceChildren(head);
    $("extract-rows").replaceChildren();
  }

  function cell(path: string, v: FieldValue | undefined): HTMLTableCellElement {
    const td = el("td", { className: "cell" });
    if (!v || v.value === null) {
      td.textContent = "—";
      td.classList.add("empty");
      return td;
    }
    const mark = v.check === "not_found" ? "?" : v.check === "inferred" ? "~" : "";
    const b = el("button", { type: "button", className: "cell-value" }, cellText(v.value), mark ? el("span", { className: "mark" }, mark) : "");
    td.dataset.check = v.check;
    if (v.check === "not_found") td.classList.add("unverified");
    if (v.check === "inferred") td.classList.add("inferred");
    const c = v.citation;
    if (c) {
      td.dataset.cited = "true";
      b.title = v.verified ? `Found in ${baseName(c.path)}${c.page ? `, page ${c.page}` : ""}` :
        v.check === "inferred" ? "A judgement: the passage does not say it in words" : "Not found in the passages the model read: check it";
      b.addEventListener("click", () => deps.showPassage($("extract-preview"), path, c.passage, c.page));
    }
    td.append(b);
    return td;
  }

  function addRow(d: DocumentFields) {
    if (!schema) return;
    const name = el("th", { scope: "row", title: d.path }, baseName(d.path));
    const cells = d.error
      ? [el("td", { className: "row-error", colSpan: schema.fields.length }, d.error)]
      : schema.fields.map((f) => cell(d.path, d.fields[f.name]));
    $("extract-rows").append(el("tr", {}, name, ...cells));
  }

  function setRunning(on: boolean) {
    $<HTMLButtonElement>("extract-button").disabled = on;
    $<HTMLButtonElement>("extract-stop").disabled = !on;
    for (const id of ["export-csv", "export-xlsx", "export-json"]) $<HTMLButtonElement>(id).disabled = on || !lastRequest;
  }

  async function run() {
    showError("");
    let req: ExtractRequest;
    try {
      req = request();
    } catch (e) {
      showError(`Cannot extract: ${(e as Error).message}.`);
      return;
    }
    abort = new AbortController();
    lastRequest = req;
    setRunning(true);
    const started = Date.now();
    let fresh = 0;
    const status = $("extract-status");
    status.textContent = "Finding passages and loading the model…";
    try {
      await api.extract(req, (u) => {
        if (u.event === "started") {
          startTable(u.data.schema);
          status.textContent = `${u.data.total} documents (${u.data.kept} done before)`;
        } else if (u.event === "waiting") {
          status.textContent = `The local model is busy with ${u.data.busy}; the extraction starts when it ends.`;
        } else if (u.event === "document") {
          addRow(u.data.fields);
          if (!u.data.kept) fresh++;
          const per = (Date.now() - started) / 1000 / Math.max(fresh, 1);
          const left = u.data.total - u.data.done;
          status.textContent = `${u.data.done} / ${u.data.total} documents` +
            (fresh ? ` · ${(60 / per).toFixed(1)} documents/min · ${left ? `about ${humanDuration(per * left)} left` : "done"}` : "");
        } else if (u.event === "done") {
          const s = u.data;
          status.textContent = `${s.extracted} extracted, ${s.kept} kept from before, ${s.failed} failed` +
            (s.cancelled ? " · stopped: run again to go on" : "");
          $("extract-table").dataset.done = "true";
        }
      }, abort.signal);
    } catch (e) {
      if (!abort.signal.aborted) showError(sentence(e, "extract"));
      else status.textContent += " · stopped";
    } finally {
      abort = null;
      setRunning(false);
    }
  }

  async function exportAs(format: "csv" | "xlsx" | "json") {
    if (!lastRequest) return;
    showError("");
    try {
      const where = await api.exportTable(lastRequest, format);
      if (where) $("extract-status").textContent = `Saved ${where}`;
    } catch (e) {
      showError(sentence(e, `export the table as ${format.toUpperCase()}`));
    }
  }

  addFieldRow();
  $("add-field").addEventListener("click", () => addFieldRow());
  $("extract-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  $("extract-stop").addEventListener("click", () => abort?.abort());
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("export-xlsx").addEventListener("click", () => exportAs("xlsx"));
  $("export-json").addEventListener("click", () => exportAs("json"));
  $("extract-found-clear").addEventListener("click", useFilters);
  $("schema-saved").addEventListener("change", () => loadSaved($<HTMLSelectElement>("schema-saved").value));
  $("schema-save").addEventListener("click", saveSchema);
  $("schema-delete").addEventListener("click", deleteSaved);
  refreshSaved();
  return { useDocuments, refreshSaved: () => refreshSaved($<HTMLSelectElement>("schema-saved").value || undefined) };
}

/** A field's choices as the form writes them. */
function choicesOf(f: Field): string {
  return f.type === "enum" ? f.choices.join(", ") : "";
}
