// Drives the gallery app in Debian's chromium through playwright-core.
// Usage: node drive.mjs SERVER_BASE OUT_DIR (NODE_TOOLS = the npm prefix).
// Prints one JSON line with what it saw; exits non-zero on the first failed check.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
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
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
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
    return imgs.length === count && imgs.every((i) => i.src.startsWith("data:image/") && i.complete && i.naturalWidth > 0);
  }, n, WAIT);
  const ids = () => frame.evaluate(() => [...document.querySelectorAll(".card")].map((c) => c.dataset.id));

  // 1. The model calls generate_image for two images; the host hands the result to the app.
  const first = await page.evaluate(() => window.host.callTool("generate_image", {
    prompt: "a red lighthouse at dusk", num_images: 2, width: 64, height: 64, seed: 11,
  }));
  seen.generated = first.structuredContent.images.map((i) => i.id);
  await rendered(2);
  seen.afterGenerate = await ids();
  seen.alts = await frame.evaluate(() => [...document.querySelectorAll(".card img")].map((i) => i.alt));
  step("two images rendered");

  // 2. "New seed" on the first card: the app calls generate_image through the bridge.
  await frame.locator(".card").first().getByRole("button", { name: "New seed" }).click();
  await rendered(3);
  seen.afterNewSeed = await ids();
  step("new seed rendered a third");

  // 3. The detail view, by keyboard: focus the newest thumbnail, press Enter.
  const newest = seen.afterNewSeed.find((id) => !seen.afterGenerate.includes(id));
  check(newest, "no new card after New seed");
  await frame.locator(`.thumb[data-id="${newest}"]`).focus();
  await page.keyboard.press("Enter");
  await frame.waitForFunction(() => {
    const img = document.getElementById("detail-img");
    return !document.getElementById("detail").hidden && img.complete && img.naturalWidth === 64
      && img.src.startsWith("data:image/png;base64,")
      && document.getElementById("recipe").textContent.includes("Created");
  }, null, WAIT);
  seen.recipe = await frame.evaluate(() => [...document.querySelectorAll("#recipe dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]));
  await page.screenshot({ path: join(outDir, "detail.png") });
  step("detail view shows the full image and recipe");

  // 4. Transform from the detail view: a format the server offers (its list, not ours).
  seen.formats = await frame.evaluate(() => [...document.querySelectorAll("#format option")].map((o) => o.value).filter(Boolean));
  await frame.getByLabel("Format").selectOption("jpeg");
  await frame.getByRole("button", { name: "Transform" }).click();
  await rendered(4);
  seen.afterTransform = await ids();
  check(await frame.evaluate(() => document.getElementById("detail").hidden), "detail view still open");
  step("transform added a fourth");

  // 5. Delete the second original image, confirming in the app's own dialog.
  const victim = seen.generated[1];
  await frame.locator(`.card[data-id="${victim}"]`).getByRole("button", { name: "Delete" }).click();
  await frame.getByRole("dialog").waitFor({ state: "visible", ...WAIT });
  await frame.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await frame.waitForFunction((id) => !document.querySelector(`.card[data-id="${id}"]`)
    && document.querySelectorAll(".card").length === 3, victim, WAIT);
  seen.deleted = victim;
  seen.afterDelete = await ids();
  seen.status = await frame.evaluate(() => document.getElementById("status").textContent);
  step("deleted after confirmation");
  await page.screenshot({ path: join(outDir, "gallery.png") });

  // 6. Narrow: the grid reflows without sideways scrolling.
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
