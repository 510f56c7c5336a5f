-- The live feed's items (scripts/feed.lua), and the index its tag pages use.
-- IF NOT EXISTS: a database made before migrations existed already has them.
CREATE TABLE IF NOT EXISTS feed_items (
  id         INTEGER PRIMARY KEY,
  text       TEXT NOT NULL,
  tag        TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS feed_items_by_tag ON feed_items (tag, id);
