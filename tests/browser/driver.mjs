// The tests' one browser driver: opens a URL in headless Chromium (Debian's, through
// playwright-core) and waits until a JavaScript expression evaluated in the page is
// truthy; prints {"value": …, "console": […]} as JSON. Used by testkit::browser.
//   node driver.mjs URL EXPRESSION [TIMEOUT_MS]
import { chromium } from "playwright-core";

const [url, expression, timeout = "30000"] = process.argv.slice(2);
if (!url || !expression) {
  console.error("usage: node driver.mjs URL EXPRESSION [TIMEOUT_MS]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // This machine's network is closed: no background calls home.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"],
});
const log = [];
try {
  const page = await browser.newPage();
  page.on("console", m => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", e => log.push(`pageerror: ${e.message}`));
  page.on("requestfailed", r => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(url);
  const handle = await page.waitForFunction(expression, null, { timeout: Number(timeout), polling: 100 });
  console.log(JSON.stringify({ value: await handle.jsonValue(), console: log }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message || e), console: log }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
