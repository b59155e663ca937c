// Calls our server from pages on other origins in Debian's chromium (CORS).
// Usage: node cors.mjs PLAN_JSON (NODE_TOOLS = the npm prefix). The plan is a
// list of {name, origin, url, token}, each origin http://localhost:PORT: for
// each, a page served there, by a real server on loopback (Chromium lets a page
// reach the loopback address space only from loopback itself), runs
// cors_client.js's tryServer(url, token). Prints one JSON line, name -> seen.
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(process.env.NODE_TOOLS, "node_modules", "noop.js"));
const { chromium } = require("playwright-core");
const esbuild = require("esbuild");

const plan = JSON.parse(process.argv[2]);
const here = dirname(fileURLToPath(import.meta.url));
const WAIT = { timeout: 60_000 };  // generous: two cores shared by many sessions

const bundle = await esbuild.build({
  entryPoints: [join(here, "cors_client.js")],
  bundle: true, format: "esm", platform: "browser", write: false, logLevel: "error",
  nodePaths: [join(process.env.NODE_TOOLS, "node_modules")],
});
const clientJs = bundle.outputFiles[0].text;

const PAGE = '<!doctype html><html><head><meta charset="utf-8"><title>cors</title></head>'
  + '<body><script type="module" src="client.js"></script></body></html>';
const pages = [];
for (const port of new Set(plan.map(({ origin }) => new URL(origin).port))) {
  const server = createServer((request, response) => {
    const js = request.url === "/cors-test/client.js";
    if (!js && request.url !== "/cors-test/index.html") {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": js ? "text/javascript" : "text/html" });
    response.end(js ? clientJs : PAGE);
  });
  await new Promise((resolve) => server.listen(Number(port), "127.0.0.1", resolve));
  pages.push(server);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const seen = {};
try {
  for (const { name, origin, url, token } of plan) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const console_ = [];
    page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
    await page.goto(`${origin}/cors-test/index.html`);
    await page.waitForFunction(() => typeof window.tryServer === "function", null, WAIT);
    seen[name] = await page.evaluate(([u, t]) => window.tryServer(u, t), [url, token ?? null]);
    seen[name].console = console_;
    await context.close();
  }
} finally {
  await browser.close();
  for (const server of pages) server.close();
}
console.log(JSON.stringify(seen));
