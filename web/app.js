// @ts-check
// sealdesk's browser viewer: the shell around the WebAssembly core (crates/sealdesk-web).
//
// This file owns what a page must own — the WebSocket to the signaling server, the
// RTCPeerConnection, the clock, the randomness, IndexedDB and the screen — and decides
// nothing about trust: every handshake message, every fingerprint check and every byte of
// the control channel goes through the core, which says what to do next. Nothing is shown
// and no input is sent before the core says "verified" (both DTLS certificates checked
// against the handshake, after the SDP checks it made before the answer was applied).

/** @typedef {{type: string, [k: string]: any}} Msg */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const meta = (/** @type {string} */ name) =>
  document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';

const params = new URLSearchParams(location.search);
/** Test-only knob: a shorter answer timeout, so a test that drops answers ends quickly. */
const timeoutSecs = Number(params.get('timeout') ?? '') || undefined;
/** Test-only knob: offer only these codecs (emulates a browser without VP9). */
const onlyCodecs = params.get('codecs')?.split(',').map((c) => c.trim().toLowerCase());

// ---------------------------------------------------------------------------------------
// The core: JSON in, JSON out, through two buffers in the module's memory (ffi.rs).

class Core {
  /** @param {WebAssembly.Instance} instance */
  constructor(instance) {
    this.x = /** @type {any} */ (instance.exports);
    this.shell = this.x.sd_shell_new();
    this.enc = new TextEncoder();
    this.dec = new TextDecoder();
  }

  /** @param {string} text */
  put(text) {
    const bytes = this.enc.encode(text);
    const ptr = this.x.sd_input_buffer(this.shell, bytes.length);
    new Uint8Array(this.x.memory.buffer, ptr, bytes.length).set(bytes);
    bytes.fill(0);
  }

  /** @param {number} n */
  output(n) {
    const ptr = this.x.sd_output(this.shell);
    return this.dec.decode(new Uint8Array(this.x.memory.buffer, ptr, n).slice());
  }

  /** @param {object} config */
  create(config) {
    this.put(JSON.stringify(config));
    const n = this.x.sd_create(this.shell, performance.now());
    if (n) throw new Error(this.output(n));
  }

  /** @param {Msg} input @returns {Msg[]} */
  input(input) {
    this.put(JSON.stringify(input));
    const n = this.x.sd_input(this.shell, performance.now());
    if (n) throw new Error(this.output(n));
    return this.drain();
  }

  /** @returns {Msg[]} */
  drain() {
    const out = [];
    for (;;) {
      const n = this.x.sd_poll(this.shell);
      if (!n) return out;
      out.push(JSON.parse(this.output(n)));
    }
  }
}

// ---------------------------------------------------------------------------------------
// What this browser keeps: its identity seed, its DTLS certificate, its name and its pins.

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open('sealdesk', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('kv');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {IDBDatabase} db @param {string} key @returns {Promise<any>} */
function dbGet(db, key) {
  return new Promise((resolve, reject) => {
    const req = db.transaction('kv').objectStore('kv').get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {IDBDatabase} db @param {string} key @param {any} value @returns {Promise<void>} */
function dbPut(db, key, value) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction('kv', 'readwrite');
    tx.objectStore('kv').put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

/** @param {Uint8Array} bytes */
function toB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** @param {string} text */
function fromB64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function randomB64() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const b = toB64(bytes);
  bytes.fill(0);
  return b;
}

/** The persistent DTLS certificate (its fingerprint is in every handshake this browser makes). */
async function certificate(/** @type {IDBDatabase} */ db) {
  /** @type {RTCCertificate | undefined} */
  let cert = await dbGet(db, 'certificate');
  const day = 24 * 3600 * 1000;
  if (!cert || cert.expires - Date.now() < day) {
    cert = await RTCPeerConnection.generateCertificate(
      /** @type {any} */ ({ name: 'ECDSA', namedCurve: 'P-256', expires: 365 * day }));
    await dbPut(db, 'certificate', cert);
  }
  const fp = cert.getFingerprints().find((f) => f.algorithm === 'sha-256');
  if (!fp?.value) throw new Error('this browser gives its certificate no SHA-256 fingerprint');
  return { cert, fingerprint: fp.value.toUpperCase() };
}

// ---------------------------------------------------------------------------------------
// The page.

class Viewer {
  /**
   * @param {Core} core @param {IDBDatabase} db @param {RTCCertificate} cert
   * @param {string} server @param {string} servedBy
   */
  constructor(core, db, cert, server, servedBy) {
    this.core = core;
    this.db = db;
    this.cert = cert;
    this.server = server;
    this.servedBy = servedBy;
    /** @type {WebSocket | null} */ this.ws = null;
    /** @type {RTCPeerConnection | null} */ this.pc = null;
    /** @type {RTCDataChannel | null} */ this.dc = null;
    /** @type {MediaStream | null} */ this.stream = null;
    this.verified = false;
    this.dtlsChecked = false;
    this.retry = 500;
    /** @type {{frames: number, bytes: number, at: number} | null} */ this.last = null;
    /** @type {{routing: number, key: string, label: string}[]} */ this.pins = [];
    /** @type {any[]} */ this.monitors = [];
    this.lastClipboard = '';
    this.cursorUrl = '';
    /** @type {{w: number, h: number, hx: number, hy: number, canvas: HTMLCanvasElement} | null} */
    this.cursor = null;
    this.pointerInside = false;
    this.safetyHost = '';
  }

  /** Feeds the core and does what it says. @param {Msg} input */
  feed(input) {
    let out;
    try {
      out = this.core.input(input);
    } catch (e) {
      console.error('sealdesk core refused an input', e);
      return;
    }
    for (const o of out) this.act(o);
  }

  /** @param {Msg} o */
  act(o) {
    // A timeline of the connection's steps (for people debugging, and the tests' figures).
    if (!['send', 'control', 'stats', 'cursor', 'cursor_shape'].includes(o.type)) {
      performance.mark(`sealdesk:${o.type}`);
    }
    switch (o.type) {
      case 'send': this.ws?.readyState === WebSocket.OPEN && this.ws.send(o.text); break;
      case 'reconnect': this.warn(o.text); this.ws?.close(4000, 'protocol violation'); break;
      case 'identity': $('fingerprint').textContent = o.fingerprint; break;
      case 'registered':
        $('server-state').textContent = `connected to the server as ${o.routing}`;
        document.body.dataset.registered = 'yes';
        if (document.body.dataset.state === 'loading') this.setState('idle');
        break;
      case 'progress': this.status(o.text); break;
      case 'host_proved':
        $('host-label').textContent = JSON.stringify(o.label);
        $('host-fingerprint').textContent = o.fingerprint;
        $('safety-number').textContent = o.safety_number;
        $('safety-host').textContent = o.label;
        $('host-proved').hidden = false;
        $('show-safety').hidden = false;
        break;
      case 'create_offer': this.createOffer(o.ice_servers, o.relay_only); break;
      case 'answer':
        this.pc?.setRemoteDescription({ type: 'answer', sdp: o.sdp })
          .catch((e) => this.feed({ type: 'rtc_failed', message: String(e) }));
        break;
      case 'verified': this.verifiedSession(o); break;
      case 'control': this.sendControl(o.data); break;
      case 'clipboard': this.toLocalClipboard(o.text); break;
      case 'monitors': this.monitors = o.monitors; $('monitor').hidden = o.monitors.length < 2; break;
      case 'permissions': this.permissions(o); break;
      case 'input_refused': $('view-only').hidden = false; break;
      case 'cursor': this.remoteCursor(o.x, o.y); break;
      case 'cursor_shape': this.cursorShape(o); break;
      case 'recording':
        $('recording').hidden = !o.active;
        $('recording').textContent = `● The host is recording this session (for ${o.owner}).`;
        break;
      case 'stats': this.stats(o); break;
      case 'warning': this.warn(o.text); break;
      case 'error': this.failed(o); break;
      case 'ended': this.ended(o.text); break;
      case 'paired': this.paired(o); break;
      default: console.warn('unknown output from the core', o);
    }
  }

  /** @param {string} s */
  setState(s) {
    document.body.dataset.state = s;
    const live = s === 'live';
    $('connect-screen').hidden = s === 'live' || s === 'connecting';
    $('session-screen').hidden = !live;
    for (const id of ['fullscreen', 'end', 'send-clipboard']) $(id).hidden = !live;
    $('stats').hidden = !live;
    if (s === 'connecting') $('end').hidden = false;
  }

  /** @param {string} text */
  status(text) { $('status').textContent = text; }

  /** @param {string} text */
  warn(text) {
    const w = document.createElement('div');
    w.className = 'muted warning';
    w.textContent = `⚠ ${text}`;
    $('status').after(w);
  }

  // ---- signaling --------------------------------------------------------------------

  connectServer() {
    $('server-state').textContent = 'connecting to the server…';
    const ws = new WebSocket(this.server);
    this.ws = ws;
    ws.onopen = () => { this.retry = 500; this.feed({ type: 'server_open' }); };
    ws.onmessage = (ev) => { if (typeof ev.data === 'string') this.feed({ type: 'server', text: ev.data }); };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      delete document.body.dataset.registered;
      $('server-state').textContent = `server connection lost (${ev.code}); retrying…`;
      this.feed({ type: 'server_closed', code: ev.code, reason: ev.reason });
      setTimeout(() => this.connectServer(), this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    };
  }

  // ---- WebRTC -------------------------------------------------------------------------

  /** @param {RTCIceServer[]} iceServers @param {boolean} relayOnly */
  async createOffer(iceServers, relayOnly) {
    try {
      this.closePc();
      const pc = new RTCPeerConnection({
        certificates: [this.cert],
        iceServers,
        iceTransportPolicy: relayOnly ? 'relay' : 'all',
        bundlePolicy: 'max-bundle',
      });
      this.pc = pc;
      const video = pc.addTransceiver('video', { direction: 'recvonly' });
      // A remote desktop wants each picture as soon as it is decoded, not smoothed playback.
      if ('jitterBufferTarget' in video.receiver) {
        /** @type {any} */ (video.receiver).jitterBufferTarget = 0;
      }
      if (onlyCodecs) {
        const caps = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
        video.setCodecPreferences(caps.filter((c) =>
          onlyCodecs.includes(c.mimeType.split('/')[1].toLowerCase())));
      }
      const dc = pc.createDataChannel('control', { ordered: true });
      dc.binaryType = 'arraybuffer';
      this.dc = dc;
      dc.onmessage = (ev) => {
        if (ev.data instanceof ArrayBuffer) this.feed({ type: 'control', data: toB64(new Uint8Array(ev.data)) });
      };
      dc.onopen = () => this.checkDtls();
      pc.ontrack = (ev) => { this.stream = ev.streams[0] ?? new MediaStream([ev.track]); };
      pc.onconnectionstatechange = () => {
        const s = pc.connectionState;
        if (s === 'connected') this.checkDtls();
        if (s === 'failed' && pc === this.pc) {
          if (this.verified) this.feed({ type: 'end' });
          this.feed({ type: 'rtc_failed', message: 'the connection failed (no path to the host)' });
        }
      };
      const gathering = gathered(pc, iceServers.length > 0, relayOnly, 5000);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await gathering;
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error('no local description');
      this.feed({ type: 'offer', sdp });
    } catch (e) {
      this.feed({ type: 'rtc_failed', message: String(e) });
    }
  }

  /** Once connected (and the channel open): the certificates getStats() reports go to the core. */
  async checkDtls() {
    const pc = this.pc;
    if (!pc || this.dtlsChecked || pc.connectionState !== 'connected' || this.dc?.readyState !== 'open') return;
    this.dtlsChecked = true;
    const stats = await pc.getStats();
    /** @type {any} */ let transport = null;
    stats.forEach((r) => { if (r.type === 'transport' && r.dtlsState === 'connected') transport = r; });
    const cert = (/** @type {string | undefined} */ id) => (id ? stats.get(id) : undefined);
    const local = cert(transport?.localCertificateId);
    const remote = cert(transport?.remoteCertificateId);
    this.feed({
      type: 'dtls',
      local: local?.fingerprint ?? '',
      remote: remote?.fingerprint ?? '',
      algorithm: remote?.fingerprintAlgorithm ?? '',
    });
  }

  /** @param {Msg} o */
  verifiedSession(o) {
    this.verified = true;
    const video = /** @type {HTMLVideoElement} */ ($('screen'));
    video.srcObject = this.stream;
    video.play().catch(() => {});
    this.setState('live');
    this.permissions(o);
    this.status('connected; waiting for the first picture…');
    video.requestVideoFrameCallback(() => {
      const mark = performance.mark('sealdesk-first-frame');
      const dialed = performance.getEntriesByName('sealdesk-dial').pop();
      const ms = dialed ? Math.round(mark.startTime - dialed.startTime) : 0;
      this.status(`connected; first picture ${ms} ms after Connect`);
    });
    video.focus();
    this.syncClipboard();
  }

  /** @param {string} data */
  sendControl(data) {
    if (this.dc?.readyState === 'open') this.dc.send(fromB64(data));
  }

  closePc() {
    this.dtlsChecked = false;
    this.verified = false;
    this.dc?.close();
    this.pc?.close();
    this.dc = null;
    this.pc = null;
    this.stream = null;
    this.last = null;
    const video = /** @type {HTMLVideoElement} */ ($('screen'));
    video.srcObject = null;
  }

  async tick() {
    /** @type {Msg} */
    const t = { type: 'tick', fps: 0, kbps: 0 };
    const pc = this.pc;
    if (pc && this.verified) {
      const stats = await pc.getStats();
      const now = performance.now();
      /** @type {any} */ let inbound = null;
      /** @type {any} */ let pair = null;
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = r;
        if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
      });
      if (inbound) {
        const cur = { frames: inbound.framesDecoded ?? 0, bytes: inbound.bytesReceived ?? 0, at: now };
        if (this.last && now > this.last.at) {
          const dt = (now - this.last.at) / 1000;
          t.fps = (cur.frames - this.last.frames) / dt;
          t.kbps = ((cur.bytes - this.last.bytes) * 8) / 1000 / dt;
        }
        this.last = cur;
      }
      if (pair) {
        const local = stats.get(pair.localCandidateId);
        const remote = stats.get(pair.remoteCandidateId);
        t.relayed = local?.candidateType === 'relay' || remote?.candidateType === 'relay';
      }
    }
    this.feed(t);
  }

  /** @param {Msg} o */
  stats(o) {
    const parts = [`${o.fps.toFixed(0)} fps`, `${o.kbps.toFixed(0)} kbps`];
    if (o.rtt_ms != null) parts.push(`rtt ${o.rtt_ms.toFixed(0)} ms`);
    if (o.path) parts.push(o.path);
    $('stats').textContent = parts.join(' · ');
  }

  // ---- outcomes ---------------------------------------------------------------------

  /** @param {Msg} o */
  failed(o) {
    this.closePc();
    this.setState('error');
    // The core's words already say how many attempts are left (o.attempts_left).
    $('error').textContent = o.text;
    $('error').hidden = false;
    document.body.dataset.error = o.kind;
    this.status('');
  }

  /** @param {string} text */
  ended(text) {
    this.closePc();
    this.setState('idle');
    this.status(`Session ended: ${text}`);
    $('host-proved').hidden = true;
  }

  /** @param {Msg} o */
  async paired(o) {
    this.pins = this.pins.filter((p) => p.routing !== o.pin.routing).concat([o.pin]);
    await dbPut(this.db, 'pins', this.pins);
    this.renderPins();
    this.setState('idle');
    this.status(`Paired with ${JSON.stringify(o.pin.label)}; it allows: ${o.allowed}. Compare the safety number with the host's.`);
  }

  /** @param {Msg} o */
  permissions(o) {
    const input = (o.permissions & 2) !== 0;
    $('view-only').hidden = input;
    $('send-clipboard').hidden = (o.permissions & 4) === 0 || !this.verified;
  }

  renderPins() {
    const list = $('paired-list');
    list.replaceChildren();
    for (const p of this.pins) {
      const li = document.createElement('li');
      const go = document.createElement('button');
      go.type = 'button';
      go.textContent = `Connect to ${p.label} (${String(p.routing).replace(/(\d{3})(?=\d)/g, '$1 ')})`;
      go.onclick = () => this.dial({ type: 'dial_paired', routing: p.routing, relay_only: relayOnly() });
      const forget = document.createElement('button');
      forget.type = 'button';
      forget.textContent = 'Forget';
      forget.onclick = async () => {
        this.pins = this.pins.filter((q) => q !== p);
        await dbPut(this.db, 'pins', this.pins);
        this.renderPins();
      };
      li.append(go, forget);
      list.append(li);
    }
    $('paired').hidden = this.pins.length === 0;
  }

  /** @param {Msg} input */
  dial(input) {
    performance.mark('sealdesk-dial');
    $('error').hidden = true;
    delete document.body.dataset.error;
    $('host-proved').hidden = true;
    for (const w of document.querySelectorAll('.warning')) w.remove();
    this.setState(input.type === 'pair' ? 'pairing' : 'connecting');
    this.feed(input);
  }

  // ---- clipboard ----------------------------------------------------------------------

  /** @param {string} text */
  async toLocalClipboard(text) {
    this.lastClipboard = text;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      this.warn('the host copied text, but this browser does not let the page write the clipboard');
    }
  }

  /** This computer's clipboard to the host, if it changed (and the browser allows reading it). */
  async syncClipboard() {
    if (!this.verified) return;
    try {
      const text = await navigator.clipboard.readText();
      if (text && text !== this.lastClipboard) {
        this.lastClipboard = text;
        this.feed({ type: 'clipboard', text });
      }
    } catch {
      // Reading needs permission; the Send clipboard button and pasting still work.
    }
  }

  // ---- the host's pointer ---------------------------------------------------------------

  /** @param {Msg} o */
  cursorShape(o) {
    const canvas = document.createElement('canvas');
    canvas.width = o.width;
    canvas.height = o.height;
    const ctx = canvas.getContext('2d');
    if (!ctx || o.width === 0 || o.height === 0) return;
    const rgba = fromB64(o.rgba);
    if (rgba.length !== o.width * o.height * 4) return;
    ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), o.width, o.height), 0, 0);
    this.cursor = { w: o.width, h: o.height, hx: o.hot_x, hy: o.hot_y, canvas };
    $('screen').style.cursor = `url(${canvas.toDataURL()}) ${o.hot_x} ${o.hot_y}, default`;
    const overlay = /** @type {HTMLCanvasElement} */ ($('remote-cursor'));
    overlay.width = o.width;
    overlay.height = o.height;
    overlay.getContext('2d')?.drawImage(canvas, 0, 0);
  }

  /** Someone at the host moved its pointer: draw it there (while ours is elsewhere). */
  remoteCursor(/** @type {number} */ x, /** @type {number} */ y) {
    const overlay = $('remote-cursor');
    const box = contentBox();
    if (!box || !this.cursor || this.pointerInside) { overlay.hidden = true; return; }
    overlay.hidden = false;
    overlay.style.left = `${box.left + x * box.scale - this.cursor.hx}px`;
    overlay.style.top = `${box.top + y * box.scale - this.cursor.hy}px`;
  }
}

/**
 * Resolves when the offer has the candidates that matter — this machine's own addresses
 * (unless relay only) and, when there is a relay, a relayed one — or gathering is complete,
 * or `ms` passed. The SDP carries them (no trickling); waiting for every interface to try
 * every server took seconds on machines with addresses that cannot reach the relay.
 * @param {RTCPeerConnection} pc @param {boolean} relay @param {boolean} relayOnly @param {number} ms
 */
function gathered(pc, relay, relayOnly, ms) {
  return new Promise((resolve) => {
    let host = false, relayed = false;
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icecandidate', seen);
      resolve(undefined);
    };
    /** @param {RTCPeerConnectionIceEvent} e */
    const seen = (e) => {
      if (!e.candidate) return done(); // gathering complete
      if (e.candidate.type === 'host') host = true;
      if (e.candidate.type === 'relay') relayed = true;
      if ((relayOnly || host) && (!relay || relayed)) setTimeout(done, 50);
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icecandidate', seen);
    if (pc.iceGatheringState === 'complete') done();
  });
}

/** Where the picture is inside the video element (object-fit: contain), and its scale. */
function contentBox() {
  const video = /** @type {HTMLVideoElement} */ ($('screen'));
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh) return null;
  const r = video.getBoundingClientRect();
  const scale = Math.min(r.width / vw, r.height / vh);
  return {
    left: (r.width - vw * scale) / 2,
    top: (r.height - vh * scale) / 2,
    scale, vw, vh, rect: r,
  };
}

function relayOnly() {
  return /** @type {HTMLInputElement} */ ($('relay-only')).checked;
}

// ---------------------------------------------------------------------------------------
// Input: only while live (the core drops anything earlier anyway).

/** @param {Viewer} v */
function wireInput(v) {
  const video = /** @type {HTMLVideoElement} */ ($('screen'));
  const live = () => v.verified && document.body.dataset.state === 'live';

  video.addEventListener('pointermove', (e) => {
    const box = contentBox();
    if (!live() || !box) return;
    const x = (e.clientX - box.rect.left - box.left) / box.scale;
    const y = (e.clientY - box.rect.top - box.top) / box.scale;
    if (x < 0 || y < 0 || x >= box.vw || y >= box.vh) return;
    v.feed({ type: 'pointer', x, y });
  });
  video.addEventListener('pointerenter', () => { v.pointerInside = true; $('remote-cursor').hidden = true; });
  video.addEventListener('pointerleave', () => { v.pointerInside = false; });
  video.addEventListener('pointerdown', (e) => {
    if (!live()) return;
    video.focus();
    video.setPointerCapture(e.pointerId);
    v.feed({ type: 'button', button: e.button, down: true });
    e.preventDefault();
  });
  video.addEventListener('pointerup', (e) => {
    if (!live()) return;
    v.feed({ type: 'button', button: e.button, down: false });
    e.preventDefault();
  });
  video.addEventListener('contextmenu', (e) => e.preventDefault());
  video.addEventListener('wheel', (e) => {
    if (!live()) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 800 : 1;
    v.feed({ type: 'wheel', dx: e.deltaX * unit, dy: e.deltaY * unit });
  }, { passive: false });

  const key = (/** @type {KeyboardEvent} */ e, /** @type {boolean} */ down) => {
    if (!live() || document.activeElement !== video || e.isComposing) return;
    e.preventDefault();
    v.feed({ type: 'key', code: e.code, key: e.key, down });
  };
  document.addEventListener('keydown', (e) => key(e, true));
  document.addEventListener('keyup', (e) => key(e, false));
  // Nothing stays held on the host when this page stops seeing the keyboard.
  const releaseAll = () => { if (live()) v.feed({ type: 'release_all' }); };
  window.addEventListener('blur', releaseAll);
  video.addEventListener('blur', releaseAll);
  document.addEventListener('visibilitychange', () => { if (document.hidden) releaseAll(); });
  window.addEventListener('pagehide', () => { releaseAll(); v.feed({ type: 'end' }); });
  window.addEventListener('focus', () => v.syncClipboard());
  document.addEventListener('paste', (e) => {
    const text = e.clipboardData?.getData('text/plain');
    if (live() && text) { v.lastClipboard = text; v.feed({ type: 'clipboard', text }); }
  });
}

// ---------------------------------------------------------------------------------------

async function main() {
  // Served by the signaling server itself: its WebSocket is on this origin.
  const server = meta('sealdesk-server')
    || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const servedBy = meta('sealdesk-served-by') === 'server' ? 'server' : 'local';
  $('served-by-server').hidden = servedBy !== 'server';
  const wasmUrl = new URL('sealdesk_web.wasm', location.href);
  const response = await fetch(wasmUrl, { integrity: meta('sealdesk-wasm-integrity') });
  const { instance } = await WebAssembly.instantiateStreaming(response, {});
  const core = new Core(instance);

  const db = await openDb();
  /** @type {Uint8Array | undefined} */
  let seed = await dbGet(db, 'identity');
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    seed = crypto.getRandomValues(new Uint8Array(32));
    await dbPut(db, 'identity', seed);
  }
  const { cert, fingerprint } = await certificate(db);
  let label = (await dbGet(db, 'label')) ?? `browser (${navigator.platform || 'unknown'})`;
  const pins = (await dbGet(db, 'pins')) ?? [];
  const labelInput = /** @type {HTMLInputElement} */ ($('label'));
  labelInput.value = label;

  core.create({
    identity_seed: toB64(seed),
    random_seed: randomB64(),
    label,
    fingerprint,
    origin: new URL(server).host,
    served_by: servedBy,
    pins,
    ...(timeoutSecs ? { timeout_secs: timeoutSecs } : {}),
  });
  seed.fill(0);
  const v = new Viewer(core, db, cert, server, servedBy);
  v.pins = pins;
  v.renderPins();
  for (const o of core.drain()) v.act(o);
  wireInput(v);

  labelInput.addEventListener('change', async () => {
    label = labelInput.value.trim() || label;
    await dbPut(db, 'label', label);
    v.status('The new name is used from the next page load.');
  });
  const codeInput = /** @type {HTMLInputElement} */ ($('code'));
  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    v.dial({ type: 'dial', code: codeInput.value, relay_only: relayOnly() });
  });
  $('pair').addEventListener('click', () => v.dial({ type: 'pair', code: codeInput.value }));
  $('end').addEventListener('click', () => v.feed({ type: 'end' }));
  $('fullscreen').addEventListener('click', async () => {
    if (document.fullscreenElement) return document.exitFullscreen();
    await $('stage').requestFullscreen();
    // Keys like Escape and Alt+Tab go to the host while full screen, where the browser allows.
    await /** @type {any} */ (navigator).keyboard?.lock?.().catch(() => {});
    $('screen').focus();
  });
  $('show-safety').addEventListener('click', () => /** @type {HTMLDialogElement} */ ($('safety-dialog')).showModal());
  $('send-clipboard').addEventListener('click', async () => {
    try {
      const text = await navigator.clipboard.readText();
      v.lastClipboard = text;
      v.feed({ type: 'clipboard', text });
      v.status('clipboard sent');
    } catch (e) {
      v.warn(`this browser does not let the page read the clipboard (${e}); paste into the session instead`);
    }
    $('screen').focus();
  });
  $('monitor').addEventListener('click', () => {
    const list = $('monitor-list');
    list.replaceChildren();
    v.monitors.forEach((m, i) => {
      const b = document.createElement('button');
      b.value = String(i);
      b.textContent = `${i + 1}: ${m.width}×${m.height}${m.primary ? ' (primary)' : ''}`;
      b.onclick = () => v.feed({ type: 'select_monitor', index: i });
      const li = document.createElement('li');
      li.append(b);
      list.append(li);
    });
    /** @type {HTMLDialogElement} */ ($('monitors')).showModal();
  });
  setInterval(() => { v.tick(); }, 250);
  v.connectServer();
}

main().catch((e) => {
  document.body.dataset.state = 'error';
  $('error').textContent = `The viewer could not start: ${e}`;
  $('error').hidden = false;
});
