/*
 * hitstream tracker (readable source). Build the served copy with scripts/build-tracker.sh.
 *
 *   <script defer data-site="example.com" src="https://stats.example.com/js/hitstream.js"></script>
 *
 * Counts pageviews (also single-page-app navigations: history.pushState/replaceState,
 * popstate, hash routes like #/about), outbound link clicks, file downloads, custom events
 * (window.hitstream('signup', {props: {plan: 'pro'}})) and the page load time. No cookies,
 * nothing stored in the browser: visitors are counted by the server from a daily-salted hash.
 *
 * Engagement: when the page is first hidden or left (or a single-page-app navigation
 * replaces it), one "engagement" event with the time the page was visible (engaged_ms) and
 * the deepest scroll reached (scroll_depth, percent); each later hide after it was shown
 * again, one named "follow_up" with the time it was visible since (decision 0063).
 * Tagged elements: a click on <button data-hitstream-click="buy"> (or anything inside one)
 * sends a click named "element" with props element_name ("buy"), element_id and element_text
 * (whitespace collapsed, at most 100 characters).
 *
 * Attributes: data-site (default: this hostname), data-api (default: <script origin>/api/v1/events),
 * data-respect-dnt (send nothing when Do Not Track is on).
 * Opt out in one browser: localStorage.hitstream_ignore = "true".
 *
 * Calls made before the script loads are queued by this snippet and sent once it runs
 * (the README gives it too):
 *   <script>window.hitstream = window.hitstream || function () {
 *     (window.hitstream.q = window.hitstream.q || []).push(arguments) }</script>
 */
(function (win, doc) {
  'use strict';
  var script = doc.currentScript;
  if (!script) return;
  var nav = navigator;
  var loc = location;
  var site = script.getAttribute('data-site') || loc.hostname;
  var endpoint =
    script.getAttribute('data-api') || new URL(script.src, loc.href).origin + '/api/v1/events';
  var respectDnt = script.hasAttribute('data-respect-dnt');
  var queued = (win.hitstream && win.hitstream.q) || [];
  var DOWNLOAD =
    /\.(pdf|zip|gz|tgz|bz2|xz|7z|rar|dmg|exe|msi|pkg|deb|rpm|apk|iso|docx?|xlsx?|pptx?|od[tsp]|csv|txt|rtf|epub|mp3|mp4|m4a|mov|avi|mkv|wav|flac)$/i;
  var lastPage; // pathname (+ hash route) of the last pageview: skips repeated replaceState
  var pending; // the first pageview, held until the load event so it can carry load_time_ms
  var current; // the current pageview
  var reported; // whether its first engagement report was sent
  var shown; // when the page last became visible (0: hidden since)
  var depth; // the deepest scroll of the current pageview, percent

  function ignored() {
    try {
      if (localStorage.getItem('hitstream_ignore') === 'true') return true;
    } catch (e) {
      // storage blocked: nothing to honour
    }
    return respectDnt && (nav.doNotTrack === '1' || win.doNotTrack === '1');
  }

  // Everything about the page is read when the event happens, not when it is sent.
  function build(type, name, props) {
    return {
      site_id: site,
      type: type,
      name: name,
      url: loc.href.slice(0, 2048),
      referrer: doc.referrer.slice(0, 2048),
      title: doc.title.slice(0, 500),
      screen_width: screen.width,
      props: props
    };
  }

  // text/plain keeps the request "simple" (no CORS preflight); the collector reads it as JSON.
  function send(event) {
    if (ignored()) return;
    var body = JSON.stringify(event);
    if (!(nav.sendBeacon && nav.sendBeacon(endpoint, new Blob([body], { type: 'text/plain' })))) {
      fetch(endpoint, {
        method: 'POST',
        body: body,
        keepalive: true,
        headers: { 'Content-Type': 'text/plain' }
      }).catch(function () {});
    }
  }

  // Page load time from Navigation Timing: the navigation's start to the end of its load event.
  function flush() {
    if (!pending) return;
    var timing = performance.getEntriesByType && performance.getEntriesByType('navigation')[0];
    var ms = timing && Math.round(timing.loadEventEnd);
    if (ms > 0 && ms <= 600000) pending.load_time_ms = ms;
    send(pending);
    pending = null;
  }

  function scrolled() {
    var seen = Math.round(((win.scrollY + win.innerHeight) * 100) / doc.documentElement.scrollHeight);
    if (seen > depth) depth = Math.min(seen, 100);
  }

  // The current pageview's visible time since it was last shown: the first time it is
  // hidden, left or replaced, with its scroll depth; after that, as a follow-up with time
  // only, when there was visible time since (a page hidden, shown again, hidden again).
  function engage() {
    if (!current) return;
    flush();
    var ms = shown ? Math.min(Date.now() - shown, 216e5) : 0;
    shown = 0;
    if (reported && !ms) return;
    var event = build('engagement', reported ? 'follow_up' : undefined);
    event.url = current.url;
    event.title = current.title;
    event.engaged_ms = ms;
    if (!reported) {
      scrolled(); // what shows now counts: a route measured before it rendered read 100
      event.scroll_depth = depth;
    }
    reported = 1;
    send(event);
  }

  function visibility() {
    if (doc.hidden) engage();
    else shown = shown || Date.now();
  }

  function page() {
    var hash = loc.hash;
    var key = loc.pathname + (/^#!?\/./.test(hash) ? hash : ''); // "#/" is the page itself
    if (key === lastPage) return;
    var first = lastPage === undefined;
    lastPage = key;
    var event = build('pageview');
    engage();
    current = event;
    reported = 0;
    shown = doc.hidden ? 0 : Date.now();
    depth = 0;
    flush();
    if (first) {
      pending = event;
      if (doc.readyState === 'complete') setTimeout(flush, 0);
    } else {
      send(event);
    }
  }

  function click(ev) {
    if (ev.type === 'auxclick' && ev.button !== 1) return;
    var target = ev.target;
    var tagged = target && target.closest && target.closest('[data-hitstream-click]');
    if (tagged) {
      send(
        build('click', 'element', {
          element_name: tagged.getAttribute('data-hitstream-click').slice(0, 120),
          element_id: tagged.id.slice(0, 120),
          element_text: tagged.textContent.replace(/\s+/g, ' ').trim().slice(0, 100)
        })
      );
    }
    var link = target && target.closest && target.closest('a[href]');
    if (!link || !/^https?:$/.test(link.protocol)) return;
    var name =
      link.hasAttribute('download') || DOWNLOAD.test(link.pathname)
        ? 'download'
        : link.host !== loc.host
          ? 'outbound'
          : '';
    if (name) send(build('click', name, { url: link.href.slice(0, 500) }));
  }

  // Props as the collector takes them (at most 30 keys of 1 to 64 characters without control
  // characters; strings of 512 without NUL, numbers within 2^53, booleans): anything else is
  // left out rather than the whole event refused.
  function clean(props) {
    var out = {};
    var n = 0;
    if (typeof props != 'object' || Array.isArray(props)) return;
    for (var key in props) {
      var value = props[key];
      var kind = typeof value;
      if (
        n < 30 && key && key.length <= 64 && !/[\x00-\x1f\x7f]/.test(key) &&
        ((kind == 'string' && !/\0/.test(value)) || kind == 'boolean' ||
          (kind == 'number' && Math.abs(value) <= 9007199254740991))
      ) {
        out[key] = kind == 'string' ? value.slice(0, 512) : value;
        n++;
      }
    }
    return n ? out : undefined;
  }

  // Never throws into the page: a name that is no text sends nothing; the callback runs.
  function track(name, options) {
    options = Object(options);
    try {
      if (typeof name == 'string' && name) {
        send(build('custom', name.slice(0, 120), clean(options.props)));
      }
    } catch (e) {
      // a getter that throws, a proxy: nothing sent
    }
    if (typeof options.callback == 'function') options.callback();
  }

  ['pushState', 'replaceState'].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      var result = original.apply(this, arguments);
      page();
      return result;
    };
  });
  win.addEventListener('popstate', page);
  win.addEventListener('hashchange', page);
  win.addEventListener('load', function () {
    setTimeout(flush, 0); // loadEventEnd is set once the load handlers have returned
  });
  win.addEventListener('pagehide', engage); // leaving: the pageview (maybe before load), then this
  win.addEventListener('pageshow', function (ev) {
    if (ev.persisted) { // back or forward from the page cache: a view like any other
      lastPage = null;
      current = null; // the view left was reported when hidden: nothing more (a visibility
      page(); //         change before this pageshow would send a follow-up of an instant)
    }
  });
  win.addEventListener('scroll', scrolled, { passive: true });
  doc.addEventListener('visibilitychange', visibility);
  doc.addEventListener('click', click, true);
  doc.addEventListener('auxclick', click, true);

  win.hitstream = track;
  if (doc.prerendering) {
    doc.addEventListener('prerenderingchange', page, { once: true });
  } else {
    page();
  }
  for (var i = 0; i < queued.length; i++) track.apply(null, queued[i]);
})(window, document);
