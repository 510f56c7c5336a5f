-- moonwire.escape: HTML escaping and URL encoding, the one copy that
-- templates, routes, cookies, error pages and the test client share.
local escape = require "moonwire.escape"

describe("moonwire.escape", function()
  it("escapes the five HTML characters, and nothing else", function()
    assert.equal("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;",
      escape.html([[<a href="x">Tom & Jerry's</a>]]))
    assert.equal("caf\xc3\xa9 100%", escape.html("caf\xc3\xa9 100%"))
    assert.equal("", escape.html(nil))
    assert.equal("42", escape.html(42))
    assert.equal("false", escape.html(false))
  end)

  it("percent-encodes all but the unreserved characters", function()
    assert.equal("a%20b%2Fc%3F%26%3D%2B~-._", escape.url("a b/c?&=+~-._"))
    assert.equal("%E2%82%AC", escape.url("\xe2\x82\xac"))
    assert.equal("%00", escape.url("\0"))
    assert.equal("7", escape.url(7))
  end)

  it("decodes what it encodes, and leaves a '%' that starts no escape as it is", function()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    all = table.concat(all)
    assert.equal(all, escape.url_decode(escape.url(all)))
    assert.equal("100% sure %zz %4", escape.url_decode("100% sure %zz %4"))
    assert.equal("a+b", escape.url_decode("a+b"))
    assert.equal("a b+", escape.url_decode("a+b%2B", true))
  end)
end)
