-- The pet store's pets (scripts/pets.lua). A pet starts asleep; status_at
-- says when its status last changed. AUTOINCREMENT: the id of a removed pet
-- is never given to a new one, so an old link (or a page left open) never
-- shows a different pet.
-- IF NOT EXISTS: a database made before migrations existed already has it.
CREATE TABLE IF NOT EXISTS pets (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL,
  species    TEXT NOT NULL,
  status     TEXT NOT NULL DEFAULT 'sleeping',
  status_at  TEXT,
  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
