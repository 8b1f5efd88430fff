// The web console in headless Chromium (driven by tests/it/console.rs).
//
// Env: POSTERN_UI (http://127.0.0.1:<port>), POSTERN_UI_KEY, REMOTE (the
// "remote" host's origin: a listener of the Rust test), SHOTS (screenshot
// directory), USER_DATA_DIR (a fresh profile), CHROMIUM (the executable),
// NODE_MODULES (where playwright-core is installed).
// Steps the Rust side must act on are lines `STEP <name>` on stdout; it
// answers each with one line on stdin (`go`, or anything else to stop).
// The last line is `RESULT ok` on success; any failure exits 1.

import { createInterface } from "node:readline";
import { createRequire } from "node:module";

// playwright-core lives in target/browser/node_modules (tests/run.sh), not
// beside this file: resolve it from there (NODE_MODULES).
const { chromium } = createRequire(`${process.env.NODE_MODULES}/`)("playwright-core");

const base = process.env.POSTERN_UI;
const key = process.env.POSTERN_UI_KEY;
const remote = process.env.REMOTE;
const shots = process.env.SHOTS;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== "go") throw new Error(`step ${name}: the test said ${value}`);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok ${what}`);
}

const flags = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const context = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: flags,
  viewport: { width: 1280, height: 860 },
});
const deadline = setTimeout(() => { console.log("timeout"); process.exit(2); }, 150_000);

// Everything the page and its frames ask for, every console line, every dialog.
// A request the page blocked itself (CSP) still shows as a request, then
// fails; what matters is what got an answer, and the remote listener's own
// count (the Rust side checks it at each step).
const requests = [];
const answered = [];
const blocked = [];
const consoleLines = [];
const dialogs = [];
context.on("request", (r) => requests.push(r.url()));
const statuses = new Map();
context.on("response", (r) => { answered.push(r.url()); statuses.set(r.url(), r.status()); });
context.on("requestfailed", (r) => blocked.push(`${r.url()} (${r.failure() && r.failure().errorText})`));
const page = context.pages()[0] || (await context.newPage());
page.on("console", (m) => consoleLines.push(m.text()));
page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
page.setDefaultTimeout(20_000);

try {
  // --- Log in: a wrong key is refused, the right one gets in.
  await page.goto(`${base}/ui/login`);
  await page.screenshot({ path: `${shots}/login.png`, fullPage: true });
  await page.fill("#secret", "not-the-key");
  const refused = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/ui/login") && r.request().method() === "POST"),
    page.click("button[type=submit]"),
  ]);
  check(refused[0].status() === 401, "a wrong key is refused (401)");
  check((await page.textContent("main")).includes("Wrong API key"), "the refusal says why");
  await page.fill("#secret", key);
  await Promise.all([page.waitForURL(`${base}/ui/messages`), page.click("button[type=submit]")]);
  check(true, "the right key logs in and lands on the messages");

  // --- A mail sent now shows up in the open list without a reload.
  await page.waitForSelector("#live-status:has-text('Live')");
  await page.evaluate(() => { window.__sameDocument = true; });
  await step("send-live");
  const liveRow = page.locator("tbody[data-events] tr", { hasText: "Live hello" });
  await liveRow.waitFor();
  check(await page.evaluate(() => window.__sameDocument === true), "the row came in without a reload");
  await page.screenshot({ path: `${shots}/messages.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${shots}/messages-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 860 });

  // --- Open it: subject, text, HTML preview.
  await Promise.all([page.waitForURL(/\/ui\/messages\/[0-9a-f]+$/), liveRow.locator("a").first().click()]);
  check((await page.textContent("h1")).includes("Live hello"), "the subject is the heading");
  check((await page.textContent("pre.text")).includes("plain words"), "the text body is shown");
  const preview = page.frameLocator("iframe.preview");
  await preview.locator("text=rich words").waitFor();
  check(true, "the HTML preview shows the HTML part");
  const sandbox = await page.getAttribute("iframe.preview", "sandbox");
  check(sandbox === "", `the preview frame is sandboxed with nothing allowed (${sandbox})`);
  await page.screenshot({ path: `${shots}/message.png`, fullPage: true });

  // --- An inline `cid:` image shows inside the sandboxed preview: the frame
  // has an opaque origin, so this is the case a SameSite=Strict cookie
  // alone would break.
  await page.goto(`${base}/ui/messages?q=Inline+picture`);
  await Promise.all([page.waitForURL(/\/ui\/messages\/[0-9a-f]+$/),
    page.locator("tbody tr", { hasText: "Inline picture" }).locator("a").first().click()]);
  const framed = page.frameLocator("iframe.preview");
  await framed.locator("text=Picture below").waitFor();
  let cidStatus;
  for (let i = 0; i < 40 && cidStatus === undefined; i++) {
    cidStatus = [...statuses].find(([u]) => u.includes("/inline/"))?.[1];
    if (cidStatus === undefined) await page.waitForTimeout(100);
  }
  check(cidStatus === 200, `the cid: image was served to the preview (${cidStatus})`);
  const shown = await framed.locator("img#dot").evaluate((img) => img.complete && img.naturalWidth);
  check(shown === 24, `the cid: image is drawn in the preview (${shown} px wide)`);
  await page.screenshot({ path: `${shots}/inline-picture.png`, fullPage: true });

  // --- Hostile HTML runs nothing and loads nothing.
  await page.goto(`${base}/ui/messages?q=Hostile`);
  await Promise.all([page.waitForURL(/\/ui\/messages\/[0-9a-f]+$/),
    page.locator("tbody tr", { hasText: "Hostile" }).locator("a").first().click()]);
  await page.frameLocator("iframe.preview").locator("text=Hostile body").waitFor();
  await page.waitForTimeout(1500); // let onerror and timers fire, if they could
  await page.screenshot({ path: `${shots}/hostile.png`, fullPage: true });
  check(dialogs.length === 0, `no dialog opened (${dialogs})`);
  check(!consoleLines.some((l) => l.includes("PWNED")), "no script of the mail ran");
  console.log(`blocked by the page: ${blocked.join(", ")}`);
  check(!answered.some((u) => u.startsWith(remote)), "nothing came from the remote host");
  check(answered.every((u) => u.startsWith(base)), "every answer came from Postern");
  check(requests.filter((u) => u.startsWith(remote)).every((u) => blocked.some((b) => b.startsWith(u))),
    "every attempt at the remote host was blocked by the browser");
  await step("remote-blocked");

  // The button loads remote images, and still runs nothing.
  await page.click("a[data-remote-images]");
  await page.frameLocator("iframe.preview").locator("text=Hostile body").waitFor();
  await page.waitForTimeout(1500);
  check(answered.some((u) => u.startsWith(`${remote}/pixel.png`)), "after the click the remote image loads");
  check(dialogs.length === 0 && !consoleLines.some((l) => l.includes("PWNED")), "and still no script ran");
  await step("remote-loaded");

  // --- A dead delivery, retried by its button, then shows delivered.
  await page.goto(`${base}/ui/dead`);
  const deadRow = page.locator("tr", { hasText: "dead@example.com" });
  await deadRow.waitFor();
  await page.screenshot({ path: `${shots}/dead.png`, fullPage: true });
  await deadRow.locator("a", { hasText: "Delete" }).click();
  await page.waitForSelector("text=Delete this delivery?");
  await page.screenshot({ path: `${shots}/confirm-delete.png`, fullPage: true });
  await page.click("text=Cancel");
  await step("open-endpoint");
  await Promise.all([page.waitForURL(/done=retried/), deadRow.locator("button", { hasText: "Retry" }).click()]);
  check((await page.textContent("main")).includes("Retried"), "Retry says so");
  await page.goto(`${base}/ui/messages?address=dead%40example.com`);
  let delivered = false;
  for (let i = 0; i < 40 && !delivered; i++) {
    delivered = await page.locator("tbody tr .badge.delivered").count() > 0;
    if (!delivered) { await page.waitForTimeout(500); await page.reload(); }
  }
  check(delivered, "the retried message shows as delivered");
  await Promise.all([page.waitForURL(/\/ui\/messages\/[0-9a-f]+$/), page.locator("tbody tr a").first().click()]);
  await page.waitForSelector("section.delivery .badge.delivered");
  check(await page.locator("ol.timeline li.delivered").count() === 1, "its timeline shows the delivering attempt");
  await page.screenshot({ path: `${shots}/delivered.png`, fullPage: true });

  // --- CSRF: a POST without the token is refused.
  const forged = await page.evaluate(async () => {
    const r = await fetch("/ui/logout", { method: "POST", body: new URLSearchParams({}), redirect: "manual" });
    return r.status;
  });
  check(forged === 403, `a POST without the token is refused (${forged})`);
  check((await page.goto(`${base}/ui/dead`)).status() === 200, "and the session is still there");

  // --- Logout ends the session.
  await Promise.all([page.waitForURL(`${base}/ui/login`), page.click("form.logout button")]);
  await page.goto(`${base}/ui/messages`);
  check(page.url() === `${base}/ui/login`, "after logout the console asks for a log-in again");

  console.log("RESULT ok");
} catch (e) {
  console.log(`FAILED ${e && e.stack ? e.stack : e}`);
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  await context.close();
}
process.exit(process.exitCode || 0);
