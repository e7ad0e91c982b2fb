// The account activity page's live tail (/account/activity): new events of this account are added
// to the list as the server records them, read from the account's live stream
// (GET /api/v1/events, opened with this browser's session cookie). Nothing else on the dashboard
// needs this script; without it the page is the same, minus the live additions. Text is only ever
// set with textContent: an event's fields are data, never markup.
(function () {
  'use strict';
  var list = document.getElementById('events');
  var live = document.getElementById('live');
  var status = document.getElementById('live-status');
  if (!list || !live || !status || typeof window.EventSource !== 'function') return;

  var kind = live.getAttribute('data-kind') || '';
  var lastSeq = Number(list.getAttribute('data-last-seq')) || 0;
  var labels = {};
  var options = document.querySelectorAll('#kinds option');
  for (var i = 0; i < options.length; i++) labels[options[i].value] = options[i].label;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  // 2026-12-03 15:40:07 UTC, as the server writes it.
  function utc(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + ' UTC';
  }

  function short(value) {
    var text = typeof value === 'string' ? value : JSON.stringify(value);
    return text.length > 200 ? text.slice(0, 200) + '…' : text;
  }

  function by(e) {
    var actor = e.actor || {};
    if (actor.client_id === 'cli_personal_access_token') return 'a personal access token';
    if (actor.client_id) return 'app ' + actor.client_id;
    if (e.details && e.details.via === 'browser') return 'this site, in a browser';
    return '';
  }

  function item(e) {
    var li = el('li', 'event');
    li.setAttribute('data-seq', String(e.seq));
    var head = el('p', 'event-head');
    var time = el('time', '', utc(e.at_ms));
    time.setAttribute('datetime', new Date(e.at_ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
    head.appendChild(time);
    head.appendChild(document.createTextNode(' '));
    head.appendChild(el('span', 'event-label', labels[e.kind] || e.kind));
    head.appendChild(document.createTextNode(' '));
    head.appendChild(el('span', 'badge outcome-' + e.outcome, e.outcome));
    li.appendChild(head);
    var meta = el('p', 'event-meta');
    meta.appendChild(el('code', '', e.kind));
    var who = by(e);
    var rest = (who ? ' · by ' + who : '') + (e.target ? ' · ' + short(e.target) : '') + (e.ip ? ' · from ' + e.ip : '');
    meta.appendChild(document.createTextNode(rest));
    li.appendChild(meta);
    var keys = Object.keys(e.details || {}).filter(function (k) { return k !== 'via'; }).slice(0, 12);
    if (keys.length) {
      var dl = el('dl', 'event-details');
      keys.forEach(function (k) {
        var row = el('div');
        row.appendChild(el('dt', '', k));
        row.appendChild(el('dd', '', short(e.details[k])));
        dl.appendChild(row);
      });
      li.appendChild(dl);
    }
    return li;
  }

  var source = new EventSource('/api/v1/events');
  source.addEventListener('open', function () {
    status.textContent = 'Live: new events are added to the list as they happen.';
  });
  source.addEventListener('audit', function (message) {
    var e;
    try {
      e = JSON.parse(message.data);
    } catch (err) {
      return;
    }
    if (!e || typeof e.seq !== 'number' || e.seq <= lastSeq) return;
    if (kind && e.kind !== kind) return;
    lastSeq = e.seq;
    var empty = document.getElementById('events-empty');
    if (empty) empty.remove();
    list.appendChild(item(e));
  });
  source.addEventListener('closed', function () {
    source.close();
    status.textContent = 'Live updates stopped: this browser was signed out. Sign in again to see new events.';
  });
  source.addEventListener('error', function () {
    if (source.readyState === EventSource.CLOSED) {
      status.textContent = 'Live updates stopped. Reload the page to see new events.';
    }
  });
})();
