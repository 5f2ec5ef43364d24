// Drives the dashboard in Debian's headless Chromium through playwright-core,
// as a person would: waits for what the page shows, uploads components
// through the deploy form, and prints what it saw as one JSON object.
//
// Run by tests/e2e/dashboard.rs with: PLAYWRIGHT_DIR (where playwright-core
// is installed), DASHBOARD_URL, OPERATOR, BAD_WASM, GOOD_WASM, SHOTS (a
// folder for screenshots), DEAD_REASON (text a dead letter's reason holds).
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = name => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const { chromium } = createRequire(env("PLAYWRIGHT_DIR") + "/")("playwright-core");
const operator = env("OPERATOR");
const shots = env("SHOTS");
const seen = {};
const WAIT = { timeout: 60_000 };

const profile = mkdtempSync(join(tmpdir(), "weir-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  await page.goto(env("DASHBOARD_URL"));
  seen.title = await page.title();

  // The graph shows the pipeline's operators.
  await page.waitForSelector(`#graph .node.operator[data-id="operator:${operator}"]`, WAIT);
  seen.operators = await page.$$eval("#graph .node.operator .label", nodes => nodes.map(n => n.textContent));
  seen.nodes = await page.$$eval("#graph .node", nodes => nodes.map(n => n.getAttribute("data-id")));

  // Rates rise while input flows: an edge into the operator shows records/s > 0.
  await page.waitForFunction(op => [...document.querySelectorAll(`#graph .edge[data-to="operator:${op}"] .edge-rate`)]
    .some(label => Number(label.dataset.rate) > 0), operator, WAIT);
  seen.rate = await page.$eval(`#graph .edge[data-to="operator:${operator}"] .edge-rate`,
    label => ({ shown: label.textContent, value: Number(label.dataset.rate) }));

  // The bad record's dead letter, with its reason.
  await page.waitForFunction(reason => [...document.querySelectorAll("#dead-letters td.reason")]
    .some(td => td.textContent.includes(reason)), env("DEAD_REASON"), WAIT);
  seen.deadReasons = await page.$$eval("#dead-letters td.reason", tds => tds.map(td => td.textContent));
  await page.screenshot({ path: join(shots, "dashboard-running.png"), fullPage: true });

  const card = `.operator[data-id="${operator}"]`;
  // A component that is no operator: refused, with the reason on the page.
  await page.setInputFiles(`${card} form.deploy input[type=file]`, env("BAD_WASM"));
  await page.click(`${card} form.deploy button`);
  await page.waitForSelector(`${card} .refusal .reason`, WAIT);
  seen.refusal = await page.$eval(`${card} .refusal .reason`, r => r.textContent);
  seen.refusedResult = await page.$eval(`${card} .result`, r => r.textContent);

  // Version 2 through the form: the operator swaps, the page shows v2.
  await page.setInputFiles(`${card} form.deploy input[type=file]`, env("GOOD_WASM"));
  await page.click(`${card} form.deploy button`);
  await page.waitForFunction(sel => document.querySelector(sel)?.textContent === "v2", `${card} h3 .version`, WAIT);
  seen.version = await page.$eval(`${card} h3 .version`, v => v.textContent);
  seen.deployResult = await page.$eval(`${card} .result`, r => r.textContent);
  seen.versions = await page.$$eval(`${card} table.versions tbody tr td:first-child`, tds => tds.map(td => td.textContent));
  await page.screenshot({ path: join(shots, "dashboard-v2.png"), fullPage: true });
  seen.errors = errors;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(seen));
