// The pet pages' client: keeps the list (/pets) and a pet's page (/pets/:id)
// up to date with what the server pushes on the "/pets" socket.io namespace.
// The pages are complete without it; this only keeps them current.
//
// Names come from users, so they go into the page with textContent, never
// innerHTML: a pet called <b>Rex</b> shows those characters as they are.

var STATUSES = ['eating', 'bathing', 'sleeping', 'playing'];

// "2024-05-01T09:30:00Z" → "2024-05-01 09:30:00 UTC", as the server writes it.
function utc(iso) {
  return String(iso).replace('T', ' ').replace(/Z$/, ' UTC');
}

// Shows a status in a badge: its text, and its colour through its class.
function setBadge(badge, status) {
  badge.textContent = status;
  badge.className = STATUSES.indexOf(status) >= 0 ? 'badge badge-' + status : 'badge';
}

// ---------------------------------------------------------------- the list

function followList(list) {
  var empty = document.getElementById('pets-empty');
  // No auth: the server puts this page in the room "index".
  var socket = io('/pets');

  function rowOf(id) {
    return list.querySelector('li[data-id="' + Number(id) + '"]');
  }

  // A row, built like the ones in views/pets/index.html.
  function makeRow(pet) {
    var row = document.createElement('li');
    row.dataset.id = pet.id;
    var name = document.createElement('a');
    name.className = 'pet-name';
    name.href = '/pets/' + pet.id;
    name.textContent = pet.name;
    var species = document.createElement('span');
    species.className = 'species';
    species.textContent = pet.species;
    var badge = document.createElement('span');
    setBadge(badge, pet.status);
    row.append(name, ' ', species, ' ', badge);
    return row;
  }

  // The list is sorted by id, as the server sorts it: a pet goes before the
  // first row with a larger id, or at the end.
  function putRow(pet) {
    var row = makeRow(pet);
    var old = rowOf(pet.id);
    if (old) {
      old.replaceWith(row);
    } else {
      var after = Array.prototype.find.call(list.children, function (li) {
        return Number(li.dataset.id) > pet.id;
      });
      list.insertBefore(row, after || null);
    }
    showEmptyWhenEmpty();
  }

  function showEmptyWhenEmpty() {
    var none = list.children.length === 0;
    list.hidden = none;
    empty.hidden = !none;
  }

  // Sent on every (re)connection: every pet as it is now.
  socket.on('pets', function (pets) {
    list.replaceChildren.apply(list, pets.map(makeRow));
    showEmptyWhenEmpty();
  });

  socket.on('pet added', putRow);
  socket.on('pet updated', putRow);

  socket.on('pet removed', function (gone) {
    var row = rowOf(gone.id);
    if (row) row.remove();
    showEmptyWhenEmpty();
  });

  socket.on('status', function (change) {
    var row = rowOf(change.id);
    if (row) setBadge(row.querySelector('.badge'), change.status);
  });
}

// ---------------------------------------------------------------- one pet

function followPet(article) {
  var id = Number(article.dataset.id);
  // auth.pet puts this page in the room of this pet ("pet:" + id).
  var socket = io('/pets', { auth: { pet: id } });

  var name = document.getElementById('pet-name');
  var species = document.getElementById('pet-species');
  var badge = document.getElementById('pet-status');
  var since = document.getElementById('pet-status-at');

  function showStatus(status, at) {
    setBadge(badge, status);
    since.dateTime = at;
    since.textContent = utc(at);
  }

  // The whole pet: sent on every (re)connection, and after an edit.
  function showPet(pet) {
    if (pet.id !== id) return;
    name.textContent = pet.name;
    document.title = pet.name + ' · moonwire';
    species.textContent = pet.species;
    showStatus(pet.status, pet.status_at);
  }

  socket.on('pet', showPet);
  socket.on('pet updated', showPet);

  socket.on('status', function (change) {
    if (change.id === id) showStatus(change.status, change.status_at);
  });

  // Removed (from another page, or the API): say so, and stop listening.
  socket.on('pet removed', function (gone) {
    if (gone.id !== id) return;
    document.getElementById('pet-gone').hidden = false;
    document.getElementById('pet-actions').hidden = true;
    article.classList.add('is-gone');
    socket.disconnect();
  });
}

// ---------------------------------------------------------------- start

var petList = document.getElementById('pets');
var petPage = document.getElementById('pet');
if (petList) followList(petList);
if (petPage) followPet(petPage);
