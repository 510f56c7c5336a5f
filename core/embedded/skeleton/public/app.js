// The page's realtime half: say hello, and see everyone else's.
const socket = io();
const log = document.getElementById('log');

function show(text) {
  const li = document.createElement('li');
  li.textContent = text;
  log.prepend(li);
}

document.getElementById('hello').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = document.getElementById('name').value.trim();
  socket.emit('hello', name, (answer) => show(answer.greeting || answer.error));
});

socket.on('hello', (name) => show(`${name} says hello`));
