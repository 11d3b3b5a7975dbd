// The analysts' page in a real browser (Debian's Chromium, driven by Playwright), against the
// edge in front of the origin. Run by `tests/tests/browser.rs`, which starts both and gives:
//   EDGE_URL, ORIGIN_URL, ADMIN_TOKEN  where the page is, and where to write
//   CHROMIUM                          the browser's executable
//   SCREENSHOT                        where to save the screenshot
// and restarts the origin when this script prints `drop the origin` (then writes a line on
// stdin). Exits non-zero, naming the step, on the first failure.
import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const { EDGE_URL, ORIGIN_URL, ADMIN_TOKEN, CHROMIUM, SCREENSHOT } = process.env;
const TIMEOUT_MS = 10_000;
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

async function rename(id, name) {
  const response = await fetch(`${ORIGIN_URL}/admin/v1/entities/${id}`, {
    method: "PATCH",
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      "content-type": "application/json",
      "if-match": "*",
    },
    body: JSON.stringify({ name }),
  });
  assert.equal(response.status, 200, `renaming ${id}: ${await response.text()}`);
}

function step(name) {
  console.log(`step: ${name}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 860 } });
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = await context.newPage();
  const errors = [];
  let dropping = false;
  const expectedWhileDropped = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // Chromium itself reports each failed WebSocket handshake while the origin is down.
    if (dropping && /WebSocket connection to .* failed/.test(message.text())) {
      expectedWhileDropped.push(message.text());
    } else {
      errors.push(`console: ${message.text()} (${message.location().url})`);
    }
  });

  const heading = page.getByRole("heading", { level: 2 });
  const breadcrumb = page.getByRole("navigation", { name: "Breadcrumb" });
  const children = page.locator("#children");
  const live = page.locator('#live[data-state="live"]');
  const search = page.getByLabel("Search entities");

  step("the page opens on the world, live");
  await page.goto(`${EDGE_URL}/`);
  await heading.filter({ hasText: /^World$/ }).waitFor();
  await live.waitFor();
  assert.equal(await live.textContent(), "Live");
  await page.evaluate(() => {
    window.notReloaded = true;
  });

  step("from the world down to a subdivision by clicking, the breadcrumb following");
  for (const name of ["Americas", "Northern America", "United States"]) {
    await children.getByRole("link", { name, exact: true }).click();
    await heading.filter({ hasText: name }).waitFor();
  }
  const crumbs = await breadcrumb.getByRole("listitem").allTextContents();
  assert.deepEqual(crumbs.map((crumb) => crumb.trim()), ["World", "Americas", "Northern America", "United States"]);
  assert.equal(await breadcrumb.locator('[aria-current="page"]').textContent(), "United States");
  const source = page.locator("#entity-source");
  assert.match(await source.textContent(), /^edge (hit|miss)$/);
  assert.match(await source.getAttribute("title"), /^Cache-Status: forecastin-edge/);

  step("the children page past the first, with More");
  assert.equal(await children.getByRole("link").count(), 50);
  await page.getByRole("button", { name: "More" }).click();
  await children.getByRole("link").nth(50).waitFor();
  assert.equal(await children.getByRole("link").count(), 57);
  assert.equal(await page.getByRole("button", { name: "More" }).isVisible(), false);
  await children.getByRole("link", { name: "Texas", exact: true }).click();
  await heading.filter({ hasText: "Texas" }).waitFor();
  assert.equal(await page.locator("#entity-kind").textContent(), "subdivision");

  step("search as you type, then choose a result with the keyboard");
  await search.click();
  await search.pressSequentially("bayer", { delay: 40 });
  const results = page.getByRole("list", { name: "Search results" });
  await results.getByRole("link", { name: /Bayern/ }).waitFor();
  const focused = () => page.evaluate(() => document.activeElement.textContent);
  for (let presses = 0; !/Bayern/.test(await focused()); presses += 1) {
    assert.ok(presses < 10, "ArrowDown never reached Bayern");
    await page.keyboard.press("ArrowDown");
  }
  await page.keyboard.press("Enter");
  await heading.filter({ hasText: "Bayern" }).waitFor();
  assert.equal(await results.isVisible(), false);
  assert.equal(
    await page.evaluate(() => document.activeElement.id),
    "main",
    "focus moves to the entity chosen"
  );
  assert.ok((await breadcrumb.textContent()).includes("Germany"));

  step("a rename arrives live, without a reload");
  await rename("DE-BY", "Freistaat Bayern");
  await heading.filter({ hasText: "Freistaat Bayern" }).waitFor();
  assert.equal(await breadcrumb.locator('[aria-current="page"]').textContent(), "Freistaat Bayern");
  await rename("DE-BE", "Berlin (live)");
  await page.goto(`${EDGE_URL}/#DE`);
  await children.getByRole("link", { name: "Freistaat Bayern" }).waitFor();
  await children.getByRole("link", { name: "Berlin (live)" }).waitFor();
  await rename("DE-BE", "Berlin (renamed again)");
  await children.getByRole("link", { name: "Berlin (renamed again)" }).waitFor();
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was reloaded");

  step("the live stream reconnects after the origin restarts");
  await page.evaluate(() => {
    const status = document.getElementById("live");
    window.liveStates = [];
    new MutationObserver(() => window.liveStates.push(status.dataset.state)).observe(status, {
      attributes: true,
    });
  });
  dropping = true;
  console.log("drop the origin");
  await lines.next();
  // Made as soon as the origin is back, before or after the page reconnects: it must show
  // either way (an event, or the page read again on reconnecting).
  await rename("DE-BY", "Bayern");
  await page.waitForFunction(() => window.liveStates.includes("reconnecting"));
  await page.waitForFunction(() => window.liveStates.at(-1) === "live", null, { timeout: 20_000 });
  dropping = false;
  await children.getByRole("link", { name: "Bayern", exact: true }).waitFor();
  const names = await children.getByRole("link").allTextContents();
  assert.deepEqual(names, [...names].sort(), "renamed children keep the list in name order");

  step("another analyst opening the same page is served by the edge's cache");
  const other = await browser.newContext();
  const second = await other.newPage();
  await second.goto(`${EDGE_URL}/#DE`);
  await second.getByRole("heading", { level: 2 }).filter({ hasText: "Germany" }).waitFor();
  assert.equal(await second.locator("#entity-source").textContent(), "edge hit");
  await other.close();

  step("a screenshot");
  await page.goto(`${EDGE_URL}/#FR`);
  await heading.filter({ hasText: "France" }).waitFor();
  await search.fill("");
  await search.pressSequentially("new", { delay: 40 });
  await results.getByRole("link").first().waitFor();
  await page.screenshot({ path: SCREENSHOT });

  assert.deepEqual(errors, [], "the page logged errors");
  console.log(`ok (${expectedWhileDropped.length} failed WebSocket handshakes while the origin was down)`);
} finally {
  input.close();
  await browser.close();
}
