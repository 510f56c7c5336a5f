-- The moonwire example app: a chat room, a pet store whose pets change what
-- they are doing live, and a live feed anything can publish to.
--
-- moonwire loads this file at start-up. Each feature lives in its own module
-- next to it in scripts/; requiring a module registers its routes.

require "chat"
require "pets"
require "feed"
