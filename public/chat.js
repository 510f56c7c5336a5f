// The chat page's client: the socket.io tutorial's chat with its homework
// done (nicknames, who is online, typing, private messages, history and
// retries). scripts/chat.lua lists every event the server sends and takes.
//
// io() (from /socket.io/socket.io.js) connects back to the server that sent
// the page. Text from other people always goes into the page through
// textContent, so HTML in a message or a nickname shows as text.
'use strict';

var TYPING_STOP_MS = 2000;   // no keystroke for this long: "stopped typing"
var TYPING_REPEAT_MS = 1500; // while typing, say so again this often
var TYPING_FADE_MS = 5000;   // someone's "is typing" goes away after this without news

var $ = function (id) { return document.getElementById(id); };
var messages = $('messages');
var form = $('form');
var input = $('input');
var recipient = $('recipient');
var nicknameForm = $('nickname-form');
var nicknameInput = $('nickname');
var nicknameError = $('nickname-error');

// ------------------------------------------------------------------ the socket

// The nickname survives a reload of this tab (sessionStorage is per tab).
var nickname = load('chat-nickname');

// auth is sent with every (re)connection:
//  - serverOffset: the id of the last message this page has; the server
//    sends the messages after it (all recent ones the first time, 0);
//  - nickname: once we have one, so that after a reconnection the server
//    knows who we are before the socket re-sends a message left unanswered.
// ackTimeout + retries: a message whose ack does not come is sent again
// (the server stores it once, thanks to its clientOffset).
var socket = io({
  auth: nickname ? { serverOffset: 0, nickname: nickname } : { serverOffset: 0 },
  ackTimeout: 10000,
  retries: 3,
});
window.socket = socket; // handy in the console (and the tests use it)

// Each message gets an id of our own, its clientOffset. The tutorial uses
// the socket id, but a message typed while disconnected has none yet, so
// this page makes up its own random prefix.
var pageKey = Math.random().toString(36).slice(2) + Date.now().toString(36);
var counter = 0;

// Message ids already on the page: a message is never shown twice, even when
// a reconnection replays some.
var shown = new Set();

function noteOffset(id) {
  if (typeof id === 'number' && id > socket.auth.serverOffset) socket.auth.serverOffset = id;
}

// ------------------------------------------------------------------ small helpers

function load(key) {
  try { return sessionStorage.getItem(key); } catch (e) { return null; }
}

function save(key, value) {
  try { sessionStorage.setItem(key, value); } catch (e) { /* private mode: not kept */ }
}

function el(tag, className, text) {
  var node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(at) {
  var date = new Date(at);
  if (isNaN(date)) return '';
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// Is the message list scrolled to (nearly) its end?
function atBottom() {
  return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
}

// Adds an item to the message list and keeps the newest in view, unless the
// reader scrolled up to read older ones (force: our own messages).
function append(li, force) {
  var follow = force || atBottom();
  messages.appendChild(li);
  if (follow) messages.scrollTop = messages.scrollHeight;
}

// ------------------------------------------------------------------ the message list

// Adds a message: { nickname, text, at, id, mine, to, from }. `to` and
// `from` make it a private one. Our own messages start as "sending…".
function addMessage(m) {
  var li = el('li', 'message');
  if (m.mine) li.classList.add('mine');
  if (m.to || m.from) li.classList.add('private');

  // Signed with the nickname: "ann", "ann · private to bob", "private from ann".
  var meta = el('div', 'message-meta');
  if (m.from) meta.appendChild(el('span', 'message-tag', 'private from'));
  meta.appendChild(el('strong', 'message-author', m.nickname));
  if (m.to) meta.appendChild(el('span', 'message-tag', 'private to ' + m.to));
  var time = el('time', 'message-time');
  meta.appendChild(time);
  if (m.mine) meta.appendChild(el('span', 'message-state', 'sending…'));
  li.appendChild(meta);
  li.appendChild(el('p', 'message-text', m.text));

  li.dataset.state = m.mine ? 'pending' : 'delivered';
  if (m.at) setTime(li, m.at);
  if (typeof m.id === 'number') {
    li.dataset.id = m.id;
    shown.add(m.id);
  }
  append(li, m.mine);
  return li;
}

function setTime(li, at) {
  var time = li.querySelector('time');
  time.dateTime = at;
  time.textContent = formatTime(at);
}

// Our message made it: the server stored it (id) or passed it on (private).
function markDelivered(li, answer) {
  if (typeof answer.id === 'number') {
    var twin = messages.querySelector('li[data-id="' + answer.id + '"]');
    if (twin && twin !== li) { li.remove(); return; } // already shown (a replay came first)
    li.dataset.id = answer.id;
    shown.add(answer.id);
    noteOffset(answer.id);
  }
  li.dataset.state = 'delivered';
  li.querySelector('.message-state').textContent = 'delivered';
  if (answer.at) setTime(li, answer.at);
}

function markFailed(li, why) {
  var follow = atBottom();
  li.dataset.state = 'failed';
  li.querySelector('.message-state').textContent = 'not sent';
  li.appendChild(el('p', 'error message-error', why));
  if (follow) messages.scrollTop = messages.scrollHeight;
}

// One of our messages still waiting for its ack, with this text. A message
// stored just before the connection dropped comes back in the replay before
// its (retried) ack: it is that one, not a new message.
function findPending(text) {
  var items = messages.querySelectorAll('li.mine[data-state="pending"]:not(.private)');
  for (var i = 0; i < items.length; i++) {
    if (items[i].querySelector('.message-text').textContent === text) return items[i];
  }
  return null;
}

function addNotice(text) {
  append(el('li', 'notice', text), false);
}

// ------------------------------------------------------------------ nickname

function showJoined() {
  $('nickname-label').textContent = 'Your new nickname';
  nicknameForm.querySelector('button').textContent = 'Change';
  $('me-name').textContent = nickname;
  $('me').hidden = false;
  nicknameForm.hidden = true;
  form.hidden = false;
}

// Asks the server for a nickname. Used by the form and after every
// (re)connection, when the socket id has changed.
function pickNickname(name, fromForm) {
  nicknameError.hidden = true;
  socket.emit('nickname', name, function (err, answer) {
    if (err || !answer || answer.error) {
      nicknameError.textContent = err ? 'The server did not answer. Try again.' : (answer && answer.error) || 'Refused.';
      nicknameError.hidden = false;
      nicknameForm.hidden = false;
      if (!err && !fromForm) { // a remembered nickname the server refuses: pick another
        nickname = null;
        delete socket.auth.nickname;
      }
      return;
    }
    var before = nickname;
    nickname = answer.nickname;
    socket.auth.nickname = nickname;
    save('chat-nickname', nickname);
    showJoined();
    showOnline(answer.online);
    if (fromForm) {
      if (before !== nickname) addNotice(before ? 'You are now ' + nickname + '.' : 'You joined as ' + nickname + '.');
      input.focus();
    }
  });
}

nicknameForm.addEventListener('submit', function (e) {
  e.preventDefault();
  pickNickname(nicknameInput.value, true);
});

// "Change" opens the nickname form (and closes it again).
$('change-nickname').addEventListener('click', function () {
  nicknameInput.value = nickname || '';
  nicknameError.hidden = true;
  nicknameForm.hidden = !nicknameForm.hidden;
  if (!nicknameForm.hidden) nicknameInput.focus();
});

if (nickname) nicknameInput.value = nickname;

// ------------------------------------------------------------------ who is online

var online = [];

function showOnline(names) {
  online = names;
  var list = $('online');
  list.replaceChildren();
  online.forEach(function (name) {
    var li = el('li');
    if (name === nickname) {
      li.appendChild(el('span', 'online-me', name + ' (you)'));
    } else {
      var button = el('button', 'online-name', name);
      button.type = 'button';
      button.title = 'Write to ' + name + ' alone';
      button.addEventListener('click', function () { pickRecipient(name); });
      li.appendChild(button);
    }
    list.appendChild(li);
  });
  $('online-count').textContent = String(online.length);
  updateRecipients();
}

// The "Send to" choices: everyone, or one person online. A chosen person
// who goes offline stays chosen (marked so): switching to "Everyone" on
// their own would make a private message public.
function updateRecipients() {
  var chosen = recipient.value;
  recipient.replaceChildren(new Option('Everyone', ''));
  online.forEach(function (name) {
    if (name !== nickname) recipient.appendChild(new Option(name, name));
  });
  if (chosen && online.indexOf(chosen) < 0) recipient.appendChild(new Option(chosen + ' (offline)', chosen));
  recipient.value = chosen;
  form.classList.toggle('is-private', recipient.value !== '');
}

function pickRecipient(name) {
  if (!Array.from(recipient.options).some(function (o) { return o.value === name; })) {
    recipient.appendChild(new Option(name, name));
  }
  recipient.value = name;
  form.classList.toggle('is-private', true);
  if (!form.hidden) input.focus();
}

recipient.addEventListener('change', function () {
  form.classList.toggle('is-private', recipient.value !== '');
});

// ------------------------------------------------------------------ typing

// Others: nickname → the timer that makes their "is typing" fade.
var typing = new Map();

function showTyping() {
  var names = Array.from(typing.keys());
  var text = '';
  if (names.length === 1) text = names[0] + ' is typing…';
  else if (names.length > 1) text = names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1] + ' are typing…';
  $('typing').textContent = text;
}

function stoppedTyping(name) {
  if (!typing.has(name)) return;
  clearTimeout(typing.get(name));
  typing.delete(name);
  showTyping();
}

// Us: 'typing' true while keys are pressed (at most every TYPING_REPEAT_MS),
// false after TYPING_STOP_MS without one, or when the message is sent.
// Volatile: a lost one does not matter, and it does not wait in the
// retry queue behind messages.
var lastTypingSent = 0;
var typingTimer = null;

function stopTyping() {
  clearTimeout(typingTimer);
  if (lastTypingSent) {
    socket.volatile.emit('typing', false);
    lastTypingSent = 0;
  }
}

input.addEventListener('input', function () {
  if (!nickname) return;
  if (input.value.trim() === '') return stopTyping();
  if (Date.now() - lastTypingSent > TYPING_REPEAT_MS) {
    socket.volatile.emit('typing', true);
    lastTypingSent = Date.now();
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_STOP_MS);
});

// ------------------------------------------------------------------ sending

function sendPublic(text) {
  var li = addMessage({ nickname: nickname, text: text, mine: true });
  var clientOffset = pageKey + '-' + counter++;
  socket.emit('chat message', text, clientOffset, function (err, answer) {
    if (err) return markFailed(li, 'The server did not answer.');
    if (!answer || answer.error) return markFailed(li, (answer && answer.error) || 'Refused.');
    markDelivered(li, answer);
  });
}

function sendPrivate(to, text) {
  var li = addMessage({ nickname: nickname, text: text, mine: true, to: to });
  socket.emit('private message', { to: to, text: text }, function (err, answer) {
    if (err) return markFailed(li, 'The server did not answer.');
    if (!answer || answer.error) return markFailed(li, (answer && answer.error) || 'Refused.');
    markDelivered(li, answer);
  });
}

form.addEventListener('submit', function (e) {
  e.preventDefault();
  var text = input.value.trim();
  if (!text || !nickname) return;
  input.value = '';
  stopTyping();
  if (recipient.value) sendPrivate(recipient.value, text);
  else sendPublic(text);
});

// ------------------------------------------------------------------ what the server sends

// A public message, live or from the history: (msg, serverOffset).
socket.on('chat message', function (msg, serverOffset) {
  if (!msg || typeof msg !== 'object') return;
  noteOffset(serverOffset);
  stoppedTyping(msg.nickname);
  if (shown.has(msg.id)) return;
  var pending = msg.nickname === nickname ? findPending(msg.text) : null;
  if (pending) markDelivered(pending, msg);
  else addMessage(msg);
});

socket.on('private message', function (pm) {
  if (!pm || typeof pm !== 'object') return;
  stoppedTyping(pm.from);
  addMessage({ nickname: pm.from, text: pm.text, at: pm.at, from: pm.from });
});

socket.on('user joined', function (who) {
  if (who && who.nickname !== nickname) addNotice(who.nickname + ' joined');
});

socket.on('user left', function (who) {
  if (!who) return;
  stoppedTyping(who.nickname);
  addNotice(who.nickname + ' left');
});

socket.on('online', showOnline);

socket.on('typing', function (news) {
  if (!news || typeof news.nickname !== 'string' || news.nickname === nickname) return;
  stoppedTyping(news.nickname);
  if (news.typing) {
    typing.set(news.nickname, setTimeout(function () { stoppedTyping(news.nickname); }, TYPING_FADE_MS));
    showTyping();
  }
});

// ------------------------------------------------------------------ the connection

var statusLine = $('status');

// Every (re)connection has a new socket id: say our nickname again. (The
// server already took it from auth; the answer brings the list of names.)
socket.on('connect', function () {
  statusLine.hidden = true;
  if (nickname) pickNickname(nickname, false);
});

socket.on('disconnect', function () {
  statusLine.textContent = 'Connection lost. Reconnecting…';
  statusLine.hidden = false;
});

socket.on('connect_error', function () {
  statusLine.textContent = 'Cannot reach the server. Retrying…';
  statusLine.hidden = false;
});
