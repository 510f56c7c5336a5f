-- The chat's messages (scripts/chat.lua). Every public message is stored, so
-- that a page opened later (or a page that lost its connection for a while)
-- can catch up. client_offset is the id the browser gave the message:
-- UNIQUE, so a message sent twice (the browser retries when an answer is
-- slow to come) is stored once.
-- IF NOT EXISTS: a database made before migrations existed already has it.
CREATE TABLE IF NOT EXISTS messages (
  id            INTEGER PRIMARY KEY,
  client_offset TEXT UNIQUE,
  nickname      TEXT NOT NULL,
  text          TEXT NOT NULL,
  created_at    TEXT NOT NULL
);
