-- moonwire.runner: the coroutines every handler runs in. Routes, socket
-- event handlers, middlewares and app timers are run by run/call here, each
-- in a coroutine taken from a pool, so that a handler can wait (for an ack,
-- a timer, a handshake, an SQL statement) without holding the loop: wait()
-- suspends it, resume(co, ...) wakes it, waiter() makes a one-shot pair.
--
-- C finds these functions in package.loaded["moonwire.runner"] (lrunner.c):
-- the timers (call), the database binding (current, wait, resume) and
-- allowRequest (run).
local core = require "moonwire.core"

local M = {}

-- Every handler (route, socket event, timer) runs in a coroutine taken from
-- a pool, so that it can wait for an ack, a timer or a handshake without
-- blocking the loop: M.wait() suspends it and M.resume(co, ...) wakes it.
local pool = {}
local DONE, WAIT = {}, {}
local PENDING = setmetatable({}, { __name = "moonwire.pending", __tostring = function() return "pending" end })
M.PENDING = PENDING
-- The pool's coroutines, and what to do when a suspended one finishes: a
-- label for the error log, or a function(ok, err). Weak keys: a handler whose
-- waker is gone (a socket that never acks) is collected with its coroutine.
local ours = setmetatable({}, { __mode = "k" })
local after = setmetatable({}, { __mode = "k" })

local function traceback(err)
  if type(err) ~= "string" then err = tostring(err) end
  return debug.traceback(err, 2)
end

-- A pooled coroutine's body: runs fn(...), yields the outcome, and takes the
-- next fn and arguments from the resume (a proper tail call, so the stack
-- never grows; no table or closure per call).
local function work(fn, ...)
  local ok, err = xpcall(fn, traceback, ...)
  return work(coroutine.yield(DONE, ok, err))
end

local function worker()
  return work(coroutine.yield())
end

local YIELDED = "handler yielded outside of an awaitable call (coroutine.yield in a handler?)"

-- Runs fn(...) in a pooled coroutine. Returns true, or false and the error
-- with its traceback; or PENDING and the coroutine when fn is waiting (see
-- M.after for what happens when it finishes).
local function run(fn, ...)
  local co = pool[#pool]
  if co then
    pool[#pool] = nil
  else
    co = coroutine.create(worker)
    coroutine.resume(co)
    ours[co] = true
  end
  local fine, tag, ok, err = coroutine.resume(co, fn, ...)
  if not fine then -- stopped by the handler budget (lcall.c): the coroutine is closed
    ours[co] = nil
    return false, tag
  end
  if tag == DONE then
    pool[#pool + 1] = co
    return ok, err
  end
  if tag == WAIT then return PENDING, co end
  -- A bare coroutine.yield: nothing would ever resume it.
  ours[co] = nil
  return false, YIELDED
end
M.run = run

-- What to do when the waiting handler co finishes: a label (errors are
-- logged under it) or a function(ok, err).
function M.after(co, what) after[co] = what end

local function finished(co, ok, err)
  pool[#pool + 1] = co
  local what = after[co]
  after[co] = nil
  if type(what) == "function" then
    local fine, e = pcall(what, ok, err)
    if not fine then core.log("error", "after a handler: " .. tostring(e)) end
  elseif not ok then
    core.log("error", (what or "handler") .. ": " .. tostring(err))
  end
end

-- Runs fn(...) like run, logging an error under what, now or when a waiting
-- handler finishes. Returns false when it failed at once.
function M.call(what, fn, ...)
  local ok, err = run(fn, ...)
  if ok == true then return true end
  if ok == PENDING then
    after[err] = what
    return true
  end
  core.log("error", what .. ": " .. tostring(err))
  return false
end

-- The running handler's coroutine, or nil outside of one (the main chunk of
-- a script, a coroutine of the app's own).
function M.current()
  local co, main = coroutine.running()
  if main or not ours[co] then return nil end
  return co
end

-- Suspends the running handler until M.resume(co, ...); returns those
-- values. what names the caller in the error raised outside of a handler.
function M.wait(what)
  if not M.current() then
    error((what or "waiting") .. " needs a moonwire handler (a route, a socket event handler or a timer); "
      .. "outside of one, use the callback form", 3)
  end
  return coroutine.yield(WAIT)
end

-- Wakes a handler suspended in wait with the values it returns.
function M.resume(co, ...)
  if coroutine.status(co) ~= "suspended" then return false end
  local fine, tag, ok, err = coroutine.resume(co, ...)
  if not fine then -- stopped by the handler budget (lcall.c): the coroutine is closed
    ours[co] = nil
    local what = after[co]
    after[co] = nil
    if type(what) == "function" then
      local done, e = pcall(what, false, tag)
      if not done then core.log("error", "after a handler: " .. tostring(e)) end
    else
      core.log("error", (what or "handler") .. ": " .. tostring(tag))
    end
  elseif tag == DONE then
    finished(co, ok, err)
  elseif tag ~= WAIT then -- a bare coroutine.yield: this one is abandoned
    ours[co] = nil
    local what = after[co]
    after[co] = nil
    if type(what) == "function" then pcall(what, false, YIELDED)
    else core.log("error", (what or "handler") .. ": " .. YIELDED) end
  end
  return true
end

-- A one-shot wake-up for the running handler: wake(...) may come before
-- wait() (an answer that arrives at once) or after it; wait() returns what
-- wake was given. The first wake counts. Raises outside of a handler.
function M.waiter(what)
  local co = M.current()
  if not co then
    error(what .. " needs a moonwire handler (a route, a socket event handler or a timer); "
      .. "outside of one, use the callback form", 3)
  end
  local woken, waiting, vals = false, false, nil
  local function wake(...)
    if woken then return end
    woken = true
    if waiting then return M.resume(co, ...) end
    vals = table.pack(...)
  end
  local function wait()
    if vals then return table.unpack(vals, 1, vals.n) end
    waiting = true
    return M.wait(what)
  end
  return wake, wait
end

return M
