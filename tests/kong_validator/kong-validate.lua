-- Validate filter configurations the way Kong 3.9 does: lua-resty-ljsonschema 1.2.0 (draft 4),
-- generate_validator(config_schema, {array_mt = false}), patterns through PCRE (Kong: ngx.re.find "jo").
--
-- usage: luajit kong-validate.lua META.json CONFIG.json...     (each CONFIG: one filter config object)
-- prints one line per input: "ok", "refused: <Kong's message>" or "crashed: <Lua error>"; exit 0 when
-- the schema itself is valid.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path

-- OpenResty's lua-cjson has extras that Debian's lacks; Kong passes array_mt = false, so no-ops do.
local cjson = require "cjson"
local function shim(c)
  c.decode_array_with_array_mt = c.decode_array_with_array_mt or function() end
  c.array_mt = c.array_mt or {}
  c.empty_array_mt = c.empty_array_mt or {}
  local new = c.new
  c.new = function() return shim(new()) end
  return c
end
shim(cjson)
local rex = require "rex_pcre2"
ngx = { re = { find = function(s, p) return rex.find(s, p) end } }  -- luacheck: ignore

local jsonschema = require "resty.ljsonschema"
local metaschema = require "resty.ljsonschema.metaschema"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local meta = cjson.decode(read(arg[1]))
local schema = meta.config_schema
if type(schema) ~= "table" then
  print("refused: " .. arg[1] .. " has no config_schema object")
  os.exit(1)
end
schema["$schema"] = metaschema.id          -- Kong forces draft 4
local ok, err = assert(jsonschema.generate_validator(metaschema, { array_mt = false }))(schema)
if not ok then
  print("refused: config_schema is not a valid draft-4 schema: " .. tostring(err))
  os.exit(1)
end
local validate = assert(jsonschema.generate_validator(schema, { name = "filter", array_mt = false }))
for i = 2, #arg do
  -- A Lua error inside the validator (a schema the library mishandles) is reported per config:
  -- in Kong it fails the configuration load instead of naming a field.
  local ran, good, why = pcall(validate, cjson.decode(read(arg[i])))
  if not ran then
    print(arg[i] .. ": crashed: " .. tostring(good):gsub("\n", " "))
  else
    print(arg[i] .. ": " .. (good and "ok" or ("refused: " .. tostring(why))))
  end
end
