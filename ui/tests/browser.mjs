// The web UI in a real browser (Debian's chromium driven by playwright-core)
// against a real `quarry serve` on loopback with the real models: add a
// folder and watch it index, search, ask and open a citation, extract a
// table and export it, see an agent's MCP call in Settings, and see a bad
// path reported as a sentence. Screenshots of each screen are saved.
//
//   QUARRY_BIN=path/to/quarry node tests/browser.mjs
//
// Env: QUARRY_BIN (required), QUARRY_MODELS_DIR (as for the Rust tests),
// CHROMIUM (default /usr/bin/chromium), QUARRY_SCREENSHOTS (default
// ../artifacts/screenshots).

import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const bin = process.env.QUARRY_BIN;
assert.ok(bin, "set QUARRY_BIN to the quarry binary");
const shots = resolve(process.env.QUARRY_SCREENSHOTS ?? join(repo, "artifacts/screenshots"));
mkdirSync(shots, { recursive: true });

const tmp = mkdtempSync(join(tmpdir(), "quarry-ui-"));
const docs = join(tmp, "docs");
cpSync(join(repo, "tests/fixtures/corpus"), docs, { recursive: true });
// A scanned PDF: image-only pages, read by OCR when the folder is indexed.
cpSync(join(repo, "tests/fixtures/scans/scanned-report.pdf"), join(docs, "scanned-report.pdf"));

// The "system viewer" is a recorder, so the test sees what Open asked for.
const opened = join(tmp, "opened.txt");
const viewer = join(tmp, "viewer.sh");
writeFileSync(viewer, `#!/bin/sh\necho "$@" >> '${opened}'\n`, { mode: 0o755 });
const server = spawn(
  bin,
  ["serve", "--library", join(tmp, "library"), "--addr", "127.0.0.1:0", "--ui", join(repo, "ui/dist")],
  {
    env: { ...process.env, QUARRY_CONFIG_DIR: join(tmp, "config"), QUARRY_OPEN_WITH: viewer },
    stdio: ["ignore", "pipe", "inherit"],
  },
);
// The first line is the address; the second the link that carries the token
// (locked by default, loopback included).
const [base, link] = await new Promise((ok, fail) => {
  const timer = setTimeout(() => fail(new Error("quarry serve did not start")), 60_000);
  const lines = [];
  createInterface({ input: server.stdout }).on("line", (line) => {
    lines.push(line.trim());
    if (lines.length === 2) {
      clearTimeout(timer);
      ok([lines[0].split(" ").pop(), lines[1].split(" ")[1]]);
    }
  });
  server.once("exit", (code) => fail(new Error(`quarry serve exited with ${code}`)));
});
const token = new URL(link).hash.replace(/^#token=/, "");
assert.match(token, /^[0-9a-f]{64}$/, `the link carries the token: ${link}`);
assert.equal(readFileSync(join(tmp, "config", "server-token"), "utf8").trim(), token, "the token is the kept one");
const auth = { authorization: `Bearer ${token}` };
assert.equal((await fetch(`${base}/api/status`)).status, 401, "no token, no library (loopback too)");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const problems = [];
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 700 }, acceptDownloads: true });
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  // Without the token the page says what to do, and reads nothing.
  const stranger = await browser.newPage();
  await stranger.goto(base);
  await stranger.waitForSelector("#error:not([hidden])");
  assert.match(await stranger.textContent("#error"), /locked.*Open the link `quarry serve` printed/s);
  await stranger.close();

  const t0 = Date.now();
  await page.goto(link);
  await page.waitForSelector("#tab-library[aria-selected=true]");
  assert.equal(new URL(page.url()).hash, "", "the token is taken out of the address bar");
  const paint = await page.evaluate(
    () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
  );
  console.log(`first contentful paint ${paint?.toFixed(0)} ms (page ready ${Date.now() - t0} ms)`);

  // A bad path is an error in words, not a crash.
  await page.fill("#folder", "/no/such/folder");
  await page.click("#add-folder");
  await page.waitForSelector("#error:not([hidden])");
  const error = await page.textContent("#error");
  assert.match(error, /Could not add \/no\/such\/folder: .*no such file or folder/);
  await page.screenshot({ path: join(shots, "library-error.png") });

  // Add the corpus and watch the progress finish.
  await page.fill("#folder", docs);
  await page.click("#add-folder");
  await page.waitForSelector("#progress[data-phase=done]", { timeout: 180_000 });
  await page.waitForFunction(() => /Documents\s*1\d/.test(document.querySelector("#summary").textContent));
  assert.match(await page.textContent("#failures"), /broken\.pdf/);
  assert.match(await page.textContent("#folders"), /1\d documents, \d+ chunks · 1 failed · 1 skipped · indexed/);
  assert.ok(await page.isHidden("#error"), "the earlier error is gone");
  // How the library is kept on disk; encrypting is done where the server runs.
  assert.match(await page.textContent("#encryption-state"), /^Not encrypted.*quarry encrypt/);
  assert.ok(await page.isHidden("#encrypt-section"), "no encrypt form in the browser");
  await page.screenshot({ path: join(shots, "library.png") });

  // Search as you type; open a result in the preview with the passage highlighted.
  await page.keyboard.press("Tab"); // keyboard reaches everything; tabs move with arrows
  await page.focus("#tab-library");
  await page.keyboard.press("ArrowRight");
  assert.equal(await page.getAttribute("#tab-search", "aria-selected"), "true");
  await page.fill("#query", "Morteratsch glacier");
  await page.waitForSelector("#results .hit");
  assert.equal(await page.textContent("#results .hit .file"), "glaciers.pdf");
  assert.ok(await page.$("#results .hit mark"), "the snippet highlights the query");
  await page.click("#results .hit");
  await page.waitForSelector("#preview mark.passage");
  assert.match(await page.textContent("#preview mark.passage"), /Morteratsch/);
  // Open it in the system's viewer, at the passage's page.
  await page.click("#results .hit-row .open");
  await page.waitForFunction(() => document.querySelector("#results .hit-row .open").dataset.opened === "true");
  for (let i = 0; i < 100 && !existsSync(opened); i++) await page.waitForTimeout(50);
  assert.match(readFileSync(opened, "utf8"), /glaciers\.pdf --page 2/);
  // Summarize the document shown: the summary streams in above its text,
  // and a citation in it marks its passage in the document.
  await page.click("#preview .summarize");
  await page.waitForSelector("#preview .summary[data-done=true]", { timeout: 180_000 });
  assert.ok((await page.textContent("#preview .summary-text")).trim().length > 20, "a summary, not a word");
  assert.match(await page.textContent("#preview .summary-status"), /Written by .* from all \d+ passages/);
  const summaryCite = await page.$("#preview .summary .cite");
  if (summaryCite) {
    await summaryCite.click();
    await page.waitForSelector("#preview .doc-block.cited");
  }
  await page.screenshot({ path: join(shots, "summary.png") });
  // A date range outside every file's modification time finds nothing.
  await page.fill("#after", "2100-01-01");
  await page.dispatchEvent("#after", "change");
  await page.waitForSelector("#results .empty");
  await page.fill("#after", "");
  await page.dispatchEvent("#after", "change");
  await page.waitForSelector("#results .hit");
  await page.selectOption("#ext", "docx");
  await page.fill("#query", "termination notice");
  await page.waitForFunction(() => {
    const files = [...document.querySelectorAll("#results .hit .file")];
    const marks = [...document.querySelectorAll("#results .hit mark")].map((m) => m.textContent.toLowerCase());
    return files.length > 0 && files.every((f) => f.textContent.endsWith(".docx")) && marks.includes("notice");
  });
  await page.screenshot({ path: join(shots, "search.png") });

  // The scanned PDF's hit says it is a scanned page and how sure OCR was;
  // its preview marks the scanned page.
  await page.selectOption("#ext", "");
  await page.fill("#query", "ownership of fifty percent of the outstanding shares");
  const scanned = "#results .hit:has(.file:text-is('scanned-report.pdf'))";
  await page.waitForSelector(scanned);
  assert.match(await page.textContent(`${scanned} .where`), /page 1, scanned page, OCR \d+%/);
  await page.click(scanned);
  await page.waitForSelector("#preview .hint.scan");
  assert.match(await page.textContent("#preview .hint.scan"), /^Page 1: scanned page, OCR \d+%$/);
  await page.waitForSelector("#preview mark.passage");
  await page.screenshot({ path: join(shots, "search-scanned.png") });

  // Ask: the answer streams in, says where it came from, and its sources open.
  await page.click("#tab-ask");
  await page.fill("#question", "How much length did the Morteratsch glacier lose?");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#answer[data-done=true]", { timeout: 180_000 });
  assert.equal(await page.getAttribute("#route-badge", "data-target"), "local");
  assert.ok((await page.textContent("#answer")).trim().length > 0);
  // Evidence first: the best-matching sentences are listed, and one opens
  // its document with the sentence highlighted.
  assert.ok(!(await page.isHidden("#evidence")), "the best-matching sentences are shown");
  assert.match(await page.textContent("#evidence-list"), /Morteratsch/);
  await page.click("#evidence-list .evidence-item");
  await page.waitForSelector("#source-preview .passage");
  const cite = (await page.$("#answer .cite")) ?? (await page.$("#sources .source.cited")) ?? (await page.$("#sources .source"));
  await cite.click();
  await page.waitForSelector("#source-preview .passage");
  assert.ok(!(await page.isDisabled("#copy-md")), "the answer can be copied as Markdown");
  await page.screenshot({ path: join(shots, "ask.png") });

  // Extract: two fields over one document; the table fills in, a value opens
  // its passage, and the table downloads as CSV.
  await page.click("#tab-extract");
  await page.fill("#fields .field-row:nth-child(1) .field-name", "sender");
  await page.fill("#fields .field-row:nth-child(1) .field-description", "who sent the message");
  await page.click("#add-field");
  await page.fill("#fields .field-row:nth-child(2) .field-name", "kind");
  await page.selectOption("#fields .field-row:nth-child(2) .field-type", "enum");
  await page.fill("#fields .field-row:nth-child(2) .field-choices", "meeting, party, other");
  await page.fill("#extract-folder", join(docs, "invite.eml"));
  await page.click("#extract-button");
  await page.waitForSelector("#extract-table[data-done=true]", { timeout: 180_000 });
  assert.deepEqual(await page.$$eval("#extract-head th", (h) => h.map((x) => x.textContent)), ["Document", "sender", "kind"]);
  assert.equal(await page.$$eval("#extract-rows tr", (r) => r.length), 1);
  assert.match(await page.textContent("#extract-rows th"), /invite\.eml/);
  assert.match(await page.textContent("#extract-status"), /1 extracted/);
  const value = await page.$("#extract-rows td[data-cited] .cell-value");
  assert.ok(value, "at least one value is cited");
  await value.click();
  await page.waitForSelector("#extract-preview .passage");
  await page.screenshot({ path: join(shots, "extract.png") });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv, /^path,sender,kind,unverified,error\n/);
  assert.match(csv, /invite\.eml/);

  // Save the schema with the library: after a reload it is listed, and
  // choosing it fills the form again.
  await page.fill("#schema-name", "Invitations");
  await page.click("#schema-save");
  await page.waitForFunction(() => /Saved the schema “Invitations”/.test(document.querySelector("#extract-status").textContent));
  assert.equal(await page.inputValue("#schema-saved"), "Invitations");
  const listed = await (await fetch(`${base}/api/schemas`, { headers: auth })).json();
  assert.deepEqual(listed.map((x) => x.name), ["Invitations"]);
  await page.reload();
  await page.click("#tab-extract");
  await page.waitForSelector("#schema-saved option[value='Invitations']", { state: "attached" });
  await page.selectOption("#schema-saved", "Invitations");
  assert.deepEqual(await page.$$eval("#fields .field-name", (f) => f.map((x) => x.value)), ["sender", "kind"]);
  assert.equal(await page.inputValue("#fields .field-row:nth-child(2) .field-choices"), "meeting, party, other");

  // Search hands the documents it found to Extract; the table has exactly
  // those (kept from the run above, so no model call).
  await page.click("#tab-search");
  await page.selectOption("#ext", "eml");
  await page.fill("#query", "Orchid migration kickoff");
  await page.waitForSelector("#extract-from-results:not([hidden])");
  const found = await page.$$eval("#results .hit", (h) => [...new Set(h.map((x) => x.title))]);
  assert.ok(found.length >= 1 && found[0].endsWith("invite.eml"), JSON.stringify(found));
  await page.click("#extract-from-results");
  assert.equal(await page.getAttribute("#tab-extract", "aria-selected"), "true");
  assert.match(await page.textContent("#extract-found"), /From the search “Orchid migration kickoff”: \d+ documents?/);
  assert.ok(await page.isHidden("#extract-filters"), "the folder and type give way to the search's documents");
  await page.click("#extract-button");
  await page.waitForSelector("#extract-table[data-done=true]", { timeout: 180_000 });
  assert.deepEqual(await page.$$eval("#extract-rows th", (h) => h.map((x) => x.title)), found);
  assert.match(await page.textContent("#extract-status"), /kept from before/);
  await page.screenshot({ path: join(shots, "extract-from-search.png") });
  await page.click("#extract-found-clear");
  assert.ok(await page.isHidden("#extract-found"));
  await page.click("#schema-delete");
  await page.waitForFunction(() => !document.querySelector("#schema-saved option[value='Invitations']"));
  assert.deepEqual(await (await fetch(`${base}/api/schemas`, { headers: auth })).json(), []);

  // Remove the folder again (after confirming): the library is empty.
  await page.click("#tab-library");
  page.once("dialog", (d) => d.accept());
  await page.click("#folders .remove");
  await page.waitForFunction(() => /No folders yet/.test(document.querySelector("#folders").textContent));
  assert.match(await page.textContent("#summary"), /Documents\s*0/);
  // Removal is provable: every file of the library was checked for copies.
  assert.match(await page.textContent("#removed"), /its 1\d documents\. Verified: none of the library's \d+ files holds their text or vectors any more\./);

  // An agent (the official MCP SDK's client, over /mcp) searches the library
  // before Settings opens: Settings shows the call in what agents read.
  const sdk = (p) => import(pathToFileURL(join(repo, "tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
  const { Client } = await sdk("client/index.js");
  const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
  const agent = new Client({ name: "quarry-browser-test", version: "1.0.0" });
  await agent.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: auth } }));
  const searched = await agent.callTool({ name: "search", arguments: { query: "glaciers" } });
  assert.ok(!searched.isError, JSON.stringify(searched));
  await agent.close();

  await page.click("#tab-settings");
  await page.waitForFunction(() => /local-only/.test(document.querySelector("#settings-list").textContent));
  await page.waitForFunction(() => /quarry-browser-test/.test(document.querySelector("#agents-log").textContent));
  assert.match(await page.textContent("#agents-log"), /search/);
  assert.match(await page.textContent("#agents-claude"), /"mcpServers"[\s\S]*"mcp",\s*"--library"/);
  assert.ok(await page.isChecked("#agents-shared"), "agents may read a library by default");
  const shared = async () => (await (await fetch(`${base}/api/agents`, { headers: auth })).json()).shared;
  const until = async (want) => {
    for (let i = 0; i < 50 && (await shared()) !== want; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await shared(), want, `agents shared: ${want}`);
  };
  await page.uncheck("#agents-shared");
  await until(false);
  await page.check("#agents-shared");
  await until(true);
  // Privacy settings change from the UI; never-leaves-device wins over the global mode.
  await page.selectOption("#privacy-mode", "ask");
  await page.waitForFunction(() => /ask \(the global privacy mode is ask\)/.test(document.querySelector("#settings-list").textContent));
  await page.check("#never-leaves");
  await page.waitForFunction(() => /never-leaves-device/.test(document.querySelector("#settings-list").textContent));
  assert.match(await page.textContent("#privacy-badge"), /local-only/);
  // The models: the embedder in use, with its size.
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#models tr")].some((r) => /all-minilm-l6-v2/.test(r.textContent) && /installed, in use/.test(r.textContent) && /MiB/.test(r.textContent)),
  );
  // Pick the answer model for this machine: the probe runs, every answer
  // model shows its speed here, one is recommended; choosing an installed
  // one takes over from the next question and is kept (settings.toml).
  await page.click("#probe-machine");
  await page.waitForFunction(() => /^This machine: .*threads/.test(document.querySelector("#machine").textContent), null, { timeout: 60_000 });
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#models tr")].some((r) => /smollm2-135m-instruct-q4_1/.test(r.textContent) && /this machine: ~\d+ tok\/s reading/.test(r.textContent)),
  );
  assert.equal(await page.locator("#models .badge", { hasText: "recommended for this machine" }).count(), 1);
  const use = page.locator('#models button[aria-label="Use gemma3-270m-q4_k_m for answers"]');
  await use.click();
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#models tr")].some((r) => /gemma3-270m-q4_k_m/.test(r.textContent) && /installed, in use/.test(r.textContent)),
  );
  const generators = await (await fetch(`${base}/v1/models`, { headers: auth })).json();
  assert.ok(generators.data.some((m) => m.id === "gemma3-270m-q4_k_m"), JSON.stringify(generators));
  // The next answer comes from the newly chosen model, loaded on demand.
  const chat = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify({ model: "gemma3-270m-q4_k_m", messages: [{ role: "user", content: "Say hello." }], max_tokens: 4 }),
  });
  const reply = await chat.json();
  assert.equal(chat.status, 200, JSON.stringify(reply));
  assert.equal(reply.model, "gemma3-270m-q4_k_m", JSON.stringify(reply));
  assert.match(readFileSync(join(tmp, "config", "settings.toml"), "utf8"), /generator = "gemma3-270m-q4_k_m"/);
  // OCR's availability is stated (Tesseract is installed here).
  assert.match(await page.textContent("#settings-list"), /OCR \(scanned pages, images\)Tesseract 5\.\d+\.\d+; languages: .*eng/);
  await page.screenshot({ path: join(shots, "settings.png") });

  // Meaning search switched from Settings to the multilingual embedder (the
  // test script installs it): after a confirmation the library is embedded
  // again in the background, the Library tab follows it, and then the
  // embedder is the one in use.
  page.once("dialog", (d) => d.accept());
  await page.click('#models button[aria-label="Use multilingual-e5-small-q4 for meaning search"]');
  await page.click("#tab-library");
  await page.waitForFunction(
    () => /Meaning search now uses multilingual-e5-small-q4/.test(document.querySelector("#progress-text").textContent),
    null,
    { timeout: 180_000 },
  );
  await page.click("#tab-settings");
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#models tr")].some((r) => /multilingual-e5-small-q4/.test(r.textContent) && /installed, in use/.test(r.textContent)),
  );
  assert.match(await page.textContent("#settings-list"), /Embeddermultilingual-e5-small-q4/);

  // The one expected failure: the browser logs the refused bad path (HTTP 400).
  const unexpected = problems.filter((p) => !/status of 400/.test(p));
  assert.deepEqual(unexpected, [], "no console errors (CSP violations included)");
  assert.equal(problems.length, 1, `only the bad path failed: ${problems}`);
  console.log(`browser test passed; screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.kill();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
