/* hitstream dashboard: the goals panel (manage goals, conversions per goal) and the funnel
 * panel (a saved funnel or typed steps, a bar per step). Reads the view (site, period,
 * filters) from the URL that app.js keeps, and asks the HTTP API; every value a visitor or a
 * user could have influenced goes in with textContent.
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  var csrf = '';
  var canEdit = false; // an admin's login: a viewer or a shared link reads only
  var lastKey = '';

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function view() {
    var q = new URLSearchParams(location.search);
    var site = document.body.dataset.share || q.get('site') || '';
    if (!site) { var s = $('site'); site = s ? s.value : ''; }
    var p = new URLSearchParams();
    p.set('site_id', site);
    p.set('period', q.get('period') || 'day');
    if (q.get('from')) p.set('from', q.get('from'));
    if (q.get('to')) p.set('to', q.get('to'));
    if (q.get('filters')) p.set('filters', q.get('filters'));
    if (q.get('auth')) p.set('auth', q.get('auth'));
    return { site: site, params: p, auth: q.get('auth') || '' };
  }

  function get(url) {
    return fetch(url, { headers: { Accept: 'application/json' } }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    });
  }

  function send(method, url, body) {
    var headers = { Accept: 'application/json', 'X-CSRF-Token': csrf };
    if (body) headers['Content-Type'] = 'application/json';
    return fetch(url, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); });
  }

  function errorText(res) {
    var e = res.body && res.body.error;
    return e ? e.field + ': ' + e.reason : 'failed';
  }

  function withAuth(url, v) {
    return v.auth ? url + (url.indexOf('?') < 0 ? '?' : '&') + 'auth=' + encodeURIComponent(v.auth) : url;
  }

  // ---------------------------------------------------------------- goals

  function goalText(g) {
    if (g.page) return 'page ' + g.page;
    var props = Object.keys(g.props || {}).map(function (k) { return k + '=' + g.props[k]; });
    return 'event ' + g.event_name + (props.length ? ' (' + props.join(', ') + ')' : '');
  }

  function renderGoals(v, goals, rows) {
    var list = $('goals-table');
    clear(list);
    $('goals-empty').hidden = goals.length > 0;
    // a reader cannot add one: say who can (a bare "No goals yet." read as a missing form)
    $('goals-empty').textContent = canEdit ? 'No goals yet.'
      : 'No goals yet. An admin of this site can add them (a page pattern or a custom event).';
    if (!goals.length) return;
    var byName = {};
    rows.forEach(function (r) { byName[r.value] = r; });
    var head = el('div', 'row head goal-row');
    ['Goal', 'Visitors', 'Events', 'CR'].forEach(function (t, i) { head.appendChild(el('span', i ? 'num' : 'label', t)); });
    head.appendChild(el('span'));
    list.appendChild(head);
    var sorted = goals.slice().sort(function (a, b) {
      var x = byName[a.name] ? byName[a.name].conversions : 0, y = byName[b.name] ? byName[b.name].conversions : 0;
      return y - x || (a.name < b.name ? -1 : 1);
    });
    sorted.forEach(function (g) {
      var r = byName[g.name] || { conversions: 0, events: 0, conversion_rate: 0 };
      var row = el('div', 'row goal-row');
      row.dataset.goal = g.name;
      var label = el('span', 'label', g.name);
      label.title = goalText(g) + ' (click: only its completions)';
      row.appendChild(label);
      row.classList.add('clickable');
      row.addEventListener('click', function (ev) {  // as every other table: filter by it
        if (ev.target.closest && ev.target.closest('button')) return;
        document.dispatchEvent(new CustomEvent('hitstream:filter', { detail: { prop: 'goal', value: g.name } }));
      });
      row.appendChild(el('span', 'num conversions', fmt.format(r.conversions)));
      row.appendChild(el('span', 'num events', fmt.format(r.events)));
      row.appendChild(el('span', 'num rate', fmt.format(r.conversion_rate) + '%'));
      var remove = el('button', 'link remove-goal', '×');
      remove.type = 'button';
      remove.title = 'Remove goal ' + g.name;
      remove.hidden = !canEdit;
      remove.addEventListener('click', function () {
        if (!window.confirm('Remove the goal "' + g.name + '"? Its events stay; its conversions are no longer counted.')) return;
        send('DELETE', '/api/v1/sites/' + encodeURIComponent(v.site) + '/goals/' + encodeURIComponent(g.name))
          .then(function (res) {
            $('goal-error').textContent = res.ok ? '' : errorText(res);  // an old error goes too
            if (res.ok) refresh(true);
          });
      });
      row.appendChild(remove);
      list.appendChild(row);
    });
  }

  function loadGoals(v) {
    var base = '/api/v1/sites/' + encodeURIComponent(v.site);
    var p = new URLSearchParams(v.params);
    p.set('property', 'goal');
    p.set('metrics', 'conversions,events,conversion_rate');
    return Promise.all([
      get(withAuth(base + '/goals', v)),
      get('/api/v1/stats/breakdown?' + p.toString())
    ]).then(function (both) {
      var goals = both[0].ok ? both[0].body.goals : [];
      var rows = both[1].ok ? both[1].body.results : [];
      renderGoals(v, goals, rows);
    });
  }

  function bindGoalForm() {
    $('goal-kind').addEventListener('change', function () {
      $('goal-props').hidden = $('goal-kind').value !== 'event';
    });
    $('add-goal').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var v = view();
      var body = { name: $('goal-name').value.trim() };
      var target = $('goal-target').value.trim();
      if ($('goal-kind').value === 'page') body.page = target;
      else {
        body.event_name = target;
        var props = {};
        $('goal-props').value.split(',').forEach(function (pair) {
          var i = pair.indexOf('=');
          if (i > 0) props[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
        });
        if (Object.keys(props).length) body.props = props;
      }
      send('POST', '/api/v1/sites/' + encodeURIComponent(v.site) + '/goals', body).then(function (res) {
        $('goal-error').textContent = res.ok ? '' : errorText(res);
        if (res.ok) { $('add-goal').reset(); $('goal-props').hidden = true; refresh(true); }
      });
    });
  }

  // ---------------------------------------------------------------- funnels

  var funnels = [];

  function renderFunnel(answer) {
    var box = $('funnel-bars');
    clear(box);
    var steps = answer.steps || [];
    var top = steps.length ? steps[0].visitors || 1 : 1;
    if (steps.length) { // what the three numbers are: visitors, % of the first step, lost
      var head = el('div', 'funnel-head');
      head.appendChild(el('span', 'track-head', 'step'));
      head.appendChild(el('span', 'num', 'visitors'));
      head.appendChild(el('span', 'num', 'of first'));
      head.appendChild(el('span', 'num', 'lost'));
      box.appendChild(head);
    }
    steps.forEach(function (s, i) {
      var row = el('div', 'funnel-step');
      var label = el('span', 'label', (i + 1) + '. ' + s.label);
      label.title = s.label;
      row.appendChild(label);
      var track = el('div', 'funnel-track');
      var bar = el('div', 'funnel-bar');
      bar.style.width = Math.max(0, Math.min(100, 100 * s.visitors / top)) + '%';
      track.appendChild(bar);
      row.appendChild(track);
      row.appendChild(el('span', 'num visitors', fmt.format(s.visitors)));
      row.appendChild(el('span', 'num rate', fmt.format(s.conversion_rate) + '%'));
      row.appendChild(el('span', 'num dropoff', i && s.dropoff ? '−' + fmt.format(s.dropoff) : i ? '0' : ''));
      box.appendChild(row);
    });
  }

  function runFunnel() {
    var v = view();
    var p = new URLSearchParams(v.params);
    var chosen = $('funnel-pick').value;
    if (chosen) p.set('funnel', chosen);
    else {
      $('funnel-steps').value.split('\n').map(function (s) { return s.trim(); })
        .filter(Boolean).forEach(function (s) { p.append('step', s); });
      var w = $('funnel-window').value.trim();
      if (w) p.set('window', w);
    }
    if (!chosen && !p.getAll('step').length) { clear($('funnel-bars')); return Promise.resolve(); }
    return get('/api/v1/stats/funnel?' + p.toString()).then(function (res) {
      $('funnel-error').textContent = res.ok ? '' : errorText(res);
      if (res.ok) renderFunnel(res.body); else clear($('funnel-bars'));
    });
  }

  function loadFunnels(v) {
    return get(withAuth('/api/v1/sites/' + encodeURIComponent(v.site) + '/funnels', v)).then(function (res) {
      funnels = res.ok ? res.body.funnels : [];
      var pick = $('funnel-pick');
      var keep = pick.value;
      clear(pick);
      pick.appendChild(el('option', null, 'Typed steps'));
      pick.firstChild.value = '';
      funnels.forEach(function (f) {
        var o = el('option', null, f.name);
        o.value = f.name;
        pick.appendChild(o);
      });
      pick.value = funnels.some(function (f) { return f.name === keep; }) ? keep : '';
      $('funnel-save').hidden = !canEdit;
      $('funnel-name').hidden = !canEdit;  // a viewer or a shared dashboard saves nothing
      $('funnel-delete').hidden = !canEdit || !pick.value;
    });
  }

  function bindFunnelForm() {
    $('funnel-form').addEventListener('submit', function (ev) { ev.preventDefault(); runFunnel(); });
    // an edit makes the last answer's error stale (a form the browser itself refuses, such
    // as a window of 0, never reaches runFunnel to clear it)
    $('funnel-form').addEventListener('input', function () { $('funnel-error').textContent = ''; });
    // steps edited by hand are no longer the saved funnel's: Show runs what is typed
    function typed() {
      var f = funnels.filter(function (x) { return x.name === $('funnel-pick').value; })[0];
      if (f && ($('funnel-steps').value.trim() !== f.steps.join('\n') ||
                $('funnel-window').value.trim() !== String(f.window || ''))) {
        $('funnel-pick').value = '';  // (sets no change event: the button follows here)
        $('funnel-delete').hidden = true;
      }
    }
    $('funnel-steps').addEventListener('input', typed);
    $('funnel-window').addEventListener('input', typed);
    // what was typed before a saved funnel filled the form: back when "Typed steps" is picked
    // again (the saved funnel's window stayed, a window nobody typed)
    var typedBefore = null;
    $('funnel-pick').addEventListener('change', function () {
      var f = funnels.filter(function (x) { return x.name === $('funnel-pick').value; })[0];
      if (f) {
        if (!typedBefore) typedBefore = { steps: $('funnel-steps').value, window: $('funnel-window').value };
        $('funnel-steps').value = f.steps.join('\n');
        $('funnel-window').value = f.window || '';
      } else if (typedBefore) {
        $('funnel-steps').value = typedBefore.steps;
        $('funnel-window').value = typedBefore.window;
      }
      if (!f) typedBefore = null;
      $('funnel-delete').hidden = !canEdit || !f;
      runFunnel();
    });
    // a saved funnel can go (a goal it uses cannot, until then: the API says so)
    $('funnel-delete').addEventListener('click', function () {
      var v = view();
      var name = $('funnel-pick').value;
      if (!name || !window.confirm('Delete the saved funnel "' + name + '"? Its goals and events stay.')) return;
      send('DELETE', '/api/v1/sites/' + encodeURIComponent(v.site) + '/funnels/' + encodeURIComponent(name))
        .then(function (res) {
          $('funnel-error').textContent = res.ok ? '' : errorText(res);
          if (res.ok) loadFunnels(v).then(function () { $('funnel-delete').hidden = true; runFunnel(); });
        });
    });
    $('funnel-save').addEventListener('click', function () {
      var v = view();
      var name = $('funnel-name').value.trim();
      var steps = $('funnel-steps').value.split('\n').map(function (s) { return s.trim(); }).filter(Boolean);
      var w = $('funnel-window').value.trim();
      send('POST', '/api/v1/sites/' + encodeURIComponent(v.site) + '/funnels',
        { name: name, steps: steps, window: w ? Number(w) : null }).then(function (res) {
        $('funnel-error').textContent = res.ok ? '' : errorText(res);
        if (res.ok) loadFunnels(v).then(function () { $('funnel-pick').value = name; $('funnel-delete').hidden = !canEdit; runFunnel(); });
      });
    });
  }

  // ---------------------------------------------------------------- refresh

  function refresh(force) {
    var v = view();
    if (!v.site) return;
    var key = v.params.toString();
    if (!force && key === lastKey) return;
    var siteChanged = lastKey.indexOf('site_id=' + encodeURIComponent(v.site) + '&') !== 0;
    lastKey = key;
    loadGoals(v);
    (siteChanged || force ? loadFunnels(v) : Promise.resolve()).then(runFunnel);
  }

  function start() {
    if (!$('goals-panel')) return;
    bindGoalForm();
    bindFunnelForm();
    var share = !!document.body.dataset.share;
    $('add-goal').hidden = share;
    var ready = share ? Promise.resolve() : fetch('/api/v1/session', { headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        csrf = (s && s.csrf) || '';
        canEdit = !!csrf && s.role === 'admin';
        $('add-goal').hidden = !canEdit;
      })
      .catch(function () {});
    ready.then(function () {
      refresh(true);
      setInterval(function () { refresh(false); }, 1000);  // the view moved (app.js keeps the URL)
      setInterval(function () { refresh(true); }, 30000);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
