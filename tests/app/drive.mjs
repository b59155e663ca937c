// Drives the gallery app in Debian's chromium through playwright-core.
// Usage: node drive.mjs SERVER_BASE OUT_DIR (NODE_TOOLS = the npm prefix).
// Prints one JSON line with what it saw; exits non-zero on the first failed check.
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(process.env.NODE_TOOLS, "node_modules", "noop.js"));
const { chromium } = require("playwright-core");
const esbuild = require("esbuild");

const [base, outDir] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const WAIT = { timeout: 60_000 };  // generous: two cores shared by many sessions
const seen = { steps: [] };
const step = (name) => { seen.steps.push(name); console.error(`step: ${name}`); };
function check(condition, message) { if (!condition) throw new Error(message); }

const bundle = await esbuild.build({
  entryPoints: [join(here, "host.js")],
  bundle: true, format: "esm", platform: "browser", write: false, logLevel: "error",
  nodePaths: [join(process.env.NODE_TOOLS, "node_modules")],
});
const hostJs = bundle.outputFiles[0].text;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  // playwright gives each launch a fresh temporary profile (--user-data-dir).
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  // The host page may read the clipboard back; the app's frame gets only what
  // the host's allow attribute grants it.
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  // The host page is served under the server's origin (so its MCP client may
  // POST to /mcp), by the browser itself: these two paths never reach the server.
  await page.route(`${base}/app-test/host.html`, (route) => route.fulfill({
    contentType: "text/html",
    body: '<!doctype html><html><head><meta charset="utf-8"><title>host</title></head>'
      + '<body><script type="module" src="host.js"></script></body></html>',
  }));
  await page.route(`${base}/app-test/host.js`, (route) => route.fulfill({
    contentType: "text/javascript", body: hostJs,
  }));
  await page.goto(`${base}/app-test/host.html`);
  await page.waitForFunction(() => typeof window.startHost === "function", null, WAIT);
  seen.host = await page.evaluate(() => window.startHost("/mcp", "dark"));
  step("host started");
  const frame = page.frames().find((f) => f !== page.mainFrame());
  check(frame, "no app frame");
  await frame.waitForFunction(() => document.body.dataset.ready === "true", null, WAIT);
  seen.theme = await frame.evaluate(() => document.documentElement.dataset.theme);

  const rendered = (n) => frame.waitForFunction((count) => {
    const imgs = [...document.querySelectorAll(".card img")];
    return imgs.length === count && imgs.every((i) => i.src.startsWith("data:image/") && i.complete && i.naturalWidth > 0)
      && performance.timeOrigin + performance.now();
  }, n, WAIT);
  const ids = () => frame.evaluate(() => [...document.querySelectorAll(".card")].map((c) => c.dataset.id));

  // 1. The model calls generate_image for two styled images; the host hands the result to the app.
  const first = await page.evaluate(() => window.host.callTool("generate_image", {
    prompt: "a red lighthouse at dusk", num_images: 2, width: 64, height: 64, seed: 11, style: "watercolor",
  }));
  seen.generated = first.structuredContent.images.map((i) => i.id);
  // Polled every animation frame: the time it returns is when both images showed.
  const shownAt = await (await rendered(2)).jsonValue();
  const timing = await page.evaluate(() => window.host.timing);
  seen.speed = {
    htmlBytes: Buffer.byteLength(seen.host.html),
    htmlGzipBytes: gzipSync(seen.host.html, { level: 9 }).length,
    startMs: Math.round(timing.initialized - timing.loading),
    firstRenderMs: Math.round(shownAt - timing.resultSent),
  };
  delete seen.host.html;
  seen.afterGenerate = await ids();
  seen.alts = await frame.evaluate(() => [...document.querySelectorAll(".card img")].map((i) => i.alt));
  seen.cards = await frame.evaluate(() => [...document.querySelectorAll(".card")].map((c) => ({
    prompt: c.querySelector(".prompt").textContent, facts: c.querySelector(".facts").textContent })));
  step("two images rendered");

  // 2. "New seed" on the first card: the app calls generate_image through the bridge.
  await frame.locator(".card").first().getByRole("button", { name: "New seed" }).click();
  await rendered(3);
  seen.afterNewSeed = await ids();
  step("new seed rendered a third");
  const newest = seen.afterNewSeed.find((id) => !seen.afterGenerate.includes(id));
  check(newest, "no new card after New seed");

  // 3. "Same seed" on the first generated image: a fourth with its seed.
  await frame.locator(`.card[data-id="${seen.generated[0]}"]`).getByRole("button", { name: "Same seed" }).click();
  await rendered(4);
  seen.afterSameSeed = await ids();
  seen.sameSeedFacts = await frame.evaluate(() => document.querySelector(".card .facts").textContent);
  step("same seed rendered a fourth");

  // 4. "Copy prompt": the host granted clipboard-write (the resource asked for it).
  await frame.locator(`.card[data-id="${newest}"]`).getByRole("button", { name: "Copy prompt" }).click();
  await frame.waitForFunction(() => /copied|blocked/i.test(document.getElementById("status").textContent), null, WAIT);
  seen.copyStatus = await frame.evaluate(() => document.getElementById("status").textContent);
  seen.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  step("prompt copied");

  // 5. The detail view, by keyboard: focus the thumbnail, press Enter; twice.
  const detailOpen = (width) => frame.waitForFunction((w) => {
    const img = document.getElementById("detail-img");
    return !document.getElementById("detail").hidden && img.complete && img.naturalWidth === w
      && img.src.startsWith("data:image/") && document.getElementById("recipe").textContent.includes("Created");
  }, width, WAIT);
  const recipe = () => frame.evaluate(() => [...document.querySelectorAll("#recipe dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]));
  const openByKeyboard = async (id) => {
    await frame.locator(`.thumb[data-id="${id}"]`).focus();
    await page.keyboard.press("Enter");
    await detailOpen(64);
  };
  await openByKeyboard(newest);
  seen.recipe = await recipe();
  await page.screenshot({ path: join(outDir, "detail.png") });
  await page.keyboard.press("Escape");
  await frame.waitForFunction(() => document.getElementById("detail").hidden, null, WAIT);
  await openByKeyboard(newest);
  seen.reads = await page.evaluate(() => window.host.reads.slice());
  step("detail view shows the full image and recipe, read once");

  // 6. A variation from the detail view at a chosen strength.
  await frame.getByLabel(/^Strength/).fill("0.35");
  await frame.getByRole("button", { name: "Variation" }).click();
  await rendered(5);
  seen.afterVariation = await ids();
  const variation = seen.afterVariation.find((id) => !seen.afterSameSeed.includes(id));
  check(variation, "no new card after Variation");
  await openByKeyboard(variation);
  seen.variationRecipe = await recipe();
  seen.ariaDetail = await frame.locator("#detail").ariaSnapshot();
  await page.screenshot({ path: join(outDir, "variation.png") });
  // Its source is shown too: the lineage link opens it (from the kept full image).
  await frame.getByRole("button", { name: "Open the source image" }).click();
  await frame.waitForFunction((id) => document.querySelector("#recipe dd:last-of-type").textContent === id, newest, WAIT);
  await detailOpen(64);
  seen.readsAfterSource = await page.evaluate(() => window.host.reads.slice());
  await page.keyboard.press("Escape");
  await frame.waitForFunction(() => document.getElementById("detail").hidden, null, WAIT);
  await openByKeyboard(variation);
  step("variation rendered with its lineage");

  // 7. Transform from the detail view (still the variation's): a format the server offers.
  seen.formats = await frame.evaluate(() => [...document.querySelectorAll("#format option")].map((o) => o.value).filter(Boolean));
  await frame.getByLabel("Format").selectOption("jpeg");
  await frame.getByRole("button", { name: "Transform" }).click();
  await rendered(6);
  seen.afterTransform = await ids();
  check(await frame.evaluate(() => document.getElementById("detail").hidden), "detail view still open");
  step("transform added a sixth");

  // 8. Delete, keyboard only: the dialog keeps Tab inside, Escape gives focus back.
  const victim = seen.generated[1];
  const focused = () => frame.evaluate(() => {
    const a = document.activeElement;
    return a ? (a.id || `${a.dataset.action}:${a.dataset.id}`) : null;
  });
  const dialog = frame.getByRole("dialog");
  await frame.locator(`.card[data-id="${victim}"]`).getByRole("button", { name: "Delete" }).focus();
  await page.keyboard.press("Enter");
  await dialog.waitFor({ state: "visible", ...WAIT });
  seen.trap = [await focused()];
  for (const key of ["Tab", "Tab", "Tab", "Shift+Tab", "Shift+Tab"]) {
    await page.keyboard.press(key);
    seen.trap.push(await focused());
  }
  seen.ariaDialog = await dialog.ariaSnapshot();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden", ...WAIT });
  seen.focusAfterCancel = await focused();
  check(await frame.locator(`.card[data-id="${victim}"]`).count() === 1, "cancel deleted the image");
  await page.keyboard.press("Enter");
  await dialog.waitFor({ state: "visible", ...WAIT });
  await page.keyboard.press("Shift+Tab");  // Cancel → Delete
  await page.keyboard.press("Enter");
  await frame.waitForFunction((id) => !document.querySelector(`.card[data-id="${id}"]`)
    && document.querySelectorAll(".card").length === 5, victim, WAIT);
  seen.deleted = victim;
  seen.afterDelete = await ids();
  seen.focusAfterDelete = await focused();
  seen.status = await frame.evaluate(() => document.getElementById("status").textContent);
  seen.aria = await frame.locator("body").ariaSnapshot();
  step("deleted after confirmation, by keyboard");
  await page.screenshot({ path: join(outDir, "gallery.png") });

  // 9. Narrow: the grid reflows without sideways scrolling.
  await page.setViewportSize({ width: 360, height: 760 });
  await frame.waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, null, WAIT);
  await page.screenshot({ path: join(outDir, "gallery-narrow.png") });
  step("narrow width fits");
  seen.errors = logs.filter((l) => l.startsWith("pageerror") || l.startsWith("error"));
  console.log(JSON.stringify(seen));
} catch (error) {
  console.log(JSON.stringify({ ...seen, failure: String(error && error.stack || error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
