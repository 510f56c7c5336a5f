// The chat page's client: the socket.io tutorial's, as it is.
// io() (from /socket.io/socket.io.js) connects back to the server that sent
// the page. Every message typed in the form is sent to the server as a
// 'chat message' event; the server sends each one to everybody, so it shows
// up in every open chat page, this one included.

var socket = io();

var messages = document.getElementById('messages');
var form = document.getElementById('form');
var input = document.getElementById('input');

form.addEventListener('submit', function (e) {
  e.preventDefault();
  if (input.value) {
    socket.emit('chat message', input.value);
    input.value = '';
  }
});

socket.on('chat message', function (msg) {
  var item = document.createElement('li');
  item.textContent = msg;
  messages.appendChild(item);
  window.scrollTo(0, document.body.scrollHeight);
});
