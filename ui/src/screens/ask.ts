// The Ask screen: a streamed answer with its route, sources and citations,
// the consent step for providers, and the conversation so far.

import type { RouteOverride } from "../bindings/RouteOverride";
import { $, el, showError } from "../dom";
import { baseName, scanLabel, sentence } from "../format";
import type { Answer, Evidence, Preview, Source, Transport } from "../transport";

/** What the Ask screen needs from the rest of the app. */
export interface AskDeps {
  /** Show `path` in the preview `pane` with `passage` highlighted (Search's preview). */
  showPassage(pane: HTMLElement, path: string, passage: string, page: number | null): void;
}

/** What would be (or was) sent to a provider, as text. */
function previewText(p: Preview): string {
  return `${p.provider} (${p.host}), model ${p.model}, ${p.bytes} bytes\n\n` +
    p.messages.map((m) => `— ${m.role} —\n${m.content}`).join("\n\n");
}

/** Wire the Ask screen's form and buttons to `api`. */
export function initAsk(api: Transport, deps: AskDeps): void {
  let lastAnswer: Answer | null = null;
  /** The conversation so far (follow-up questions see the last two turns). */
  let history: { role: string; content: string }[] = [];
  /** The question waiting for consent to send it to a provider. */
  let pendingQuestion: string | null = null;
  /** Stops the answer being written, while one is. */
  let abort: AbortController | null = null;

  const showSource = (s: Source) => deps.showPassage($("source-preview"), s.path, s.text, s.page);

  function renderAnswerText(text: string, sources: Source[]) {
    const box = $("answer");
    const parts = text.split(/(\[\d+\])/);
    box.replaceChildren(
      ...parts.map((part) => {
        const m = /^\[(\d+)\]$/.exec(part);
        const src = m ? sources.find((s) => s.n === Number(m[1])) : undefined;
        if (!src) return document.createTextNode(part);
        const b = el("button", { type: "button", className: "cite", title: baseName(src.path) }, part);
        b.setAttribute("aria-label", `Source ${src.n}: ${baseName(src.path)}`);
        b.addEventListener("click", () => showSource(src));
        return b;
      }),
    );
  }

  /** The sentences that match the question, shown while the answer is composed;
   * a click shows the sentence in its document. */
  function renderEvidence(evidence: Evidence[], sources: () => Source[]) {
    $("evidence").hidden = evidence.length === 0;
    $("evidence-list").replaceChildren(
      ...evidence.map((e) => {
        const b = el("button", { type: "button", className: "evidence-item" }, `[${e.n}] ${e.text}`);
        b.addEventListener("click", () => {
          const s = sources().find((x) => x.n === e.n);
          if (s) deps.showPassage($("source-preview"), s.path, e.text, s.page);
        });
        return el("li", {}, b);
      }),
    );
  }

  /** The answer's sentences that their cited sources do not back. */
  function renderUnsupported(sentences: string[]) {
    $("unsupported").hidden = sentences.length === 0;
    $("unsupported-list").replaceChildren(...sentences.map((s) => el("li", {}, s)));
  }

  function renderSources(sources: Source[], cited: number[] = []) {
    // A whole-document reading numbers every passage: once the answer is
    // done, list those it cites.
    const many = sources.length > 12 && cited.length > 0;
    const shown = many ? sources.filter((s) => cited.includes(s.n)) : sources;
    $("sources").replaceChildren(
      ...shown.map((s) => {
        const b = el(
          "button",
          { type: "button", className: "source" + (cited.includes(s.n) ? " cited" : "") },
          `[${s.n}] ${baseName(s.path)}${s.page ? `, page ${s.page}` : ""}` +
            `${s.ocr_confidence != null ? ` (${scanLabel(s.ocr_confidence)})` : ""}${s.heading ? `, ${s.heading}` : ""}`,
        );
        b.addEventListener("click", () => showSource(s));
        return el("li", {}, b);
      }),
      ...(many ? [el("li", { className: "hint" }, `${sources.length - shown.length} other passages were read and not cited`)] : []),
    );
  }

  async function ask(question: string, confirmSend = false) {
    abort?.abort();
    const mine = new AbortController();
    abort = mine;
    let consentAsked = false;
    showError("");
    let text = "";
    let sources: Source[] = [];
    lastAnswer = null;
    $<HTMLButtonElement>("copy-md").disabled = true;
    $<HTMLButtonElement>("stop-button").disabled = false;
    $("consent").hidden = true;
    $("sent").hidden = true;
    $("answer").replaceChildren(el("span", { className: "hint" }, "Searching your documents…"));
    renderEvidence([], () => sources);
    renderUnsupported([]);
    $("route-badge").replaceChildren();
    try {
      await api.ask(
        { question, history: history.slice(-4), route: $<HTMLSelectElement>("route").value as RouteOverride, confirm_send: confirmSend },
        (e) => {
          switch (e.kind) {
            case "evidence":
              renderEvidence(e.evidence, () => sources);
              if (!text) $("answer").replaceChildren(el("span", { className: "hint" }, "Composing the answer…"));
              break;
            case "sources":
              sources = e.sources;
              renderSources(sources);
              break;
            case "route": {
              text = ""; // a second route (fallback) restarts the answer
              const badge = $("route-badge");
              badge.dataset.target = e.route.target;
              badge.replaceChildren(
                el("span", { className: `badge route-${e.route.target}` }, e.route.target),
                " ",
                e.route.reason,
              );
              break;
            }
            case "token":
              text += e.text;
              renderAnswerText(text, sources);
              break;
            case "consent":
              pendingQuestion = question;
              consentAsked = true;
              $("consent-provider").textContent = `${e.preview.provider} (${e.preview.host})`;
              $("consent-text").textContent = previewText(e.preview);
              $("consent").hidden = false;
              break;
            case "sent":
              $("sent-text").textContent = previewText(e.preview);
              $("sent").hidden = false;
              break;
            case "reading":
              if (!text) {
                $("answer").replaceChildren(el("span", { className: "hint", id: "reading" },
                  e.done < e.total
                    ? `Reading the documents: part ${e.done + 1} of ${e.total}…`
                    : "Read every part; writing the answer…"));
              }
              break;
            case "thinking":
              if (!text) {
                $("answer").replaceChildren(el("span", { className: "hint", id: "thinking" },
                  `The model is thinking before it answers (${e.tokens} tokens so far; Stop cancels it)…`));
              }
              break;
            case "waiting":
              if (!text) {
                $("answer").replaceChildren(el("span", { className: "hint", id: "waiting" },
                  `The local model is busy with ${e.busy}; your answer starts when it ends (Stop cancels it).`));
              }
              break;
            case "done":
              lastAnswer = e.answer;
              renderUnsupported(e.answer.support.unsupported);
              renderAnswerText(e.answer.answer, e.answer.sources);
              renderSources(e.answer.sources, e.answer.cited);
              $<HTMLButtonElement>("copy-md").disabled = false;
              // A local answer given while consent is pending stays out of the
              // conversation, so "Send it" sends exactly what was shown.
              if (!consentAsked) {
                history.push({ role: "user", content: question }, { role: "assistant", content: e.answer.answer });
              }
              $("answer").dataset.done = "true";
              break;
          }
        },
        mine.signal,
      );
    } catch (e) {
      const s = sentence(e, "answer");
      if (s) showError(s);
    } finally {
      if (abort === mine) $<HTMLButtonElement>("stop-button").disabled = true;
    }
  }

  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $<HTMLInputElement>("question").value.trim();
    if (q) {
      delete $("answer").dataset.done;
      ask(q);
    }
  });
  $("stop-button").addEventListener("click", () => abort?.abort());
  $("new-chat").addEventListener("click", () => {
    history = [];
    lastAnswer = null;
    $("answer").replaceChildren();
    renderEvidence([], () => []);
    renderUnsupported([]);
    $("sources").replaceChildren();
    $("route-badge").replaceChildren();
    $<HTMLInputElement>("question").value = "";
    $("question").focus();
  });
  $("consent-send").addEventListener("click", () => pendingQuestion && ask(pendingQuestion, true));
  $("copy-md").addEventListener("click", async () => {
    if (!lastAnswer) return;
    const md =
      `${lastAnswer.answer}\n\n**Sources**\n\n` +
      lastAnswer.sources
        .filter((s) => lastAnswer!.cited.includes(s.n))
        .map((s) => `${s.n}. ${s.path}${s.page ? `, page ${s.page}` : ""}`)
        .join("\n") +
      `\n\n_Answered by ${lastAnswer.route.target}${lastAnswer.route.model ? ` (${lastAnswer.route.model})` : ""}._\n`;
    try {
      await navigator.clipboard.writeText(md);
    } catch {
      showError("The browser did not allow copying; select the answer and copy it by hand.");
    }
  });
}
