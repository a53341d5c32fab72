-- The plugin against the real `marginalia lsp`, in headless Neovim (tests/neovim.rs runs it).
-- Reads MARGINALIA_TEST_FILE (a committed file of 30 distinct lines in a git repository),
-- MARGINALIA_PATH (the binary) and writes what it saw to MARGINALIA_TEST_RESULT as JSON; exits
-- non-zero on a failure. Every wait is for a condition, with a deadline; nothing sleeps blindly.
local marginalia = require('marginalia')
local file = assert(os.getenv('MARGINALIA_TEST_FILE'), 'MARGINALIA_TEST_FILE is not set')
local result_path = assert(os.getenv('MARGINALIA_TEST_RESULT'), 'MARGINALIA_TEST_RESULT is not set')
local bin = os.getenv('MARGINALIA_PATH') or 'marginalia'
local steps = {}

local function step(msg)
  table.insert(steps, msg)
end

local function finish(ok, err)
  local v = vim.version()
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.fn.json_encode({
    ok = ok,
    error = err,
    steps = steps,
    nvim = string.format('%d.%d.%d', v.major, v.minor, v.patch),
    start = vim.lsp.start and 'vim.lsp.start' or 'vim.lsp.start_client',
  }))
  f:close()
  vim.cmd(ok and 'qall!' or 'cquit!')
end

local function wait_for(what, cond)
  if not vim.wait(20000, cond, 10) then
    error('timed out after 20 s waiting for ' .. what, 0)
  end
end

local function check(cond, what, got)
  if not cond then
    error(what .. '; got ' .. vim.inspect(got), 0)
  end
end

-- The plugin's signs: { id, line (0-based), sign (its text), text (the virtual text there) }.
local function signs(buf)
  local texts = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, marginalia.namespace, 0, -1, { details = true })) do
    local vt = m[4].virt_text
    texts[m[2]] = vt and vt[1][1] or ''
  end
  local out = {}
  for _, placed in ipairs(vim.fn.sign_getplaced(buf, { group = marginalia.sign_group })) do
    for _, sg in ipairs(placed.signs) do
      local def = vim.fn.sign_getdefined(sg.name)[1] or {}
      table.insert(out, {
        id = sg.id,
        line = sg.lnum - 1,
        sign = vim.trim(def.text or ''),
        text = texts[sg.lnum - 1] or '',
      })
    end
  end
  table.sort(out, function(a, b)
    return a.line < b.line
  end)
  return out
end

local function find(buf, pred)
  for _, c in ipairs(marginalia.codemarks(buf)) do
    if pred(c) then
      return c
    end
  end
end

local ok, err = xpcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  wait_for('the server to attach and answer marginalia/codemarks', function()
    return marginalia.generation(buf) >= 1
  end)
  check(#marginalia.codemarks(buf) == 0, 'no codemarks at first', marginalia.codemarks(buf))
  step('attached with ' .. (vim.lsp.start and 'vim.lsp.start' or 'vim.lsp.start_client'))

  -- 1. A question on lines 5-6, through the plugin's command.
  vim.cmd('5,6MarginaliaAdd question Why these two lines?')
  wait_for('the new codemark', function()
    return #signs(buf) == 1 and #marginalia.codemarks(buf) == 1
  end)
  local s = signs(buf)
  check(s[1].line == 4 and s[1].sign == '?', 'the sign of a question on line 5', s)
  check(s[1].text:find('question: Why these two lines? · 1 comment · open', 1, true), 'its virtual text', s)
  step('added on line 5; sign on line 5')

  -- 2. Three lines typed above it (not saved): the server tracks the edit, says the codemarks
  -- changed, and the plugin redraws the sign where the server now places it. The test wipes the
  -- plugin's signs first, so the sign found afterwards was drawn again from the server's answer,
  -- not merely carried down by Neovim with the text.
  local before = marginalia.generation(buf)
  vim.fn.sign_unplace(marginalia.sign_group, { buffer = buf })
  vim.api.nvim_buf_clear_namespace(buf, marginalia.namespace, 0, -1)
  vim.api.nvim_buf_set_lines(buf, 0, 0, false, { '// a', '// b', '// c' })
  wait_for('the codemark to be redrawn on line 8', function()
    local c = marginalia.codemarks(buf)[1]
    local now = signs(buf)
    return marginalia.generation(buf) > before and c and c.range.start.line == 7 and #now == 1 and now[1].line == 7
  end)
  s = signs(buf)
  check(s[1].sign == '?' and s[1].text:find('question: Why these two lines?', 1, true), 'the same sign and text', s)
  local client = marginalia.client(buf)
  local params = { textDocument = { uri = vim.uri_from_bufnr(buf) } }
  local direct
  if vim.fn.has('nvim-0.11') == 1 then
    direct = client:request_sync('marginalia/codemarks', params, 10000, buf)
  else
    direct = client.request_sync('marginalia/codemarks', params, 10000, buf)
  end
  check(direct and direct.result and direct.result.codemarks[1].range.start.line == 7, 'the server itself says line 8', direct)
  step('three lines typed above; sign moved to line 8, as the server says')

  -- 3. Another process (the command line) adds a codemark on line 10 of the file on disk. The
  -- server notices the store changed, places it in the unsaved buffer (three lines down, on 13),
  -- and tells the plugin: a sign appears with no keystroke here.
  local root = marginalia.find_root(file)
  local out = vim.fn.system({ bin, 'codemark', 'add', '--repo', root, '--path', file:sub(#root + 2),
    '--lines', '10-10', '--kind', 'issue', '--body', 'Made from the command line' })
  check(vim.v.shell_error == 0, 'marginalia codemark add succeeds', out)
  wait_for('the command-line codemark on line 13', function()
    local c = find(buf, function(c)
      return c.kind == 'issue'
    end)
    return c and c.range.start.line == 12 and #signs(buf) == 2
  end)
  s = signs(buf)
  check(s[2].line == 12 and s[2].sign == '!', 'the issue sign on line 13 of the buffer', s)
  step('added from the command line on disk line 10; sign on buffer line 13')

  -- 4. Reply and resolve through the plugin's commands, with the cursor on the question.
  vim.api.nvim_win_set_cursor(0, { 9, 0 })
  vim.cmd('MarginaliaReply Because of the cache.')
  wait_for('the reply', function()
    local c = find(buf, function(c)
      return c.kind == 'question'
    end)
    return c and #c.replies == 1
  end)
  vim.cmd('MarginaliaResolve')
  wait_for('the question resolved and redrawn', function()
    local now = signs(buf)
    return now[1] and now[1].text:find('2 comments · resolved', 1, true) ~= nil
  end)
  step('replied and resolved; virtual text says "2 comments · resolved"')

  -- 5. The location list lists both where they are now.
  vim.cmd('MarginaliaList')
  local items = vim.fn.getloclist(0)
  check(#items == 2 and items[1].lnum == 8 and items[2].lnum == 13, 'the location list on lines 8 and 13', items)
  step(':MarginaliaList lists lines 8 and 13')
end, function(e)
  return debug.traceback(tostring(e), 2)
end)

finish(ok, not ok and err or nil)
