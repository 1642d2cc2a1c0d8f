// Runs a tracker file in Node 20 against a fake browser and prints what it sent, as JSON.
//
//   node tracker_harness.js path/to/hitstream.js
//
// Each scenario gets a fresh fake window (document, location, history, navigator, storage,
// timers), plays what a visitor does, and records every sendBeacon/fetch call with its body.
// The Python test (test_tracker_size.py) asserts on the result; nothing here judges it.
'use strict';
const fs = require('fs');
const vm = require('vm');

const code = fs.readFileSync(process.argv[2], 'utf8');

function fakeBrowser(options) {
  const listeners = { window: {}, document: {} };
  const timers = [];
  const clock = { now: 1_790_000_000_000 };
  const sent = [];
  const calls = [];
  const attributes = Object.assign({ 'data-site': null }, options.attributes || {});
  const url = new URL(options.url || 'https://shop.example/');
  const location = {
    get href() { return url.href; },
    get hostname() { return url.hostname; },
    get host() { return url.host; },
    get pathname() { return url.pathname; },
    get hash() { return url.hash; },
  };
  const on = (where) => (type, fn) => { (listeners[where][type] = listeners[where][type] || []).push(fn); };
  const document = {
    currentScript: {
      src: 'https://stats.example/js/hitstream.js',
      getAttribute: (name) => (name in attributes ? attributes[name] : null),
      hasAttribute: (name) => name in attributes,
    },
    readyState: 'loading',
    referrer: options.referrer || 'https://www.google.com/',
    title: 'Shop',
    prerendering: false,
    hidden: !!options.hidden,
    documentElement: { scrollHeight: 4000 },
    addEventListener: on('document'),
  };
  const storage = Object.assign({}, options.storage || {});
  const window = {
    document,
    location,
    screen: { width: 1280 },
    scrollY: 0,
    innerHeight: 1000,
    navigator: {
      doNotTrack: options.doNotTrack || null,
      sendBeacon: options.noBeacon ? undefined : (endpoint, blob) => {
        calls.push({ via: 'beacon', endpoint, blob });
        return !options.beaconRefuses;
      },
    },
    localStorage: { getItem: (key) => (key in storage ? storage[key] : null) },
    history: {
      pushState: (state, title, path) => { url.href = new URL(path, url.href).href; },
      replaceState: (state, title, path) => { url.href = new URL(path, url.href).href; },
    },
    performance: { getEntriesByType: () => [{ loadEventEnd: 420.4 }] },
    addEventListener: on('window'),
    setTimeout: (fn) => { timers.push(fn); },
    fetch: (endpoint, init) => {
      calls.push({ via: 'fetch', endpoint, init });
      return Promise.resolve({ ok: true });
    },
    URL, Blob, JSON, String, Math, RegExp, Object, Array, Promise, isFinite,
    Date: { now: () => clock.now },
  };
  window.window = window;
  window.doNotTrack = null;
  if (options.queued) window.hitstream = { q: options.queued };
  const context = vm.createContext(window);
  // the global names a browser script can use bare
  for (const name of ['document', 'location', 'navigator', 'history', 'localStorage', 'screen', 'performance']) {
    context[name] = window[name];
  }
  const fire = (where, type, event) => (listeners[where][type] || []).forEach((fn) => fn(event || { type }));
  const runTimers = () => { while (timers.length) timers.shift()(); };
  return { window, context, url, fire, runTimers, calls, sent, document, clock };
}

function link(href, extra) {
  const target = new URL(href);
  const anchor = {
    href: target.href, protocol: target.protocol, host: target.host, pathname: target.pathname,
    hasAttribute: (name) => !!(extra && extra[name]),
  };
  return { closest: (selector) => (selector === 'a[href]' ? anchor : null) };
}

// An element inside <button data-hitstream-click="name" id="..."> (no link around it).
function tagged(name, id, text) {
  const button = {
    id, textContent: text,
    getAttribute: (attr) => (attr === 'data-hitstream-click' ? name : null),
  };
  return { closest: (selector) => (selector === '[data-hitstream-click]' ? button : null) };
}

// Read for 42 s, scroll to 60 %, switch tabs (hidden) for 5 minutes, come back, leave.
function engagement(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  b.clock.now += 42_000;
  b.window.scrollY = 1400; // (1400 + 1000) / 4000 = 60 %
  b.fire('window', 'scroll');
  b.window.scrollY = 200; // scrolling back up keeps the deepest
  b.fire('window', 'scroll');
  b.document.hidden = true;
  b.fire('document', 'visibilitychange');
  b.clock.now += 300_000;
  b.document.hidden = false;
  b.fire('document', 'visibilitychange');
  b.clock.now += 10_000;
  b.fire('window', 'pagehide');
}

// A page loaded in a background tab: its visible time starts when it is first shown.
function background(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  b.clock.now += 60_000;
  b.document.hidden = false;
  b.fire('document', 'visibilitychange');
  b.clock.now += 7_000;
  b.fire('window', 'pagehide');
}

function clicks(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  const text = '  Buy\n   now ' + 'x'.repeat(200);
  b.fire('document', 'click', { type: 'click', target: tagged('buy', 'buy-button', text) });
  b.fire('document', 'auxclick', { type: 'auxclick', button: 2, target: tagged('buy', '', '') });
}

// Back from the page cache (bfcache): no load, no script run, a pageshow marked persisted.
function cached(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  b.fire('window', 'pagehide');
  b.document.hidden = true;
  b.fire('document', 'visibilitychange');
  b.clock.now += 60_000; // away
  b.document.hidden = false; // shown again just before its pageshow: no follow-up of 1 ms
  b.fire('document', 'visibilitychange');
  b.clock.now += 1;
  b.fire('window', 'pageshow', { type: 'pageshow', persisted: true });
  b.fire('window', 'pageshow', { type: 'pageshow', persisted: false }); // a plain load: none
  b.clock.now += 3_000;
  b.fire('window', 'pagehide');
}

// Calls a site could get wrong: nothing may throw, nothing junk may be sent.
function badCalls(b) {
  const circular = {};
  circular.self = circular;
  const results = [];
  const tries = [
    () => b.window.hitstream(),
    () => b.window.hitstream(null),
    () => b.window.hitstream(42),
    () => b.window.hitstream({}),
    () => b.window.hitstream(Object.create(null)),
    () => b.window.hitstream(''),
    () => b.window.hitstream('circular', { props: circular }),
    () => b.window.hitstream('bigint', { props: { v: 10n, ok: 1 } }),
    () => b.window.hitstream('text', { props: 'str' }),
    () => b.window.hitstream('list', { props: ['a', 'b'] }),
    () => b.window.hitstream('mixed', {
      props: Object.assign(
        { nested: { a: 1 }, list: [1], nan: NaN, long: 'y'.repeat(600), yes: false, n: 2.5,
          '': 'empty key', 'line\nbreak': 1, huge: 1e300, nul: 'a\u0000b' },
        { ['k'.repeat(65)]: 'key too long' }
      ),
    }),
    () => b.window.hitstream('many', {
      props: Object.fromEntries(Array.from({ length: 40 }, (_, i) => ['p' + i, i])),
    }),
    () => b.window.hitstream('getter', { props: { get boom() { throw new Error('x'); } } }),
  ];
  let called = 0;
  for (const attempt of tries) {
    try { attempt(); results.push('ok'); } catch (e) { results.push(String(e)); }
  }
  b.window.hitstream(undefined, { callback: () => { called += 1; } });
  b.window.hitstream('named', { props: 5, callback: () => { called += 1; } });
  if (results.some((r) => r !== 'ok')) throw new Error('a call threw: ' + results.join(', '));
  if (called !== 2) throw new Error('callbacks run: ' + called);
}

// A single-page app: a short route, then a long one rendered after the URL changed.
function spaScroll(b) {
  b.document.documentElement.scrollHeight = 800; // fits the 1000 px window: 100 %
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  b.window.history.pushState({}, '', '/article');
  b.document.documentElement.scrollHeight = 16000; // the app renders the article now
  b.fire('window', 'pagehide');
}

// A hash router landing on a page without a hash writes "#/": the same page, one view.
function hashRoot(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers();
  b.window.history.replaceState(null, '', '#/');
  b.window.history.pushState(null, '', '#/one');
}

async function scenario(options, play) {
  const b = fakeBrowser(options);
  vm.runInContext(code, b.context);
  await play(b);
  const out = [];
  for (const call of b.calls) {
    const text = call.via === 'beacon' ? await call.blob.text() : call.init.body;
    out.push({
      via: call.via,
      endpoint: call.endpoint,
      contentType: call.via === 'beacon' ? call.blob.type : call.init.headers['Content-Type'],
      keepalive: call.via === 'fetch' ? call.init.keepalive : null,
      method: call.via === 'fetch' ? call.init.method : 'POST',
      event: JSON.parse(text),
    });
  }
  return out;
}

function visit(b) {
  b.document.readyState = 'complete';
  b.fire('window', 'load');
  b.runTimers(); // the first pageview waits for the load event's end
  b.window.history.pushState({}, '', '/pricing');
  b.window.history.replaceState({}, '', '/pricing'); // same page: no pageview
  b.url.hash = '#/faq';
  b.fire('window', 'hashchange');
  b.url.href = 'https://shop.example/back';
  b.fire('window', 'popstate');
  b.fire('document', 'click', { type: 'click', target: link('https://partner.example/x') });
  b.fire('document', 'click', { type: 'click', target: link('https://shop.example/files/manual.pdf') });
  b.fire('document', 'click', { type: 'click', target: link('https://shop.example/about') });
  b.fire('document', 'auxclick', { type: 'auxclick', button: 1, target: link('https://docs.example/') });
  b.fire('document', 'auxclick', { type: 'auxclick', button: 2, target: link('https://right.example/') });
  let called = false;
  b.window.hitstream('signup', { props: { plan: 'pro' }, callback: () => { called = true; } });
  if (!called) throw new Error('callback not called');
}

(async () => {
  const results = {
    visit: await scenario({ queued: [['early', { props: { queued: true } }]] }, visit),
    opt_out: await scenario({ storage: { hitstream_ignore: 'true' } }, visit),
    dnt_respected: await scenario({ doNotTrack: '1', attributes: { 'data-respect-dnt': '' } }, visit),
    dnt_ignored: await scenario({ doNotTrack: '1' }, visit),
    attributes: await scenario(
      { attributes: { 'data-site': 'other.example', 'data-api': 'https://collect.example/e' } },
      (b) => b.window.hitstream('x')
    ),
    beacon_refused: await scenario({ beaconRefuses: true }, (b) => b.window.hitstream('x')),
    no_beacon: await scenario({ noBeacon: true }, (b) => b.window.hitstream('x')),
    engagement: await scenario({}, engagement),
    background: await scenario({ hidden: true }, background),
    clicks: await scenario({}, clicks),
    cached: await scenario({}, cached),
    bad_calls: await scenario({}, badCalls),
    spa_scroll: await scenario({}, spaScroll),
    hash_root: await scenario({}, hashRoot),
  };
  process.stdout.write(JSON.stringify(results));
})().catch((err) => { console.error(err); process.exit(1); });
