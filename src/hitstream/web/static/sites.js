/* hitstream sites page: add a site (and get its snippet), edit its settings, delete it,
 * create and revoke its API keys and shared links. Everything typed is shown with
 * textContent; state-changing calls carry the login's CSRF secret (X-CSRF-Token).
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var me = null;
  var justAdded = null;  // the site the "added" note above shows the snippet of

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function notice(text) {
    $('notice').textContent = text;
    $('notice').hidden = !text;
    if (text) window.scrollTo(0, 0);
  }

  function api(method, url, body) {
    var init = { method: method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (me && method !== 'GET') init.headers['X-CSRF-Token'] = me.csrf;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname); throw new Error('login'); }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var e = (data && data.error) || {};
          var message = (e.field ? e.field + ': ' : '') + (e.reason || ('HTTP ' + r.status));
          notice(message);
          var shown = new Error(message);
          shown.shown = true; // said on the page: not an uncaught error in the console too
          throw shown;
        }
        notice('');
        return data;
      });
    });
  }

  // The tracker is served here; events go where the session says (HITSTREAM_COLLECTOR_URL),
  // or to this address when it has none.
  // Events refused for a site that is not registered (a snippet's data-site with a typo, a
  // site not added yet) are counted apart from every site: only an admin sees them, here.
  function showUnregistered() {
    fetch('/api/v1/quality', { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : {}; }).then(function (q) {
      var n = (q.rejected || {})['site_id: is not a registered site'] || 0;
      var note = $('unregistered-note');
      note.hidden = !n;
      note.textContent = n ? n + ' event' + (n === 1 ? ' was' : 's were') + ' refused for a site ' +
        'that is not registered: check the data-site of your snippets (it must be a site listed ' +
        'here), or add the site.' : '';
    }).catch(function () {});  // a hint only: no notice when it cannot be read
  }

  function snippet(siteId) {
    var api = me && me.events_url ? ' data-api="' + me.events_url + '"' : '';
    return '<script defer data-site="' + siteId + '"' + api + ' src="' + location.origin + '/js/hitstream.js"></script>';
  }

  function button(text, cls, onClick) {
    var b = el('button', 'btn small ' + (cls || ''), text);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  function field(label, input) {
    var l = el('label', 'field', label);
    l.appendChild(input);
    return l;
  }

  function input(name, value, type) {
    var i = el('input');
    i.name = name;
    i.type = type || 'text';
    if (type === 'checkbox') i.checked = !!value; else i.value = value === undefined || value === null ? '' : String(value);
    return i;
  }

  // ------------------------------------------------------------ one site

  function siteCard(site) {
    var id = site.site_id;
    var card = el('section', 'panel site-card');
    card.dataset.site = id;
    var head = el('div', 'panel-head');
    head.appendChild(el('h2', null, id));
    var open = el('a', 'btn small secondary', 'Open dashboard');
    open.href = '/?site=' + encodeURIComponent(id);
    head.appendChild(open);
    card.appendChild(head);
    var meta = [site.timezone, 'hosts: ' + site.allowed_hosts.join(', '),
      site.retention_days ? 'keeps ' + site.retention_days + ' days' : 'keeps everything',
      site.public ? 'public' : 'private'];
    card.appendChild(el('p', 'meta', meta.join(' · ')));
    if (id !== justAdded) card.appendChild(el('pre', 'snippet', snippet(id)));  // else shown above
    if (me.role === 'admin') {
      card.appendChild(settingsBlock(site));
      card.appendChild(keysBlock(id));
      card.appendChild(linksBlock(id));
    }
    return card;
  }

  function settingsBlock(site) {
    var details = el('details', 'settings');
    details.appendChild(el('summary', null, 'Settings'));
    var form = el('form', 'grid2');
    var tz = input('timezone', site.timezone);
    var hosts = input('allowed_hosts', site.allowed_hosts.join(', '));
    var retention = input('retention_days', site.retention_days, 'number');
    retention.min = '0';
    var pub = input('public', site.public, 'checkbox');
    form.appendChild(field('Time zone', tz));
    form.appendChild(field('Allowed hosts (comma separated)', hosts));
    form.appendChild(field('Retention in days (0 keeps everything)', retention));
    var pubLabel = el('label', 'field', 'Public dashboard (anyone may read it at /share/' + site.site_id + ')');
    pubLabel.appendChild(pub);
    form.appendChild(pubLabel);
    var save = el('button', 'btn', 'Save');
    save.type = 'submit';
    form.appendChild(save);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      api('PATCH', '/api/v1/sites/' + encodeURIComponent(site.site_id), {
        timezone: tz.value.trim() || 'UTC',
        allowed_hosts: hosts.value.split(',').map(function (h) { return h.trim(); }).filter(Boolean),
        retention_days: parseInt(retention.value || '0', 10),
        public: pub.checked
      }).then(load);
    });
    details.appendChild(form);
    var actions = el('div', 'row-actions');
    actions.appendChild(button('Delete site and all its data', 'danger', function () {
      if (!window.confirm('Delete ' + site.site_id + ' and every event, visit and key of it? This cannot be undone.')) return;
      api('DELETE', '/api/v1/sites/' + encodeURIComponent(site.site_id)).then(load);
    }));
    details.appendChild(actions);
    return details;
  }

  function keysBlock(siteId) {
    var details = el('details', 'keys');
    details.appendChild(el('summary', null, 'API keys'));
    var list = el('ul', 'list');
    var shown = el('div');
    var form = el('form', 'grid2');
    var name = input('name', '');
    name.placeholder = 'what it is for';
    var scope = el('select');
    ['read', 'write', 'admin'].forEach(function (s) { var o = el('option', null, s); o.value = s; scope.appendChild(o); });
    form.appendChild(field('Name', name));
    form.appendChild(field('Scope', scope));
    var create = el('button', 'btn', 'Create key');
    create.type = 'submit';
    form.appendChild(create);
    function refresh() {
      api('GET', '/api/v1/sites/' + encodeURIComponent(siteId) + '/keys').then(function (data) {
        list.textContent = '';
        (data.keys || []).forEach(function (k) {
          var li = el('li');
          li.appendChild(el('span', 'what', (k.name || '(no name)') + ' · ' + k.prefix + '… · ' + k.scope + (k.revoked ? ' · revoked' : '')));
          if (!k.revoked) li.appendChild(button('Revoke', 'secondary', function () {
            // no undo: whatever sends with this key is refused from now on
            if (!window.confirm('Revoke the key "' + (k.name || k.prefix) + '"? What uses it is refused from now on.')) return;
            api('DELETE', '/api/v1/keys/' + encodeURIComponent(k.key_id)).then(refresh);
          }));
          list.appendChild(li);
        });
        if (!(data.keys || []).length) list.appendChild(el('li', 'placeholder', 'No keys.'));
      });
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      api('POST', '/api/v1/sites/' + encodeURIComponent(siteId) + '/keys', { name: name.value, scope: scope.value }).then(function (k) {
        shown.textContent = '';
        shown.appendChild(el('p', 'ok-note', 'Copy the key now: it is shown only once.'));
        shown.appendChild(el('code', 'secret', k.key));
        name.value = '';
        refresh();
      });
    });
    details.addEventListener('toggle', function () { if (details.open) refresh(); });
    details.appendChild(list);
    details.appendChild(form);
    details.appendChild(shown);
    return details;
  }

  function linksBlock(siteId) {
    var details = el('details', 'links');
    details.appendChild(el('summary', null, 'Shared links'));
    var list = el('ul', 'list');
    var shown = el('div');
    var form = el('form', 'grid2');
    var name = input('name', '');
    name.placeholder = 'who it is for';
    form.appendChild(field('Name', name));
    var create = el('button', 'btn', 'Create shared link');
    create.type = 'submit';
    form.appendChild(create);
    function refresh() {
      api('GET', '/api/v1/sites/' + encodeURIComponent(siteId) + '/links').then(function (data) {
        list.textContent = '';
        (data.links || []).forEach(function (v) {
          var li = el('li');
          li.appendChild(el('span', 'what', (v.name || '(no name)') + ' · created ' + new Date(v.created_at).toLocaleString()));
          li.appendChild(button('Revoke', 'secondary', function () {
            if (!window.confirm('Revoke the shared link "' + (v.name || '(no name)') + '"? Whoever has it can no longer read the dashboard.')) return;
            api('DELETE', '/api/v1/sites/' + encodeURIComponent(siteId) + '/links/' + encodeURIComponent(v.link_id)).then(refresh);
          }));
          list.appendChild(li);
        });
        if (!(data.links || []).length) list.appendChild(el('li', 'placeholder', 'No shared links.'));
      });
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      api('POST', '/api/v1/sites/' + encodeURIComponent(siteId) + '/links', { name: name.value }).then(function (v) {
        shown.textContent = '';
        shown.appendChild(el('p', 'ok-note', 'Anyone with this link can read the dashboard (read only). Copy it now: it is shown only once.'));
        var a = el('a', 'secret share-url', location.origin + v.path);
        a.href = v.path;
        shown.appendChild(a);
        name.value = '';
        refresh();
      });
    });
    details.addEventListener('toggle', function () { if (details.open) refresh(); });
    details.appendChild(list);
    details.appendChild(form);
    details.appendChild(shown);
    return details;
  }

  // ------------------------------------------------------------ the page

  function load() {
    return api('GET', '/api/v1/sites').then(function (data) {
      var root = $('sites');
      root.textContent = '';
      (data.sites || []).forEach(function (s) { root.appendChild(siteCard(s)); });
      $('no-sites').hidden = (data.sites || []).length > 0;
    });
  }

  function start() {
    window.addEventListener('unhandledrejection', function (ev) {
      if (ev.reason && ev.reason.shown) ev.preventDefault();
    });
    api('GET', '/api/v1/session').then(function (session) {
      me = session;
      $('who').textContent = session.email + ' (' + session.role + ')';
      $('collector-note').hidden = session.collects || !!session.events_url;
      if (session.role === 'admin') showUnregistered();
      $('add-panel').hidden = session.role !== 'admin';
      $('welcome').hidden = new URLSearchParams(location.search).get('welcome') !== '1';
      load();
    });
    $('logout').addEventListener('click', function () {
      fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': me ? me.csrf : '' }, credentials: 'same-origin' })
        .then(function () { location.href = '/login'; });
    });
    $('add-site').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var id = $('new-site').value.trim();
      var body = { site_id: id };
      if ($('new-tz').value.trim()) body.timezone = $('new-tz').value.trim();
      api('POST', '/api/v1/sites', body).then(function (site) {
        $('added').hidden = false;
        $('added-site').textContent = site.site_id;
        $('added-snippet').textContent = snippet(site.site_id);
        justAdded = site.site_id;
        $('new-site').value = '';
        load();
      });
    });
  }

  start();
})();
