-- The moonwire example app: a chat room and a small pet registry.
--
-- moonwire loads this file at start-up. Each feature lives in its own module
-- next to it in scripts/; requiring a module registers its routes.

require "chat"
require "pets"
