// Drives Debian's headless Chromium for crates/sealdesk/tests/browser.rs: one JSON command
// per line on standard input, one JSON answer per line on standard output. The Rust test
// owns the X server, the signaling server and the host, and checks what reaches them; this
// only does what a person at the browser would do, and reports what the page shows.
//
// Never downloads a browser: playwright-core with executablePath /usr/bin/chromium.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.SEALDESK_CHROMIUM ?? '/usr/bin/chromium';
/** @type {import('playwright-core').Browser | null} */
let browser = null;
/** @type {import('playwright-core').BrowserContext | null} */
let context = null;
/** @type {import('playwright-core').Page | null} */
let page = null;
const log = [];

/** A new page at `url`: in a fresh browser profile, or with `keep` in the same one (its
 * IndexedDB: identity, certificate, paired hosts). */
async function open(url, keep) {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Real host candidates (not mDNS names), so ICE works on loopback.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
  const origin = new URL(url).origin;
  if (!keep || !context) {
    await context?.close();
    context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  }
  await page?.close().catch(() => {});
  page = await context.newPage();
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e}`));
  page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => { if (!r.url().startsWith(origin)) log.push(`third-party request: ${r.url()}`); });
  await page.goto(url);
  await page.waitForSelector('body[data-registered=yes]', { timeout: 15000 });
  return { fingerprint: await page.textContent('#fingerprint') };
}

function p() {
  if (!page) throw new Error('no page: open one first');
  return page;
}

/** What the page shows now. */
async function state() {
  return p().evaluate(() => ({
    state: document.body.dataset.state,
    error: document.getElementById('error')?.hidden ? '' : document.getElementById('error')?.textContent,
    error_kind: document.body.dataset.error ?? '',
    status: document.getElementById('status')?.textContent,
    warnings: [...document.querySelectorAll('.warning')].map((w) => w.textContent),
    stats: document.getElementById('stats')?.textContent,
    host_label: document.getElementById('host-label')?.textContent,
    served_by_server_banner: !document.getElementById('served-by-server')?.hidden,
    recording: document.getElementById('recording')?.hidden ? '' : document.getElementById('recording')?.textContent,
  }));
}

/** The video element: is a stream attached, and how many frames has it presented? */
async function video() {
  return p().evaluate(() => {
    const v = /** @type {HTMLVideoElement} */ (document.getElementById('screen'));
    return {
      attached: v.srcObject != null,
      width: v.videoWidth,
      height: v.videoHeight,
      frames: v.getVideoPlaybackQuality().totalVideoFrames,
    };
  });
}

/** The picture the video shows, at its own size, as RGBA (base64). */
async function frame() {
  return p().evaluate(() => {
    const v = /** @type {HTMLVideoElement} */ (document.getElementById('screen'));
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const ctx = c.getContext('2d');
    if (!ctx || !c.width) return { width: 0, height: 0, rgba: '' };
    ctx.drawImage(v, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode(...px.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, rgba: btoa(s) };
  });
}

/** Page coordinates of pixel (x, y) of the host's screen. */
async function at(x, y) {
  return p().evaluate(([x, y]) => {
    const v = /** @type {HTMLVideoElement} */ (document.getElementById('screen'));
    const r = v.getBoundingClientRect();
    const scale = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
    return {
      x: r.left + (r.width - v.videoWidth * scale) / 2 + (x + 0.5) * scale,
      y: r.top + (r.height - v.videoHeight * scale) / 2 + (y + 0.5) * scale,
    };
  }, [x, y]);
}

async function waitFor(want, ms) {
  await p().waitForFunction((want) => want.includes(document.body.dataset.state ?? ''), want, { timeout: ms })
    .catch(() => {});
  return state();
}

const commands = {
  open: (c) => open(c.url, c.keep ?? false),
  connect: async (c) => {
    await p().evaluate(() => performance.mark('test-connect'));
    if (c.relay_only) await p().check('#relay-only');
    await p().fill('#code', c.code);
    await p().click('#connect');
    return {};
  },
  pair: async (c) => {
    await p().fill('#code', c.code);
    await p().click('#pair');
    return {};
  },
  dial_paired: async () => {
    await p().click('#paired-list li button');
    return {};
  },
  wait: (c) => waitFor(c.states, c.ms ?? 30000),
  state,
  video,
  frame,
  // Until the video has presented a new frame: ms from the connect click to it.
  first_frame: async (c) => {
    await p().waitForFunction(() => {
      const v = /** @type {HTMLVideoElement} */ (document.getElementById('screen'));
      return v.srcObject != null && v.getVideoPlaybackQuality().totalVideoFrames > 0;
    }, null, { timeout: c.ms ?? 20000 });
    await p().waitForFunction(() => performance.getEntriesByName('sealdesk-first-frame').length > 0,
      null, { timeout: 5000 }).catch(() => {});
    return p().evaluate(() => {
      const at = (/** @type {string} */ n) => performance.getEntriesByName(n).pop()?.startTime;
      const ff = at('sealdesk-first-frame') ?? performance.now();
      return {
        ms: ff - (at('test-connect') ?? 0),
        // From the page's own Connect handling (what `sealdesk connect` measures from).
        from_dial_ms: ff - (at('sealdesk-dial') ?? 0),
        accepted_ms: (at('sealdesk:create_offer') ?? 0) - (at('sealdesk-dial') ?? 0),
      };
    });
  },
  // The page's timeline: ms since the connect click of each step the core reported.
  timeline: async () => ({
    steps: await p().evaluate(() => {
      const start = performance.getEntriesByName('test-connect').pop()?.startTime ?? 0;
      return performance.getEntriesByType('mark')
        .filter((m) => m.startTime >= start)
        .map((m) => `${m.name} +${(m.startTime - start).toFixed(0)}`);
    }),
  }),
  // Frames the video element has presented (what the user saw), the page's clock, and the
  // page's own stats line (fps · kbps · rtt · path, from getStats()).
  presented: async () => p().evaluate(() => {
    const v = /** @type {HTMLVideoElement} */ (document.getElementById('screen'));
    const q = v.getVideoPlaybackQuality();
    return {
      frames: q.totalVideoFrames,
      dropped: q.droppedVideoFrames,
      at: performance.now(),
      stats: document.getElementById('stats')?.textContent ?? '',
    };
  }),
  screenshot: async (c) => { await p().screenshot({ path: c.path }); return {}; },
  click: async (c) => {
    const pt = await at(c.x, c.y);
    await p().mouse.click(pt.x, pt.y, { button: c.button ?? 'left' });
    return pt;
  },
  move: async (c) => { const pt = await at(c.x, c.y); await p().mouse.move(pt.x, pt.y); return pt; },
  wheel: async (c) => { await p().mouse.wheel(c.dx ?? 0, c.dy ?? 0); return {}; },
  // Keys as a keyboard presses them (`Shift+KeyH`): the viewer sends physical keys.
  press: async (c) => {
    for (const k of c.keys) await p().keyboard.press(k, { delay: 10 });
    return {};
  },
  key_down: async (c) => { await p().keyboard.down(c.key); return {}; },
  key_up: async (c) => { await p().keyboard.up(c.key); return {}; },
  // This computer's clipboard gets text, and the user presses "Send clipboard".
  clipboard_send: async (c) => {
    await p().evaluate((t) => navigator.clipboard.writeText(t), c.text);
    await p().click('#send-clipboard');
    return {};
  },
  // Waits until this computer's clipboard holds `text` (the host copied it).
  clipboard_wait: async (c) => {
    const deadline = Date.now() + (c.ms ?? 10000);
    let got = '';
    while (Date.now() < deadline) {
      got = await p().evaluate(() => navigator.clipboard.readText());
      if (got === c.text) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { text: got };
  },
  // The window loses focus (another application takes it).
  blur: async () => { await p().evaluate(() => window.dispatchEvent(new Event('blur'))); return {}; },
  end: async () => { await p().click('#end'); return {}; },
  close: async () => { await p().close({ runBeforeUnload: true }); page = null; return {}; },
  log: async () => ({ log }),
  quit: async () => { await browser?.close(); browser = null; return {}; },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let answer;
  try {
    const c = JSON.parse(line);
    const f = commands[c.cmd];
    if (!f) throw new Error(`unknown command ${c.cmd}`);
    answer = { ok: true, ...(await f(c)) };
  } catch (e) {
    answer = { ok: false, error: String(e?.stack ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
  if (JSON.parse(line).cmd === 'quit') break;
}
await browser?.close();
process.exit(0); // standard input may still be open: nothing else is needed

