// The Summarize action of the document preview: a summary written from
// every passage of the document, streamed as it is written, each point
// citing its passage (a click marks the passage in the document below).

import { el, showError } from "../dom";
import { sentence } from "../format";
import type { Source, Transport } from "../transport";

/** Mark and scroll to the document block of `pane` that holds `passage`. */
function markPassage(pane: HTMLElement, passage: string) {
  const needle = passage.trim().replace(/\s+/g, " ").slice(0, 60);
  const blocks = [...pane.querySelectorAll<HTMLElement>(".doc-block")];
  blocks.forEach((b) => b.classList.remove("cited"));
  const block = blocks.find((b) => (b.textContent ?? "").replace(/\s+/g, " ").includes(needle));
  if (!block) return;
  block.classList.add("cited");
  block.scrollIntoView({ block: "center" });
}

/** `text` with its `[n]` markers as buttons that mark passage `n`. */
function citedText(pane: HTMLElement, text: string, cited: Source[]): Node[] {
  return text.split(/(\[\d+\])/).map((part) => {
    const m = /^\[(\d+)\]$/.exec(part);
    const src = m ? cited.find((s) => s.n === Number(m[1])) : undefined;
    if (!src) return document.createTextNode(part);
    const b = el("button", { type: "button", className: "cite" }, part);
    b.setAttribute("aria-label", `Passage ${src.n}${src.page ? `, page ${src.page}` : ""}`);
    b.addEventListener("click", () => markPassage(pane, src.text));
    return b;
  });
}

/** A Summarize button for the document `path` shown in `pane`; the summary
 * goes into a section placed after `anchor`. */
export function summarizeButton(api: Transport, pane: HTMLElement, anchor: HTMLElement, path: string): HTMLButtonElement {
  const button = el("button", { type: "button", className: "summarize" }, "Summarize");
  let abort: AbortController | null = null;
  button.addEventListener("click", async () => {
    if (abort) {
      abort.abort(); // a second click stops it
      return;
    }
    showError("");
    pane.querySelector(".summary")?.remove();
    const status = el("p", { className: "hint summary-status" }, "Reading the document…");
    const body = el("p", { className: "summary-text" });
    const section = el("section", { className: "summary" }, el("h3", {}, "Summary"), status, body);
    section.setAttribute("aria-live", "polite");
    anchor.after(section);
    abort = new AbortController();
    button.textContent = "Stop";
    let text = "";
    try {
      await api.summarize({ path }, (u) => {
        if (u.event === "reading") {
          status.textContent = u.data.done < u.data.total
            ? `Reading part ${u.data.done + 1} of ${u.data.total}…`
            : "Read every part; writing the summary…";
        } else if (u.event === "waiting") {
          status.textContent = `The local model is busy with ${u.data.busy}; the summary starts when it ends.`;
        } else if (u.event === "token") {
          text += u.data.text;
          body.textContent = text;
        } else if (u.event === "done") {
          const s = u.data.summary;
          body.replaceChildren(...citedText(pane, s.text, s.cited));
          const read = s.left_out ? `the first ${s.passages} of ${s.passages + s.left_out} passages` : `all ${s.passages} passages`;
          status.textContent = u.data.kept
            ? `Written before by ${s.model} from ${read}.`
            : `Written by ${s.model} from ${read} in ${(s.ms / 1000).toFixed(1)} s.`;
          section.dataset.done = "true";
        }
      }, abort.signal);
    } catch (e) {
      const s = sentence(e, "summarise the document");
      if (s) showError(s);
      status.textContent = "Not summarised.";
    } finally {
      abort = null;
      button.textContent = "Summarize";
    }
  });
  return button;
}
