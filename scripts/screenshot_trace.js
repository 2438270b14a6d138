#!/usr/bin/env node
// scripts/screenshot_trace.js TRACE.json OUT.png
//
// Opens a `stagefarm build --trace` file in a real trace viewer, the
// Performance panel of the DevTools that Debian's chromium package bundles
// (its chrome://tracing is patched out), and writes two screenshots: OUT.png,
// the whole build with every track expanded, and OUT-zoom.png, from just
// before two worker tracks first run stages at once to the end. It made
// docs/images/demo-trace*.png; run by hand, no test uses it. Offline:
//
//   apt-get install chromium
//   npm install --prefix /tmp/pw playwright-core
//   NODE_PATH=/tmp/pw/node_modules node scripts/screenshot_trace.js trace.json out.png
//
// DevTools draws the timeline on a canvas, so the tracks are expanded by
// clicking where DevTools 156 (Debian 12's chromium) puts their headers; the
// zoom is a drag on the overview, which spans the trace from 0 to its end.
'use strict';
const fs = require('fs');
const { chromium } = require('playwright-core');

const WIDTH = 1600;
const HEIGHT = 800;
const PROCESS_ROW_Y = 129;              // the collapsed process group's header
const FIRST_TRACK_Y = 146;              // its first track's header, once expanded
const TRACK_SPACING = 21;
const OVERVIEW_Y = 80;

function readTrace(file) {
  const events = JSON.parse(fs.readFileSync(file, 'utf8')).traceEvents;
  const tracks = events.filter(e => e.ph === 'M' && e.name === 'thread_name').length;
  const stages = events.filter(e => e.ph === 'X' && e.cat === 'stage');
  const end = Math.max(...events.filter(e => e.ph === 'X').map(e => e.ts + e.dur));
  // The first moment two tracks both run a stage.
  let together = end;
  for (const a of stages) {
    for (const b of stages) {
      if (a.tid !== b.tid && a.ts < b.ts + b.dur && b.ts < a.ts + a.dur)
        together = Math.min(together, Math.max(a.ts, b.ts));
    }
  }
  return { tracks, end, together };
}

async function main() {
  const [traceFile, out] = process.argv.slice(2);
  if (!traceFile || !out || !out.endsWith('.png')) {
    console.error('usage: screenshot_trace.js TRACE.json OUT.png');
    process.exit(2);
  }
  const trace = readTrace(traceFile);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: WIDTH, height: HEIGHT } });
    await page.goto('devtools://devtools/bundled/devtools_app.html?panel=timeline');
    const [chooser] = await Promise.all([
      page.waitForEvent('filechooser', { timeout: 30000 }),
      page.locator('button[aria-label="Load trace…"]').click({ timeout: 30000 }),
    ]);
    await chooser.setFiles(traceFile);
    await page.waitForTimeout(6000);
    await page.keyboard.press('Escape');  // the flame chart's shortcuts dialog
    await page.mouse.click(15, 39);  // hide the sidebar
    await page.waitForTimeout(800);
    await page.mouse.click(10, PROCESS_ROW_Y);
    await page.waitForTimeout(800);
    // Bottom up, so expanding one does not move the headers still to click.
    for (let i = trace.tracks - 1; i >= 0; --i) {
      await page.mouse.click(19, FIRST_TRACK_Y + TRACK_SPACING * i);
      await page.waitForTimeout(600);
    }
    await page.mouse.move(WIDTH / 2, HEIGHT - 10);
    await page.waitForTimeout(500);
    const clip = { x: 0, y: 0, width: WIDTH, height: 330 };
    await page.screenshot({ path: out, clip });

    const from = Math.max(0, trace.together - 0.02 * trace.end);
    await page.mouse.move((from / trace.end) * WIDTH, OVERVIEW_Y);
    await page.mouse.down();
    await page.mouse.move(WIDTH * 0.9, OVERVIEW_Y, { steps: 5 });
    await page.mouse.move(WIDTH - 2, OVERVIEW_Y, { steps: 5 });
    await page.mouse.up();
    await page.mouse.move(WIDTH / 2, HEIGHT - 10);
    await page.waitForTimeout(1000);
    await page.screenshot({ path: out.replace(/\.png$/, '-zoom.png'), clip });
  } finally {
    await browser.close();
  }
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
