/* hitstream dashboard: one WebSocket (/api/v1/live) feeds every panel.
 *
 * The view (site, period, filters) lives in the URL so it can be shared; changing it sends a
 * {"type": "set"} message and the server answers with a fresh snapshot. Every value that a
 * visitor could have influenced (paths, titles, referrers, props...) is inserted with
 * textContent, never innerHTML; the page's CSP forbids inline scripts besides.
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------- helpers

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  var numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  var compactFormat = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

  function fmtNum(v) { return v >= 10000 ? compactFormat.format(v) : numberFormat.format(v); }
  function fmtPct(v) { return numberFormat.format(v) + '%'; }
  function fmtDec(v) { return (Math.round(v * 100) / 100).toFixed(2); }
  function fmtMs(v) {
    if (!v) return '–';
    // "1.1s" as durations read ("22.9s"), not "1.1 s" beside them
    return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 's' : Math.round(v) + 'ms';
  }
  function fmtDur(seconds) {
    var tenths = Math.round(seconds * 10) / 10; // under a minute, tenths: 12.5 s read "13s"
    if (tenths < 60) return (tenths % 1 ? tenths.toFixed(1) : String(tenths)) + 's';
    var s = Math.round(seconds);
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + (s % 60) + 's';
    return Math.floor(m / 60) + 'h ' + (m % 60) + 'm';
  }
  // an average with nothing measured is 0 in the API: shown as a dash, not "0s"
  function orDash(fmt) { return function (v) { return v ? fmt(v) : '–'; }; }
  var fmtMeasuredDur = orDash(fmtDur);
  var fmtMeasuredPct = orDash(fmtPct);
  // times are the site's (its time zone says where "Today" starts), not the viewer's: the
  // server names it in every snapshot (view.tz); until then, the viewer's own
  var siteTz = '';
  var timeFormat, dateFormat, dayFormat, hourFormat;
  function setTimeZone(tz) {
    var zone;
    try { new Intl.DateTimeFormat(undefined, { timeZone: tz }); zone = tz || undefined; } catch (e) { zone = undefined; }
    siteTz = zone || '';
    timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZone: zone });
    dateFormat = new Intl.DateTimeFormat('en-CA', { year: 'numeric', month: '2-digit', day: '2-digit', timeZone: zone });
    dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: zone });
    hourFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false, timeZone: zone });
    var note = $('tz-note');
    if (note) note.textContent = siteTz ? 'Times in ' + siteTz.replace(/_/g, ' ') : '';
  }
  setTimeZone('');
  function fmtTime(ms) {
    var at = new Date(ms);
    var time = timeFormat.format(at);
    // another day's time says which day (yesterday's 20:30 was listed under today's 08:00)
    if (dateFormat.format(at) === dateFormat.format(new Date())) return time;
    return dayFormat.format(at) + ' ' + time;
  }

  var regionNames = null;
  try { regionNames = new Intl.DisplayNames(undefined, { type: 'region' }); } catch (e) { /* old browser */ }

  function countryLabel(code) {
    if (!/^[A-Z]{2}$/.test(code)) return code;
    try { return (regionNames && regionNames.of(code)) || code; } catch (e) { return code; }
  }

  // ---------------------------------------------------------------- what the dashboard shows

  var CARDS = [
    { key: 'visitors', label: 'Visitors', fmt: fmtNum },
    { key: 'visits', label: 'Visits', fmt: fmtNum },
    { key: 'pageviews', label: 'Pageviews', fmt: fmtNum },
    { key: 'events', label: 'Events', fmt: fmtNum },
    { key: 'bounce_rate', label: 'Bounce rate', fmt: fmtPct, lowerIsBetter: true, perVisit: true },
    { key: 'visit_duration', label: 'Visit duration', fmt: fmtDur, perVisit: true },
    { key: 'views_per_visit', label: 'Views per visit', fmt: fmtDec, perVisit: true },
    { key: 'load_time_p50', label: 'Load time (median)', fmt: fmtMs, lowerIsBetter: true, measured: true },
    { key: 'load_time_p95', label: 'Load time (p95)', fmt: fmtMs, lowerIsBetter: true, measured: true },
    { key: 'time_on_page', label: 'Time on page', fmt: fmtMeasuredDur, measured: true },
    { key: 'scroll_depth', label: 'Scroll depth', fmt: fmtMeasuredPct, measured: true },
    { key: 'avg_duration', label: 'Avg. action duration', fmt: fmtMeasuredDur, measured: true },
    // under a goal filter only (the snapshot then carries them)
    { key: 'conversions', label: 'Conversions', fmt: fmtNum, optional: true },
    { key: 'conversion_rate', label: 'Conversion rate', fmt: fmtPct, optional: true }
  ];

  // realtime tiles: the stats API's /stats/realtime figures, pushed in every frame
  var LIVE = [
    { key: 'visitors', label: 'Current visitors', sub: 'last 5 minutes' },
    { key: 'active_users', label: 'Active users', sub: 'last 5 minutes' },
    { key: 'events_per_minute', label: 'Events / min', sub: 'last 5 minutes' }
  ];

  // charts next to the tables: doughnuts of the device and browser breakdowns, bars of the
  // event types (hand-written SVG: no library)
  var CHARTS = { // [property, kind, title, metric, the one tab it belongs to (none: every tab)]
    devices: [['device', 'doughnut', 'Devices', 'visitors'], ['browser', 'doughnut', 'Browsers', 'visitors']],
    events: [['event_type', 'bars', 'Event types', 'events', 'event_type']]
  };

  var PANELS = [
    { id: 'pages', tabs: [['page', 'Top pages'], ['entry_page', 'Entry pages'], ['exit_page', 'Exit pages']] },
    { id: 'sources', tabs: [['source', 'Sources'], ['channel', 'Channels'], ['referrer', 'Referrers'], ['utm_campaign', 'Campaigns']] },
    { id: 'devices', tabs: [['browser', 'Browsers'], ['os', 'OS'], ['device', 'Devices']] },
    { id: 'countries', tabs: [['country', 'Countries']] },
    { id: 'events', tabs: [['event_type', 'Event types'], ['event_name', 'Custom events'], ['props', 'Event props']] }
  ];

  var LABELS = {
    page: 'Page', entry_page: 'Entry page', exit_page: 'Exit page', source: 'Source',
    channel: 'Channel', referrer: 'Referrer', utm_campaign: 'Campaign', browser: 'Browser',
    os: 'OS', device: 'Device', country: 'Country', event_type: 'Event type', event_name: 'Event',
    goal: 'Goal', utm_source: 'UTM source', utm_medium: 'UTM medium', utm_term: 'UTM term',
    utm_content: 'UTM content', hostname: 'Hostname'
  };

  // breakdown columns whose API name is long or whose number is not a count
  var COLUMN_LABELS = { time_on_page: 'time', scroll_depth: 'scroll', avg_duration: 'duration' };
  var COLUMN_FORMATS = {
    time_on_page: fmtMeasuredDur, scroll_depth: fmtMeasuredPct, avg_duration: fmtMeasuredDur
  };

  // ---------------------------------------------------------------- view state (the URL)

  var PATTERN_OPS = { '=~': true, '!=~': true };
  var OP_LABELS = {
    '==': 'is', '!=': 'is not', '~': 'contains', '!~': 'does not contain',
    '=~': 'matches', '!=~': 'does not match'
  };

  var shareSite = document.body.dataset.share || '';
  var shareToken = new URLSearchParams(location.search).get('auth') || '';
  var session = null;
  var view = readUrl();
  var state = { breakdowns: {}, tabs: {}, events: [], alerts: [], lastData: null };
  var shownView = null; // the view of the last snapshot, as JSON: what a refused change reverts to

  function readUrl() {
    var q = new URLSearchParams(location.search);
    return {
      site: shareSite || q.get('site') || '',
      period: q.get('period') || 'day',
      from: q.get('from') || '',
      to: q.get('to') || '',
      filters: parseFilters(q.get('filters') || ''),
      compare: q.get('compare') || 'previous_period',
      compareFrom: q.get('compare_from') || '',
      compareTo: q.get('compare_to') || ''
    };
  }

  function writeUrl(push) {
    var q = new URLSearchParams();
    if (shareToken) q.set('auth', shareToken);
    if (view.site && !shareSite) q.set('site', view.site);
    q.set('period', view.period);
    if (view.period === 'custom') { q.set('from', view.from); q.set('to', view.to); }
    var f = filterString();
    if (f) q.set('filters', f);
    if (view.compare !== 'previous_period') q.set('compare', view.compare);
    if (view.compare === 'custom') { q.set('compare_from', view.compareFrom); q.set('compare_to', view.compareTo); }
    var url = location.pathname + '?' + q.toString();
    if (url !== location.pathname + location.search) {
      history[push ? 'pushState' : 'replaceState'](null, '', url);
    }
  }

  function parseFilters(raw) {
    var out = [];
    raw.split(';').forEach(function (clause) {
      var m = /^\s*([a-z_]+(?::[^=!~]+)?)\s*(!=~|==|!=|!~|=~|~)(.*)$/.exec(clause);
      if (!m) return;
      // a pattern is one value: its '|' is alternation
      var values = PATTERN_OPS[m[2]] ? [m[3]] : m[3].split('|');
      out.push({ prop: m[1], op: m[2], values: values });
    });
    return out;
  }

  function filterString() {
    return view.filters.map(function (f) { return f.prop + f.op + f.values.join('|'); }).join(';');
  }

  function liveParams() {
    // no tz: the server uses the site's own time zone (its settings)
    var p = { site_id: view.site, period: view.period, filters: filterString() };
    if (view.period === 'custom') { p.from = view.from; p.to = view.to; }
    p.compare = view.compare;
    p.compare_from = view.compare === 'custom' ? view.compareFrom : '';
    p.compare_to = view.compare === 'custom' ? view.compareTo : '';
    return p;
  }

  function exportUrl() {
    // the dashboard's tables for this view as a ZIP of CSVs (GET /api/v1/stats/export)
    var q = new URLSearchParams({ site_id: view.site, period: view.period === 'realtime' ? 'day' : view.period });
    if (view.period === 'custom') { q.set('from', view.from); q.set('to', view.to); }
    var f = filterString();
    if (f) q.set('filters', f);
    if (shareToken) q.set('auth', shareToken);
    return '/api/v1/stats/export?' + q.toString();
  }

  function changeView(mutate) {
    mutate();
    writeUrl(true);
    renderControls();
    sendSet();
  }

  // ---------------------------------------------------------------- connection

  var socket = null;
  var attempts = 0;
  var retryTimer = null;

  function connect() {
    if (!view.site) return;
    clearTimeout(retryTimer);
    if (socket) { socket.onclose = null; socket.close(); }
    setConn('connecting', 'connecting');
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var params = liveParams();
    if (shareToken) params.auth = shareToken;
    var url = scheme + location.host + '/api/v1/live?' + new URLSearchParams(params).toString();
    var ws = new WebSocket(url);
    socket = ws;
    ws.onopen = function () { attempts = 0; setConn('live', 'live'); };
    ws.onmessage = function (msg) {
      var frame;
      try { frame = JSON.parse(msg.data); } catch (e) { return; }
      handle(frame);
    };
    ws.onclose = function (ev) {
      if (socket !== ws) return;
      socket = null;
      if (ev.code === 1008) { setConn('offline', 'invalid view'); return; }
      if (ev.code === 4401 && !shareSite) { location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search); return; }
      if (ev.code === 4401 || ev.code === 4403 || ev.code === 4404) {
        setConn('offline', ev.code === 4404 ? 'no such site' : 'not allowed');
        showNotice(ev.code === 4404 ? 'This site is not registered.' : 'You may not see this site.');
        return;
      }
      var delay = Math.min(15000, 500 * Math.pow(2, attempts)) * (0.75 + Math.random() * 0.5);
      attempts += 1;
      setConn('reconnecting', 'reconnecting in ' + Math.ceil(delay / 1000) + ' s');
      retryTimer = setTimeout(connect, delay);
    };
  }

  function sendSet() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      var msg = liveParams();
      msg.type = 'set';
      socket.send(JSON.stringify(msg));
    } else {
      connect();
    }
  }

  function setConn(kind, label) {
    $('conn').className = 'conn ' + kind;
    $('conn-label').textContent = label;
    document.body.dataset.conn = kind;
  }

  // ---------------------------------------------------------------- frames

  var typedFilter = null;

  function handle(frame) {
    if (frame.type === 'snapshot') {
      hideNotice();
      typedFilter = null;
      if (frame.view && frame.view.tz !== undefined && frame.view.tz !== siteTz) setTimeZone(frame.view.tz);
      shownView = JSON.stringify(view);
      state.events = (frame.events || []).slice(-50).sort(function (a, b) { return eventTime(b) - eventTime(a); });
      state.alerts = (frame.alerts || []).slice().reverse();
      renderData(frame);
      renderStream();
      renderAlerts();
    } else if (frame.type === 'update') {
      renderData(frame);
    } else if (frame.type === 'event') {
      addEvents(frame.events || [], frame.skipped || 0);
    } else if (frame.type === 'alert') {
      state.alerts.unshift(frame);
      state.alerts = state.alerts.slice(0, 20);
      renderAlerts();
    } else if (frame.type === 'error') {
      var refused = shownView !== null && shownView !== JSON.stringify(view);
      if (refused) { // the server kept the view it showed: so do the URL and the controls
        view = JSON.parse(shownView);
        writeUrl(false);
        renderControls();
        if (typedFilter) {  // and the filter typed is there to correct (it was gone)
          $('filter-prop').value = typedFilter.prop;
          $('filter-op').value = typedFilter.op;
          $('filter-value').value = typedFilter.value;
          $('filter-value').focus();
        }
      }
      typedFilter = null;
      showNotice((frame.field ? frame.field + ': ' : '') + (frame.reason || 'error')
        + (refused ? ' (not applied)' : ''));
    }
  }

  function renderData(frame) {
    state.lastData = frame;
    var results = (frame.aggregate && frame.aggregate.results) || {};
    renderCards(results, frame.realtime || {});
    renderChart(frame.timeseries || {}, frame.interval);
    state.breakdowns = frame.breakdowns || {};
    state.prop_keys = frame.prop_keys || [];
    PANELS.forEach(renderPanel);
    renderQuality(frame.quality || {});
    var hasData = Object.keys(results).some(function (k) { return results[k] && results[k].value; })
      || ((frame.realtime || {}).visitors > 0) || state.events.length > 0;
    $('empty').hidden = hasData || view.filters.length > 0;
    // a view whose queries are slow (a filter on a big site) is updated less often
    var every = frame.update_interval_s > 1 ? ' · updates every ' + Math.round(frame.update_interval_s) + ' s' : '';
    $('updated').textContent = 'Updated ' + fmtTime(Date.now()) + ' · data version ' + (frame.data_version || 0) + every;
  }

  // ---------------------------------------------------------------- cards

  var cardNodes = {};

  function buildCards() {
    var root = $('cards');
    cardNodes.realtime = {};
    LIVE.forEach(function (tile) {
      var live = el('article', 'card live-card');
      live.dataset.realtime = tile.key;
      live.appendChild(el('h3', null, tile.label));
      var liveValue = el('div', 'value', '–');
      live.appendChild(liveValue);
      live.appendChild(el('div', 'sub', tile.sub));
      root.appendChild(live);
      cardNodes.realtime[tile.key] = liveValue;
    });
    CARDS.forEach(function (card) {
      var node = el('article', 'card');
      node.appendChild(el('h3', null, card.label));
      var value = el('div', 'value', '–');
      var change = el('div', 'change');
      node.appendChild(value);
      node.appendChild(change);
      node.hidden = !!card.optional;
      root.appendChild(node);
      cardNodes[card.key] = { value: value, change: change, card: node };
    });
  }

  function renderCards(results, realtime) {
    LIVE.forEach(function (tile) {
      cardNodes.realtime[tile.key].textContent = fmtNum(realtime[tile.key] || 0);
    });
    var noVisits = (results.visits || {}).value === 0;
    var noVisitsBefore = (results.visits || {}).previous === 0;
    CARDS.forEach(function (card) {
      var r = results[card.key] || {};
      var nodes = cardNodes[card.key];
      if (card.optional) nodes.card.hidden = r.value === undefined;
      // of no visits there is no rate nor average: a dash (it read "0%", "0s", "0.00")
      var none = r.value === undefined || (card.perVisit && noVisits);
      var shown = none ? '–' : card.fmt(r.value);
      nodes.value.textContent = shown;
      var change = r.change;
      // nothing measured now (a dash): no change to show (it read "–" beside "▼ 100%")
      if (shown === '–') change = null;
      if (change === undefined || change === null) {
        nodes.change.className = 'change flat';
        // nothing now and nothing before: no line under it (each card read "no earlier data");
        // a count up from 0 says so, and a rate or average of no earlier visits says that
        var before = r.previous === undefined || r.previous === null ? 'no earlier data'
          : card.perVisit && noVisitsBefore ? 'no earlier visits'
          : card.measured ? 'none measured before' : 'up from 0';
        nodes.change.textContent = r.previous || !r.value ? '' : before;
        return;
      }
      var up = change > 0;
      var good = card.lowerIsBetter ? !up : up;
      nodes.change.className = 'change ' + (change === 0 ? 'flat' : good ? 'good' : 'bad');
      nodes.change.textContent = (change === 0 ? '±' : up ? '▲ ' : '▼ ') + numberFormat.format(Math.abs(change)) + '% vs previous';
    });
  }

  // ---------------------------------------------------------------- chart

  function tickLabel(ms, interval) {
    var d = new Date(ms);
    if (interval === 'day') return dayFormat.format(d);
    var hm = hourFormat.format(d).replace(/^24:/, '00:');
    return hm === '00:00' && interval === 'hour' ? dayFormat.format(d) : hm;
  }

  var MIN = 60;
  var X_STEPS = {  // tick steps in seconds: whole buckets only
    minute: [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, 60 * MIN],
    hour: [3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600],
    day: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 365 * 86400]
  };

  var chart = null;
  var chartKey = '';

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartSize() {
    var box = $('chart');
    var width = Math.max(240, box.clientWidth);
    return { width: width, height: width < 600 ? 200 : 260 };
  }

  function renderChart(series, interval) {
    if (!window.uPlot) return;
    var rows = series.results || [];
    // buckets that have not begun yet are not zero: they are not drawn (the line fell to 0
    // at the current hour for the rest of today)
    var now = Date.now();
    var value = function (r, key) { return r.bucket > now ? null : (r[key] || 0); };
    var data = [
      rows.map(function (r) { return r.bucket / 1000; }),
      rows.map(function (r) { return value(r, 'visitors'); }),
      rows.map(function (r) { return value(r, 'pageviews'); })
    ];
    var key = interval + '|' + matchMedia('(prefers-color-scheme: dark)').matches + '|' + siteTz;
    if (chart && chartKey === key) { chart.setData(data); return; }
    if (chart) chart.destroy();
    chartKey = key;
    var axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--grid'), width: 1 }, ticks: { stroke: cssVar('--grid') } };
    var xAxis = Object.assign({}, axis, {
      space: 60,
      incrs: X_STEPS[interval] || X_STEPS.day,
      values: function (u, splits) { return splits.map(function (s) { return tickLabel(s * 1000, interval); }); }
    });
    var yAxis = Object.assign({}, axis, {
      values: function (u, splits) { return splits.map(function (v) { return fmtNum(v); }); },
      size: function (u, values) {
        var longest = (values || []).reduce(function (n, v) { return Math.max(n, String(v).length); }, 1);
        return 18 + longest * 8;
      }
    });
    var size = chartSize();
    chart = new uPlot({
      width: size.width,
      height: size.height,
      legend: { show: false },
      cursor: { points: { size: 7 } },
      // ticks fall on the site's hours and midnights, as its buckets do
      tzDate: siteTz && uPlot.tzDate ? function (ts) { return uPlot.tzDate(new Date(ts * 1e3), siteTz); } : undefined,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(4, max * 1.1)]; } } },
      padding: [12, 16, 0, 0],
      axes: [xAxis, yAxis],
      series: [
        {},
        { label: 'Visitors', stroke: cssVar('--accent'), width: 2, fill: cssVar('--accent-fill'), points: { show: false } },
        { label: 'Pageviews', stroke: cssVar('--accent-2'), width: 2, dash: [5, 4], points: { show: false } }
      ]
    }, data, $('chart'));
  }

  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      if (chart) chart.setSize(chartSize());
    }).observe($('chart'));
  }
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', function () {
    if (state.lastData) renderChart(state.lastData.timeseries || {}, state.lastData.interval);
  });

  // ---------------------------------------------------------------- breakdown panels

  function buildPanels() {
    var root = $('panels');
    PANELS.forEach(function (panel) {
      var section = el('section', 'panel breakdown');
      section.id = 'panel-' + panel.id;
      var head = el('div', 'panel-head');
      var tabs = el('div', 'tabs');
      tabs.setAttribute('role', 'tablist');
      panel.tabs.forEach(function (tab, i) {
        var button = el('button', 'tab', tab[1]);
        button.type = 'button';
        button.dataset.tab = tab[0];
        button.setAttribute('role', 'tab');
        button.addEventListener('click', function () {
          state.tabs[panel.id] = tab[0];
          renderPanel(panel);
        });
        tabs.appendChild(button);
        if (i === 0) state.tabs[panel.id] = tab[0];
      });
      head.appendChild(panel.tabs.length > 1 ? tabs : el('h2', null, panel.tabs[0][1]));
      section.appendChild(head);
      if (CHARTS[panel.id]) {
        var charts = el('div', 'charts');
        charts.id = 'charts-' + panel.id;
        section.appendChild(charts);
      }
      var body = el('div', 'rows');
      body.id = 'rows-' + panel.id;
      section.appendChild(body);
      root.insertBefore(section, $('quality'));
    });
  }

  function valueLabel(prop, value) {
    if (value === '' || value === null || value === undefined) {
      return prop === 'source' || prop === 'referrer' ? 'Direct / none' : '(none)';
    }
    return prop === 'country' ? countryLabel(String(value)) : String(value);
  }

  function renderPanel(panel) {
    var current = state.tabs[panel.id];
    renderCharts(panel.id, current);
    var section = $('panel-' + panel.id);
    Array.prototype.forEach.call(section.querySelectorAll('.tab'), function (b) {
      b.classList.toggle('active', b.dataset.tab === current);
      b.setAttribute('aria-selected', b.dataset.tab === current ? 'true' : 'false');
    });
    var body = $('rows-' + panel.id);
    clear(body);
    if (current === 'props') {
      var keys = Object.keys(state.breakdowns).filter(function (k) { return k.indexOf('prop:') === 0; });
      if (!keys.length) body.appendChild(el('p', 'placeholder', 'No custom event props yet.'));
      var total = function (k) { return named(state.breakdowns[k]).reduce(function (n, r) { return n + (r.events || 0); }, 0); };
      keys.sort(function (a, b) { return total(b) - total(a); }); // the most events in the period first
      // each headed by its key; the events without the key (pageviews...) are left out
      keys.forEach(function (k) {
        var rows = named(state.breakdowns[k]);
        if (rows.length) body.appendChild(table(k, rows, false, body.clientWidth));
        else {  // a bare "Nothing matches" under another key's table read as about that one
          body.appendChild(el('p', 'placeholder', k.slice(5) + ': no event has it' +
            (view.filters.length ? ' under these filters.' : ' in this period.')));
        }
      });
      var others = (state.prop_keys || []).filter(function (k) { return keys.indexOf('prop:' + k) < 0; });
      if (others.length) {
        body.appendChild(el('p', 'placeholder', 'Also sent: ' + others.join(', ') + ' (this panel breaks down ' +
          keys.length + ' keys; the Stats API breaks down any: property=prop:' + others[0] + ').'));
      }
      return;
    }
    var rows = state.breakdowns[current] || [];
    // events without a name are pageviews, engagement and the like: not custom events
    body.appendChild(table(current, current === 'event_name' ? named(rows) : rows, false, body.clientWidth));
  }

  function named(rows) {
    return (rows || []).filter(function (r) { return r.value !== '' && r.value !== null; });
  }

  var SHOWN_ROWS = 10; // the live view's rows per table (LiveConfig.breakdown_limit)

  function nothing() {  // an empty table: no data yet, or none that the filters let through
    return el('p', 'placeholder', view.filters.length ? 'Nothing matches the filters.' : 'Nothing here yet.');
  }

  // ``all``: every row the details dialog fetched (no "Show all" under it)
  // ``room``: the width of what holds it (the panel's, the dialog's), in pixels
  function table(prop, rows, all, room) {
    var wrap = el('div', 'table');
    if (!rows.length) {
      wrap.appendChild(nothing());
      return wrap;
    }
    var metrics = Object.keys(rows[0]).filter(function (k) { return k !== 'value'; });
    var allMetrics = metrics;
    if (prop === 'country') { // ties (same two numbers) by the name shown, not by the code
      var m0 = metrics[0], m1 = metrics[1];
      rows = rows.slice().sort(function (a, b) {
        return ((b[m0] || 0) - (a[m0] || 0)) || (m1 ? (b[m1] || 0) - (a[m1] || 0) : 0)
          || valueLabel(prop, a.value).localeCompare(valueLabel(prop, b.value));
      });
    }
    // a column past the first two with nothing measured in any row (time on page without
    // engagement events) gives its room to the labels
    metrics = metrics.filter(function (m, i) { return i < 2 || rows.some(function (r) { return r[m]; }); });
    // as many numbers as leave the value its room (at least 150 px and 45 %); two always:
    // a panel half a 768 px screen wide showed four and cut its pages to "/p…"
    var width = room || window.innerWidth;
    var fits = Math.floor((width - Math.max(150, 0.45 * width)) / 66);
    metrics = metrics.slice(0, Math.max(2, fits));
    var wide = metrics.length <= 2; // the usual two columns keep their room
    var columns = 'minmax(0, 1fr)' + metrics.map(function (m, i) { return !i ? ' 72px' : wide ? ' 84px' : ' 58px'; }).join('');
    var head = el('div', 'row head');
    head.style.gridTemplateColumns = columns;
    // a custom property's key as sent (not upper-cased: keys differ by case)
    head.appendChild(el('span', prop.indexOf('prop:') === 0 ? 'label key' : 'label', LABELS[prop] || prop.replace(/^prop:/, '')));
    metrics.forEach(function (m) { head.appendChild(el('span', 'num', COLUMN_LABELS[m] || m)); });
    wrap.appendChild(head);
    var top = Math.max.apply(null, rows.map(function (r) { return r[metrics[0]] || 0; })) || 1;
    rows.forEach(function (r) {
      var row = el('button', 'row');
      row.type = 'button';
      row.style.gridTemplateColumns = columns;
      var label = valueLabel(prop, r.value);
      row.title = 'Filter by ' + (LABELS[prop] || prop.replace(/^prop:/, 'prop ')) + ': ' + label;
      var bar = el('span', 'bar');
      bar.style.width = Math.max(1, (100 * (r[metrics[0]] || 0)) / top) + '%';
      row.appendChild(bar);
      row.appendChild(el('span', 'label', label));
      metrics.forEach(function (m) { row.appendChild(el('span', 'num', (COLUMN_FORMATS[m] || fmtNum)(r[m] || 0))); });
      row.addEventListener('click', function () {
        var dialog = $('details');
        if (all && dialog && dialog.open) dialog.close();
        addFilter(prop, String(r.value === null ? '' : r.value));
      });
      wrap.appendChild(row);
    });
    if (!all && rows.length >= SHOWN_ROWS) { // the live view sends the top rows only
      var links = el('div', 'more');
      var showAll = el('button', 'show-all', 'Show all');
      showAll.type = 'button';
      showAll.addEventListener('click', function () { openDetails(prop, allMetrics); });
      links.appendChild(showAll);
      links.appendChild(document.createTextNode(' · top ' + SHOWN_ROWS + ' shown · '));
      var csv = el('a', 'csv', 'every row in the download (CSV files, zipped)');
      csv.href = exportUrl();
      links.appendChild(csv);
      wrap.appendChild(links);
    }
    return wrap;
  }

  // ---------------------------------------------------------------- details (every row)

  var DETAIL_ROWS = 1000; // the breakdown endpoint's largest limit

  // One table's rows past the top ten: the Stats API's breakdown of the view (period and
  // filters) for the property, up to DETAIL_ROWS rows, searched as you type.
  function openDetails(prop, metrics) {
    var dialog = $('details');
    if (!dialog) {
      dialog = el('dialog', 'details');
      dialog.id = 'details';
      dialog.setAttribute('aria-labelledby', 'details-title');
      document.body.appendChild(dialog);
      dialog.addEventListener('click', function (e) { if (e.target === dialog) dialog.close(); });
    }
    clear(dialog);
    var label = LABELS[prop] || prop.replace(/^prop:/, '');
    var head = el('div', 'details-head');
    var title = el('h2', null, label);
    title.id = 'details-title';
    head.appendChild(title);
    var close = el('button', 'details-close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Close');
    close.addEventListener('click', function () { dialog.close(); });
    head.appendChild(close);
    dialog.appendChild(head);
    var search = el('input', 'details-search');
    search.type = 'search';
    search.placeholder = 'Search ' + label.toLowerCase();
    search.setAttribute('aria-label', 'Search');
    dialog.appendChild(search);
    var status = el('p', 'muted details-status', 'Loading…');
    dialog.appendChild(status);
    var body = el('div', 'details-rows');
    dialog.appendChild(body);
    if (dialog.showModal) dialog.showModal(); else dialog.setAttribute('open', '');
    var q = new URLSearchParams({
      site_id: view.site, period: view.period, // realtime too: the table's own range
      property: prop, metrics: metrics.join(','), limit: String(DETAIL_ROWS)
    });
    if (view.period === 'custom') { q.set('from', view.from); q.set('to', view.to); }
    var f = filterString();
    if (f) q.set('filters', f);
    if (shareToken) q.set('auth', shareToken);
    var asked = dialog.dataset.asked = q.toString();
    fetch('/api/v1/stats/breakdown?' + asked, { headers: { Accept: 'application/json' } })
      .then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) throw new Error((data && data.error && data.error.reason) || ('HTTP ' + r.status));
          return data;
        });
      })
      .then(function (data) {
        if (dialog.dataset.asked !== asked) return; // another table's details were opened
        var rows = data.results || data.rows || [];
        if (prop === 'event_name' || prop.indexOf('prop:') === 0) rows = named(rows);
        var shown = function () {
          var needle = search.value.trim().toLowerCase();
          var found = !needle ? rows : rows.filter(function (r) {
            return valueLabel(prop, r.value).toLowerCase().indexOf(needle) >= 0
              || String(r.value === null ? '' : r.value).toLowerCase().indexOf(needle) >= 0;
          });
          clear(body);
          body.appendChild(table(prop, found, true, body.clientWidth));
          status.textContent = fmtNum(found.length) + (needle ? ' of ' + fmtNum(rows.length) : '') + ' rows' +
            (rows.length >= DETAIL_ROWS ? ' (the first ' + fmtNum(DETAIL_ROWS) + '; every row is in the download)' : '');
        };
        search.addEventListener('input', shown);
        shown();
        search.focus();
      })
      .catch(function (e) { status.textContent = 'Could not load the rows: ' + e.message; });
  }

  // ---------------------------------------------------------------- charts

  var SVG = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#4f6bed', '#e0803a', '#16a37f', '#c94f8a', '#8a63d2', '#d4b02f', '#5b9bd5', '#9aa0b4'];
  var MAX_SEGMENTS = 6;

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  // One metric of a breakdown's rows, the largest first; past MAX_SEGMENTS, "Other".
  function slices(prop, rows, metric) {
    rows = rows.slice().sort(function (a, b) { return (Number(b[metric]) || 0) - (Number(a[metric]) || 0); });
    var parts = rows.map(function (r) { return { value: String(r.value), label: valueLabel(prop, r.value), count: Number(r[metric]) || 0 }; })
      .filter(function (p) { return p.count > 0; });
    if (parts.length > MAX_SEGMENTS) {
      var rest = parts.slice(MAX_SEGMENTS - 1).reduce(function (n, p) { return n + p.count; }, 0);
      parts = parts.slice(0, MAX_SEGMENTS - 1).concat([{ value: '', label: 'Other', count: rest, other: true }]);
    }
    return { metric: metric, parts: parts };
  }

  function legend(parts, total) {
    var list = el('ul', 'chart-legend');
    parts.forEach(function (p, i) {
      var li = el('li');
      var key = el('span', 'swatch');
      key.style.background = PALETTE[i % PALETTE.length];
      li.appendChild(key);
      li.appendChild(el('span', 'label', p.label));
      li.appendChild(el('span', 'num', fmtPct(total ? (100 * p.count) / total : 0)));
      list.appendChild(li);
    });
    return list;
  }

  function doughnut(prop, title, rows, metric) {
    var figure = el('figure', 'chart-figure');
    figure.dataset.chart = 'doughnut';
    figure.dataset.prop = prop;
    var data = slices(prop, rows, metric);
    var total = data.parts.reduce(function (n, p) { return n + p.count; }, 0);
    var box = svg('svg', { viewBox: '0 0 42 42', class: 'doughnut', role: 'img', 'aria-label': title });
    box.appendChild(svg('circle', { cx: 21, cy: 21, r: 15.915, fill: 'none', stroke: 'var(--grid)', 'stroke-width': 6 }));
    var offset = 25; // start at 12 o'clock
    data.parts.forEach(function (p, i) {
      var pct = total ? (100 * p.count) / total : 0;
      var seg = svg('circle', {
        cx: 21, cy: 21, r: 15.915, fill: 'none', class: 'segment',
        stroke: PALETTE[i % PALETTE.length], 'stroke-width': 6,
        'stroke-dasharray': pct + ' ' + (100 - pct), 'stroke-dashoffset': offset,
        'data-value': p.value, 'data-count': p.count
      });
      var tip = svg('title');
      tip.textContent = p.label + ': ' + fmtNum(p.count);
      seg.appendChild(tip);
      if (!p.other) seg.addEventListener('click', function () { addFilter(prop, p.value); });
      box.appendChild(seg);
      offset = (offset - pct + 100) % 100;
    });
    figure.appendChild(el('figcaption', null, title));
    figure.appendChild(box);
    if (total) figure.appendChild(legend(data.parts, total));
    return figure;
  }

  function bars(prop, title, rows, metric) {
    var figure = el('figure', 'chart-figure');
    figure.dataset.chart = 'bars';
    figure.dataset.prop = prop;
    var data = slices(prop, rows, metric);
    var top = data.parts.reduce(function (n, p) { return Math.max(n, p.count); }, 0) || 1;
    var width = 200;
    var height = 70;
    var step = data.parts.length ? width / Math.max(data.parts.length, 3) : width;
    var box = svg('svg', { viewBox: '0 0 ' + width + ' ' + (height + 14), class: 'bars', role: 'img', 'aria-label': title });
    data.parts.forEach(function (p, i) {
      var h = (height * p.count) / top;
      var bar = svg('rect', {
        x: i * step + step * 0.15, y: height - h, width: step * 0.7, height: h, rx: 1,
        fill: PALETTE[i % PALETTE.length], class: 'bar-rect', 'data-value': p.value, 'data-count': p.count
      });
      var tip = svg('title');
      tip.textContent = p.label + ': ' + fmtNum(p.count);
      bar.appendChild(tip);
      if (!p.other) bar.addEventListener('click', function () { addFilter(prop, p.value); });
      box.appendChild(bar);
      var label = svg('text', { x: i * step + step / 2, y: height + 10, 'text-anchor': 'middle', class: 'bar-label' });
      label.textContent = p.label.length > 12 ? p.label.slice(0, 11) + '…' : p.label;
      box.appendChild(label);
    });
    figure.appendChild(el('figcaption', null, title));
    figure.appendChild(box);
    return figure;
  }

  function renderCharts(panelId, current) {
    var holder = $('charts-' + panelId);
    if (!holder) return;
    clear(holder);
    CHARTS[panelId].forEach(function (chart) {
      if (chart[4] && chart[4] !== current) return;
      var rows = state.breakdowns[chart[0]] || [];
      if (!rows.length) return;  // the table under it says so, once
      var draw = chart[1] === 'doughnut' ? doughnut : bars;
      holder.appendChild(draw(chart[0], chart[2], rows, chart[3]));
    });
  }

  // ---------------------------------------------------------------- filters

  // the goals panel (goals.js) asks for a goal filter this way
  document.addEventListener('hitstream:filter', function (ev) {
    if (ev.detail && ev.detail.prop) addFilter(ev.detail.prop, String(ev.detail.value));
  });

  function addFilter(prop, value) {
    if (/[;|]/.test(value)) { showNotice('This value cannot be used as a filter.'); return; }
    changeView(function () {
      view.filters = view.filters.filter(function (f) { return f.prop !== prop; });
      view.filters.push({ prop: prop, op: '==', values: [value] });
    });
  }

  function renderFilters() {
    var chips = $('chips');
    clear(chips);
    view.filters.forEach(function (f, i) {
      var chip = el('span', 'chip');
      var name = LABELS[f.prop] || f.prop.replace(/^prop:/, 'prop ');
      var op = OP_LABELS[f.op] || f.op;
      chip.appendChild(el('span', null, name + ' ' + op + ' '));
      chip.appendChild(el('strong', null, PATTERN_OPS[f.op] ? f.values[0] : f.values.map(function (v) { return valueLabel(f.prop, v); }).join(' or ')));
      var remove = el('button', 'chip-x', '×');
      remove.type = 'button';
      remove.setAttribute('aria-label', 'Remove filter');
      remove.addEventListener('click', function () {
        changeView(function () { view.filters.splice(i, 1); });
      });
      chip.appendChild(remove);
      chips.appendChild(chip);
    });
    $('filters').hidden = view.filters.length === 0;
  }

  // ---------------------------------------------------------------- stream, alerts, quality

  function eventTime(e) { return e.timestamp || e.received_at || 0; }

  function addEvents(events, skipped) {
    // newest first by the events' own times: one sent late (a batch, a tracker's retry)
    // takes its place in the list, not the top of it
    var list = $('stream');
    for (var i = 0; i < events.length; i++) {
      var at = 0;
      while (at < state.events.length && eventTime(state.events[at]) > eventTime(events[i])) at++;
      state.events.splice(at, 0, events[i]);
      var row = eventRow(events[i]);
      row.classList.add('new');
      list.insertBefore(row, list.children[at] || null);
    }
    state.events = state.events.slice(0, 50);
    while (list.children.length > 50) list.removeChild(list.lastChild);
    state.skipped = (state.skipped || 0) + skipped;
    renderStreamInfo();
  }

  function eventRow(e) {
    var li = el('li', 'ev ev-' + (e.type || 'event'));
    li.appendChild(el('time', null, fmtTime(e.timestamp || e.received_at || Date.now())));
    li.appendChild(el('span', 'badge', e.type === 'custom' || e.type === 'click' ? e.name || e.type : e.type));
    var main = el('span', 'what', e.path || '(no page)');
    main.title = e.title || '';
    li.appendChild(main);
    var props = e.props || {};
    var parts = Object.keys(props).map(function (k) { return k + '=' + props[k]; });
    if (parts.length) li.appendChild(el('span', 'props', parts.join(' · ')));
    var meta = [e.country ? countryLabel(e.country) : '', e.browser || '', e.source || ''].filter(Boolean);
    li.appendChild(el('span', 'meta', meta.join(' · ')));
    return li;
  }

  function renderStream() {
    var list = $('stream');
    clear(list);
    state.events.forEach(function (e) { list.appendChild(eventRow(e)); });
    renderStreamInfo();
  }

  function renderStreamInfo() {
    $('stream-empty').hidden = state.events.length > 0;
    $('stream-info').textContent = state.skipped ? state.skipped + ' not shown (rate limit)' : '';
  }

  function renderAlerts() {
    var list = $('alerts');
    clear(list);
    state.alerts.forEach(function (a) {
      var li = el('li', 'alert');
      var resolved = a.state === 'resolved';
      li.dataset.state = resolved ? 'resolved' : 'firing';
      if (a.severity) li.dataset.severity = String(a.severity);
      var label = resolved ? 'Resolved' : (a.repeat ? 'Still firing' : 'Firing');
      li.appendChild(el('strong', null, label + ': ' + (a.rule || 'alert')));
      li.appendChild(el('span', null, a.message || ''));
      var detail = [];
      if (a.severity) detail.push(a.severity);
      if (a.value !== undefined) detail.push('value ' + fmtNum(Number(a.value)));
      if (a.threshold !== undefined) detail.push((a.op ? a.op + ' ' : 'threshold ') + fmtNum(Number(a.threshold)));
      if (a.at) detail.push(fmtTime(a.at));
      li.appendChild(el('span', 'meta', detail.join(' · ')));
      list.appendChild(li);
    });
    $('alerts-empty').hidden = state.alerts.length > 0;
  }

  // "request 400: plausible: body" is a whole request refused before its events were read
  // (one with no site is counted on no site's panel: GET /api/v1/quality, admins)
  function reasonLabel(reason) {
    var m = /^request (\d{3}): (.*)$/.exec(reason);
    if (!m) return { text: reason, title: '' };
    return {
      text: 'Whole request refused (HTTP ' + m[1] + '): ' + m[2],
      title: 'The whole request was refused before its events were read.'
    };
  }

  var SHOWN_REASONS = 8; // the panel's rows; the rest in one line (the API has them all)

  function kv(list, counts, emptyText, label) {
    clear(list);
    var keys = Object.keys(counts || {}).sort(function (a, b) { return counts[b] - counts[a] || (a < b ? -1 : 1); });
    if (!keys.length) list.appendChild(el('li', 'placeholder', emptyText));
    // past SHOWN_REASONS, the last row sums the rest
    var hidden = keys.length > SHOWN_REASONS ? keys.slice(SHOWN_REASONS - 1) : [];
    if (hidden.length) keys = keys.slice(0, SHOWN_REASONS - 1).concat([null]);
    keys.forEach(function (k) {
      if (k === null) {
        var more = el('li', 'more-reasons');
        more.appendChild(el('span', 'label', hidden.length + ' other reasons (GET /api/v1/quality lists every one)'));
        more.appendChild(el('span', 'num', fmtNum(hidden.reduce(function (n, h) { return n + counts[h]; }, 0))));
        list.appendChild(more);
        return;
      }
      var li = el('li');
      var shown = label ? label(k) : { text: k, title: '' };
      var name = el('span', 'label', shown.text);
      if (shown.title) name.title = shown.title;
      li.appendChild(name);
      li.appendChild(el('span', 'num', fmtNum(counts[k])));
      list.appendChild(li);
    });
  }

  function renderQuality(q) {
    kv($('rejected'), q.rejected, 'Nothing rejected.', reasonLabel);
    kv($('dropped'), q.dropped, 'Nothing dropped.');
  }

  function showNotice(text) {
    $('notice').textContent = text;
    $('notice').hidden = false;
  }
  function hideNotice() { $('notice').hidden = true; }

  // ---------------------------------------------------------------- controls

  var pickingCustom = false;
  var pickedFrom = '';
  var pickedTo = '';

  function renderControls() {
    Array.prototype.forEach.call(document.querySelectorAll('#periods button'), function (b) {
      var on = b.dataset.period === view.period;
      b.classList.toggle('active', on);
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
    });
    // Custom is lit once its dates apply; until then its form is open and the data is the
    // period shown (it was lit at once, over the previous period's figures)
    $('custom-range').hidden = view.period !== 'custom' && !pickingCustom;
    var customButton = document.querySelector('#periods button[data-period="custom"]');
    if (customButton) customButton.classList.toggle('pending', pickingCustom && view.period !== 'custom');
    if (customButton) customButton.setAttribute('aria-expanded', $('custom-range').hidden ? 'false' : 'true');
    var picking = pickingCustom && view.period !== 'custom';
    $('from').value = picking ? pickedFrom : view.from;
    $('to').value = picking ? pickedTo : view.to;
    var select = $('site');
    if (select.value !== view.site) select.value = view.site;
    $('compare').value = view.compare;
    $('compare-range').hidden = view.compare !== 'custom';
    $('compare-from').value = view.compareFrom;
    $('compare-to').value = view.compareTo;
    $('download').href = view.site ? exportUrl() : '#';
    renderFilters();
  }

  function isoDay(d) {
    var local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
    return local.toISOString().slice(0, 10);
  }

  function bindControls() {
    $('periods').addEventListener('click', function (ev) {
      var button = ev.target.closest('button[data-period]');
      if (!button) return;
      var period = button.dataset.period;
      if (period === 'custom') {
        var now = new Date();
        pickedTo = view.to || isoDay(now);
        pickedFrom = view.from || isoDay(new Date(now.getTime() - 6 * 86400000));
        pickingCustom = true;
        renderControls();
        $('from').focus();
        return;
      }
      pickingCustom = false;
      changeView(function () { view.period = period; });
    });
    $('custom-range').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var from = $('from').value;
      var to = $('to').value;
      if (!from || !to) return;
      pickingCustom = false;
      changeView(function () {
        view.period = 'custom';
        view.from = from <= to ? from : to;
        view.to = from <= to ? to : from;
      });
    });
    $('site').addEventListener('change', function () {
      var site = $('site').value;
      changeView(function () { view.site = site; view.filters = []; });
      state.events = [];
      state.skipped = 0;
      renderStream();
    });
    $('compare').addEventListener('change', function () {
      var compare = $('compare').value;
      if (compare === 'custom') {
        if (!view.compareFrom) {
          var year = new Date(Date.now() - 365 * 86400000);
          view.compareTo = isoDay(year);
          view.compareFrom = isoDay(new Date(year.getTime() - 6 * 86400000));
        }
        view.compare = 'custom';
        renderControls();
        $('compare-from').focus();
        return;
      }
      changeView(function () { view.compare = compare; });
    });
    $('compare-range').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var from = $('compare-from').value;
      var to = $('compare-to').value;
      if (!from || !to) return;
      changeView(function () {
        view.compare = 'custom';
        view.compareFrom = from <= to ? from : to;
        view.compareTo = from <= to ? to : from;
      });
    });
    $('filter-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var prop = $('filter-prop').value;
      var op = $('filter-op').value;
      var value = $('filter-value').value;
      if (!value) return;
      if (value.indexOf(';') >= 0) {
        showNotice('A filter value cannot contain ";" (write it as \\x3B in a pattern).');
        return;
      }
      typedFilter = { prop: prop, op: op, value: value };  // back in the form if refused
      changeView(function () {
        view.filters = view.filters.filter(function (f) { return f.prop !== prop; });
        view.filters.push({ prop: prop, op: op, values: PATTERN_OPS[op] ? [value] : value.split('|') });
      });
      $('filter-value').value = '';
    });
    $('clear-filters').addEventListener('click', function () {
      changeView(function () { view.filters = []; });
    });
    window.addEventListener('popstate', function () {
      var siteBefore = view.site;
      view = readUrl();
      if (!view.site) view.site = siteBefore;
      renderControls();
      sendSet();
    });
  }

  function loadSites() {
    if (shareSite) return Promise.resolve([shareSite]).then(function (sites) { fillSites(sites); return sites; });
    return fetch('/api/v1/sites', { headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search); return { sites: [] }; }
        return r.ok ? r.json() : { sites: [] };
      })
      .catch(function () { return { sites: [] }; })
      .then(function (body) {
        var sites = ((body && body.sites) || []).map(function (s) { return typeof s === 'string' ? s : s.site_id; });
        fillSites(sites);
        return sites;
      });
  }

  function fillSites(sites) {
    // the URL's site stays picked even when it is not one the credential reads (the notice
    // says why), named so: it read like any other site of the list
    var foreign = view.site && sites.indexOf(view.site) < 0 ? view.site : '';
    if (foreign) sites.unshift(foreign);
    var select = $('site');
    clear(select);
    sites.forEach(function (s) {
      var option = el('option', null, s === foreign && !shareSite ? s + ' (not yours)' : s);
      option.value = s;
      select.appendChild(option);
    });
  }

  function bindAccount() {
    if (shareSite) {
      $('shared-title').textContent = shareSite + ' · read only';
      $('shared-title').hidden = false;
      return;
    }
    fetch('/api/v1/session', { headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { session = s; showSnippet(); })
      .catch(function () {});
    $('logout').addEventListener('click', function () {
      fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': session ? session.csrf : '' } })
        .then(function () { location.href = '/login'; });
    });
  }

  // The tracker is served here; events go where the session says (HITSTREAM_COLLECTOR_URL),
  // or to this address when it has none.
  function showSnippet() {
    var api = session && session.events_url ? ' data-api="' + session.events_url + '"' : '';
    $('snippet').textContent = '<script defer data-site="' + (view.site || 'example.com') + '"' + api +
      ' src="' + location.origin + '/js/hitstream.js"></script>';
    $('collector-note').hidden = !session || session.collects || !!session.events_url;
  }

  function start() {
    buildCards();
    buildPanels();
    bindControls();
    bindAccount();
    loadSites().then(function (sites) {
      if (!view.site) view.site = sites[0] || '';
      writeUrl(false);
      renderControls();
      showSnippet();
      if (!view.site) {
        $('empty').hidden = false;
        setConn('offline', 'no sites yet');
        setTimeout(function retry() {
          loadSites().then(function (again) {
            if (again.length) { view.site = again[0]; writeUrl(false); renderControls(); showSnippet(); connect(); }
            else setTimeout(retry, 3000);
          });
        }, 3000);
        return;
      }
      connect();
    });
  }

  start();
})();
