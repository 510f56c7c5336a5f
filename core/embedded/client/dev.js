// moonwire's dev-mode helper, added to every HTML page in dev mode.
// It listens on a WebSocket for what changed on the server:
//   reload  views/ or public/ changed: the page reloads itself
//   css     only stylesheets changed: they are swapped without a reload
//   error   scripts/ failed to load: an overlay shows the error
//   ok      scripts/ loaded again: the overlay goes
// When the server restarts, the page reloads once it is back.
(function () {
  'use strict';
  var OVERLAY_ID = '__moonwire_overlay';
  var boot = null;

  function showError(message) {
    var box = document.getElementById(OVERLAY_ID);
    if (!box) {
      box = document.createElement('div');
      box.id = OVERLAY_ID;
      box.setAttribute('role', 'alert');
      box.style.cssText = 'position:fixed;inset:0;z-index:2147483647;overflow:auto;padding:2rem;' +
        'background:#15151c;color:#fff;font:14px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace';
      var title = document.createElement('div');
      title.style.cssText = 'color:#ff8a80;font-weight:700;font-size:16px;margin-bottom:1rem';
      title.textContent = 'moonwire: the app failed to reload. The previous version is still running.';
      var pre = document.createElement('pre');
      pre.style.cssText = 'white-space:pre-wrap;margin:0';
      var hint = document.createElement('div');
      hint.style.cssText = 'margin-top:1rem;color:#bbb';
      hint.textContent = 'Fix the file and save: this goes away by itself.';
      box.appendChild(title);
      box.appendChild(pre);
      box.appendChild(hint);
      (document.body || document.documentElement).appendChild(box);
    }
    box.querySelector('pre').textContent = message;
  }

  function hideError() {
    var box = document.getElementById(OVERLAY_ID);
    if (box) box.remove();
  }

  function swapStyles() {
    var links = document.querySelectorAll('link[rel="stylesheet"]');
    for (var i = 0; i < links.length; i++) {
      var url = new URL(links[i].href, location.href);
      if (url.origin !== location.origin) continue;
      url.searchParams.set('__moonwire', Date.now());
      links[i].href = url.pathname + url.search;
    }
  }

  function connect(delay) {
    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var ws = new WebSocket(proto + '//' + location.host + '/__moonwire/live');
    ws.onmessage = function (e) {
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === 'ping') {
        ws.send('pong'); // the server closes pages that stop answering
      } else if (msg.type === 'hello') {
        if (boot !== null && msg.boot !== boot) return location.reload(); // the server restarted
        boot = msg.boot;
        window.__moonwire.connected = true;
        if (msg.error) {
          showError(msg.error);
        } else if (document.querySelector('meta[name="moonwire-load-error"]')) {
          return location.reload(); // fixed while this page was away
        } else {
          hideError();
        }
      } else if (msg.type === 'reload') {
        location.reload();
      } else if (msg.type === 'css') {
        swapStyles();
      } else if (msg.type === 'error') {
        showError(msg.message);
      } else if (msg.type === 'ok') {
        // The page shown is the "failed to load" page: fetch the real one.
        if (document.querySelector('meta[name="moonwire-load-error"]')) return location.reload();
        hideError();
      }
    };
    ws.onclose = function () {
      window.__moonwire.connected = false;
      setTimeout(function () { connect(Math.min(delay * 2, 5000)); }, delay);
    };
  }

  window.__moonwire = { connected: false, showError: showError, hideError: hideError };
  connect(500);
})();
