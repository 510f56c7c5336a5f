// The live feed page's client. The page arrives with the latest items already
// in it (views/feed.html); this script:
//  - connects to the "/feed" namespace and puts each 'item' the server sends
//    in its place, newest at the top;
//  - filters by tag in place: the tag links work as plain links without
//    JavaScript, and here they show or hide items instead (new ones too) and
//    change the address, so a filtered view can still be shared;
//  - shows times in the reader's own time zone.
// Text from the feed goes into the page with textContent only: whatever a
// publisher sends is shown as text, never run as HTML.

var MAX_ITEMS = 500; // the oldest leave the page beyond this, so it stays light

var list = document.getElementById('feed-items');
var empty = document.getElementById('feed-empty');
var tagLinks = document.getElementById('feed-tags');
var statusBadge = document.getElementById('feed-status');

var filter = list.dataset.filter || ''; // the chosen tag; '' shows every item

// The id of the newest item on the page (0 when there is none).
function newestId() {
  var first = list.querySelector('.feed-item');
  return first ? Number(first.dataset.id) : 0;
}

// auth is sent with every connection, reconnections included: the server
// first sends what was published after our newest item, so nothing is missed
// between loading the page and connecting, or while the connection was down.
var socket = io('/feed', {
  auth: function (send) { send({ after: newestId() }); },
});

socket.on('connect', function () { showStatus('live', 'Live'); });
socket.on('disconnect', function () { showStatus('down', 'Reconnecting…'); });
socket.on('connect_error', function () { showStatus('down', 'Reconnecting…'); });
socket.on('item', addItem);

function showStatus(state, text) {
  statusBadge.dataset.state = state;
  statusBadge.textContent = text;
}

// ---------------------------------------------------------------- items

// "2024-05-01T09:30:00Z" in the reader's time zone and language.
function readable(iso) {
  var date = new Date(iso);
  if (isNaN(date)) return iso;
  return date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

// An item as the page shows it (the same markup as views/feed.html).
function render(item) {
  var li = document.createElement('li');
  li.className = 'feed-item feed-item-new';
  li.dataset.id = item.id;
  li.dataset.tag = item.tag || '';

  var text = document.createElement('p');
  text.className = 'feed-text';
  text.textContent = item.text;

  var meta = document.createElement('p');
  meta.className = 'feed-meta';
  if (item.tag) meta.appendChild(tagLink(item.tag, 'badge feed-tag'));
  var time = document.createElement('time');
  time.dateTime = item.created_at;
  time.textContent = readable(item.created_at);
  meta.appendChild(time);

  li.appendChild(text);
  li.appendChild(meta);
  return li;
}

// Puts an item in its place: items are ordered by id, newest first. One that
// is already on the page (sent again after a reconnection) is skipped.
function addItem(item) {
  if (!item || typeof item.id !== 'number') return;
  var before = null;
  for (var el = list.firstElementChild; el; el = el.nextElementSibling) {
    var id = Number(el.dataset.id);
    if (id === item.id) return;
    if (id < item.id) { before = el; break; }
  }
  var li = render(item);
  li.hidden = !shows(li);
  list.insertBefore(li, before);
  addTag(item.tag);

  while (list.children.length > MAX_ITEMS) list.removeChild(list.lastElementChild);
  updateEmpty();
}

// ---------------------------------------------------------------- filtering

function shows(li) {
  return filter === '' || li.dataset.tag === filter;
}

function tagLink(tag, className) {
  var a = document.createElement('a');
  a.href = '/feed?tag=' + encodeURIComponent(tag);
  a.dataset.filter = tag;
  a.textContent = '#' + tag;
  if (className) a.className = className;
  return a;
}

// Adds a link for a tag the filter bar does not have yet, in order.
function addTag(tag) {
  if (!tag) return;
  var before = null;
  var links = tagLinks.querySelectorAll('a[data-filter]');
  for (var i = 0; i < links.length; i++) {
    var other = links[i].dataset.filter;
    if (other === tag) return;
    if (other !== '' && other > tag && !before) before = links[i];
  }
  tagLinks.insertBefore(tagLink(tag), before);
}

function updateEmpty() {
  empty.hidden = list.querySelector('.feed-item:not([hidden])') !== null;
  empty.textContent = filter ? 'Nothing tagged #' + filter + ' yet.' : 'Nothing has been published yet.';
}

function setFilter(tag) {
  filter = tag;
  addTag(tag);
  var links = tagLinks.querySelectorAll('a[data-filter]');
  for (var i = 0; i < links.length; i++) {
    if (links[i].dataset.filter === filter) links[i].setAttribute('aria-current', 'true');
    else links[i].removeAttribute('aria-current');
  }
  var items = list.children;
  for (var j = 0; j < items.length; j++) items[j].hidden = !shows(items[j]);
  updateEmpty();
}

// The filter in an address: "?tag=%23News" means "news", as on the server.
function filterOf(search) {
  var tag = new URLSearchParams(search).get('tag') || '';
  return tag.trim().replace(/^#/, '').toLowerCase();
}

// Any filter link (the bar, or the tag on an item) filters in place. A click
// meant to open a new tab or window is left to the browser.
document.addEventListener('click', function (e) {
  var link = e.target.closest('a[data-filter]');
  if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  setFilter(link.dataset.filter);
  if (link.href !== location.href) history.pushState(null, '', link.href);
});

// Back and forward move between filters.
window.addEventListener('popstate', function () {
  setFilter(filterOf(location.search));
});

// The times the server wrote (in UTC) in the reader's own time zone.
var times = list.querySelectorAll('time');
for (var k = 0; k < times.length; k++) times[k].textContent = readable(times[k].dateTime);
