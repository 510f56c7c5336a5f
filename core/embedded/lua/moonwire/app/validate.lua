-- moonwire.app.validate: checks submitted fields against rules and returns
-- messages by field, for a view to show next to each input (as
-- express-validator's validationResult or lapis.validate).
--
--   local errors = app.validate(req.form, {
--     name    = { required = true, max = 40 },
--     species = { required = true, one_of = { "cat", "dog" } },
--     age     = { number = true, min = 0, max = 50 },
--     email   = { pattern = "^[^@%s]+@[^@%s]+$", message = "Enter an e-mail address." },
--     code    = { custom = function(value, values) if value ~= "42" then return "Wrong code." end end },
--   })
--   if errors then return res:status(422):render("form", { errors = errors, values = req.form }) end
--
-- Returns nil when every field passes, else { field = "message", ... }
-- with the first broken rule's message for each field. Strings are checked
-- with surrounding spaces trimmed; a field that is empty (or missing) and
-- not required passes without the other rules. Rules:
--   required  true: the field must be there and not empty
--   min, max  length in characters (UTF-8); with number/integer, the value
--   number    a decimal number ("12", "-3.5");  integer: a whole number
--   one_of    a list of the values allowed
--   pattern   a Lua pattern the value must match (anchor it with ^ and $)
--   custom    function(value, values): nil or true passes; false or a
--             message (a string) fails
--   label     the field's name in messages (default: "pet_name" → "Pet name")
--   message   one message for whichever rule fails
--   messages  a message per rule: { required = "...", one_of = "..." }
--             (also single: a list where one value was expected; text:
--             bytes that are not UTF-8)
local M = {}

local RULES = {
  required = true, min = true, max = true, number = true, integer = true, one_of = true, pattern = true,
  custom = true, label = true, message = true, messages = true,
}

local function label_of(field, rule)
  if rule.label then return rule.label end
  local s = tostring(field):gsub("_", " ")
  return (s:gsub("^%l", string.upper))
end

local function trim(s) return (s:match("^%s*(.-)%s*$")) end

-- The message for one field, or nil when it passes.
local function check_field(field, value, rule, values)
  local label = label_of(field, rule)
  if type(value) == "string" then value = trim(value) end
  if value == nil or value == "" then
    if rule.required then return label .. " is required.", "required" end
    return nil
  end
  if type(value) == "table" then return label .. " must be a single value.", "single" end
  if type(value) == "boolean" then value = tostring(value) end
  local numeric = rule.number or rule.integer
  local n
  if numeric then
    if type(value) == "number" then
      n = value
    elseif value:match("^[+-]?%d+%.?%d*$") or value:match("^[+-]?%.%d+$") then
      n = tonumber(value)
    end
    if n == nil or n ~= n then return label .. " must be a number.", rule.integer and "integer" or "number" end
    if rule.integer and math.type(n) ~= "integer" and n ~= math.floor(n) then return label .. " must be a whole number.", "integer" end
    if rule.min and n < rule.min then return label .. " must be at least " .. rule.min .. ".", "min" end
    if rule.max and n > rule.max then return label .. " must be at most " .. rule.max .. ".", "max" end
  else
    if type(value) ~= "string" then value = tostring(value) end
    local len = utf8.len(value)
    if not len then return label .. " must be plain text.", "text" end
    if rule.min and len < rule.min then
      return label .. " must be at least " .. rule.min .. (rule.min == 1 and " character." or " characters."), "min"
    end
    if rule.max and len > rule.max then
      return label .. " must be at most " .. rule.max .. (rule.max == 1 and " character." or " characters."), "max"
    end
  end
  if rule.one_of then
    local found = false
    for _, allowed in ipairs(rule.one_of) do
      if allowed == value or tostring(allowed) == tostring(value) then found = true break end
    end
    if not found then return label .. " must be one of: " .. table.concat(rule.one_of, ", ") .. ".", "one_of" end
  end
  if rule.pattern and not tostring(value):find(rule.pattern) then return label .. " is not in the expected form.", "pattern" end
  if rule.custom then
    local ok = rule.custom(n or value, values)
    if ok == false then return label .. " is not valid.", "custom" end
    if type(ok) == "string" then return ok, "custom" end
  end
  return nil
end

-- check(values, rules) → nil, or { field = "message" }. Raises on misuse
-- (rules that are not a table, an unknown rule name).
function M.check(values, rules)
  if values == nil then values = {} end
  assert(type(values) == "table", "app.validate: values must be a table (req.form, req.json, req.query)")
  assert(type(rules) == "table", "app.validate: rules must be a table { field = { required = true, ... } }")
  local errors
  for field, rule in pairs(rules) do
    if type(rule) ~= "table" then error("app.validate: the rules of " .. tostring(field) .. " must be a table", 2) end
    for k in pairs(rule) do
      if not RULES[k] then error("app.validate: unknown rule " .. string.format("%q", tostring(k)) .. " for " .. tostring(field), 2) end
    end
    if rule.one_of ~= nil and type(rule.one_of) ~= "table" then error("app.validate: one_of of " .. tostring(field) .. " must be a list", 2) end
    if rule.custom ~= nil and type(rule.custom) ~= "function" then error("app.validate: custom of " .. tostring(field) .. " must be a function", 2) end
    local msg, which = check_field(field, values[field], rule, values)
    if msg then
      errors = errors or {}
      errors[field] = rule.messages and rule.messages[which] or rule.message or msg
    end
  end
  return errors
end

return M
