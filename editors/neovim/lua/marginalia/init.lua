--- marginalia for Neovim: a thin client of `marginalia lsp`.
---
--- Starts the language server for buffers inside git repositories, shows each codemark as a
--- sign and a line of virtual text, and redraws them whenever the server sends
--- `marginalia/didChangeCodemarks`. Where a codemark is comes from the server alone (it tracks
--- every edit); nothing here computes positions. Works with Neovim 0.7 and later:
--- `vim.lsp.start` where it exists (0.8+), else `vim.lsp.start_client` + `buf_attach_client`.

local M = {}

local KINDS = { comment = true, question = true, issue = true, bookmark = true }

local defaults = {
  -- The command that starts the server; nil means { path, 'lsp' }.
  cmd = nil,
  -- The marginalia binary: a name on PATH or a full path. $MARGINALIA_PATH wins when set.
  path = 'marginalia',
  -- Extra environment for the server, e.g. { MARGINALIA_DATA_DIR = '/tmp/store' }.
  cmd_env = nil,
  -- Sent as initializationOptions (and so to the server's settings).
  settings = { diagnostics = false },
  signs = true,
  virtual_text = true,
  -- Also show the server's code lenses (refreshed with the codemarks).
  codelens = false,
  sign_text = { comment = '>', question = '?', issue = '!', bookmark = '*' },
  -- Called as on_attach(client, bufnr) after the server is attached to a buffer.
  on_attach = nil,
  -- Use vim.lsp.start_client even where vim.lsp.start exists (the Neovim 0.7 path).
  force_start_client = false,
}

local config = vim.deepcopy(defaults)

M.namespace = vim.api.nvim_create_namespace('marginalia')

-- Per buffer: the codemarks last received, how many answers were drawn, the newest request.
local marks, drawn, asked, applied, due = {}, {}, {}, {}, {}
-- Per repository root: the client started for it (the Neovim 0.7 path keeps its own table).
local clients_by_root = {}
local warned_missing = false

local function notify(msg, level)
  vim.notify('marginalia: ' .. msg, level or vim.log.levels.INFO)
end

local function is_nil(v)
  return v == nil or v == vim.NIL
end

-- The repository a file belongs to: the nearest folder upwards with a `.git` (folder or file).
function M.find_root(fname)
  if fname == '' then
    return nil
  end
  local dir = vim.fn.fnamemodify(fname, ':p:h')
  while dir and dir ~= '' do
    if (vim.uv or vim.loop).fs_stat(dir .. '/.git') then
      return dir
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return nil
    end
    dir = parent
  end
  return nil
end

local function server_cmd()
  if config.cmd then
    return config.cmd
  end
  local path = vim.env.MARGINALIA_PATH
  if is_nil(path) or path == '' then
    path = config.path
  end
  return { path, 'lsp' }
end

-- The marginalia client attached to a buffer, if any.
function M.client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local list
  if vim.lsp.get_clients then
    list = vim.lsp.get_clients({ bufnr = bufnr, name = 'marginalia' })
  else
    list = vim.lsp.buf_get_clients(bufnr)
  end
  for _, c in pairs(list) do
    if c.name == 'marginalia' then
      return c
    end
  end
  return nil
end

-- client:request on 0.11+, client.request before (the method became a colon method).
local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function bufnr_of_uri(uri)
  local ok, fname = pcall(vim.uri_to_fname, uri)
  if not ok then
    return nil
  end
  fname = vim.fn.fnamemodify(fname, ':p')
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) and vim.fn.fnamemodify(vim.api.nvim_buf_get_name(b), ':p') == fname then
      return b
    end
  end
  return nil
end

--- "question: Why cache here? · 2 comments · open", as the server's lenses say it.
function M.describe(c)
  local head = (not is_nil(c.title) and vim.trim(c.title) ~= '') and c.title or (vim.split(c.body or '', '\n')[1] or '')
  head = vim.trim(head)
  if vim.fn.strchars(head) > 60 then
    head = vim.fn.strcharpart(head, 0, 59) .. '…'
  end
  local n = 1 + #(c.replies or {})
  local prefix = ''
  if c.anchorStatus == 'deleted' then
    prefix = 'code deleted · '
  elseif c.anchorStatus == 'modified' then
    prefix = 'code changed · '
  end
  return string.format('%s%s: %s · %d comment%s · %s', prefix, c.kind, head, n, n == 1 and '' or 's', c.status)
end

M.sign_group = 'marginalia'

local function sign_name(c)
  local kind = config.sign_text[c.kind] and c.kind or 'comment'
  return 'Marginalia' .. kind:sub(1, 1):upper() .. kind:sub(2) .. (c.status == 'resolved' and 'Resolved' or '')
end

local function define_signs()
  for kind, text in pairs(config.sign_text) do
    local base = 'Marginalia' .. kind:sub(1, 1):upper() .. kind:sub(2)
    vim.fn.sign_define(base, { text = text, texthl = 'DiagnosticSignInfo' })
    vim.fn.sign_define(base .. 'Resolved', { text = text, texthl = 'Comment' })
  end
end

-- Signs (classic signs, group "marginalia") and virtual text (extmarks) at each codemark's first
-- line, as the server placed it. Everything is redrawn from the server's answer.
local function draw(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  vim.fn.sign_unplace(M.sign_group, { buffer = bufnr })
  local last = vim.api.nvim_buf_line_count(bufnr) - 1
  for _, c in ipairs(marks[bufnr] or {}) do
    local line = math.min(math.max(c.range.start.line, 0), last)
    local resolved = c.status == 'resolved'
    if config.signs then
      vim.fn.sign_place(0, M.sign_group, sign_name(c), bufnr, { lnum = line + 1, priority = 8 })
    end
    if config.virtual_text then
      vim.api.nvim_buf_set_extmark(bufnr, M.namespace, line, 0, {
        virt_text = { { M.describe(c), resolved and 'Comment' or 'DiagnosticVirtualTextInfo' } },
        virt_text_pos = 'eol',
      })
    end
  end
  if config.codelens then
    pcall(vim.lsp.codelens.refresh)
  end
end

--- Asks the server for a buffer's codemarks and draws them. Answers to older requests that
--- arrive after newer ones are dropped.
function M.refresh(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client = M.client(bufnr)
  if not client then
    return
  end
  asked[bufnr] = (asked[bufnr] or 0) + 1
  local seq = asked[bufnr]
  local params = { textDocument = { uri = vim.uri_from_bufnr(bufnr) } }
  request(client, 'marginalia/codemarks', params, function(err, result)
    if err then
      notify(err.message or vim.inspect(err), vim.log.levels.WARN)
      return
    end
    if seq < (applied[bufnr] or 0) then
      return
    end
    applied[bufnr] = seq
    marks[bufnr] = (result and result.codemarks) or {}
    drawn[bufnr] = (drawn[bufnr] or 0) + 1
    draw(bufnr)
    vim.api.nvim_exec_autocmds('User', { pattern = 'MarginaliaRefreshed', modeline = false })
  end, bufnr)
end

-- A burst of notifications (typing) is one refresh.
local function refresh_soon(bufnr)
  if due[bufnr] then
    return
  end
  due[bufnr] = true
  vim.defer_fn(function()
    due[bufnr] = nil
    if vim.api.nvim_buf_is_valid(bufnr) then
      M.refresh(bufnr)
    end
  end, 20)
end

local function on_did_change_codemarks(_, result)
  local b = result and result.uri and bufnr_of_uri(result.uri)
  if b then
    refresh_soon(b)
  end
end

--- The codemarks of a buffer as last received from the server (the `marginalia/codemarks` shape).
function M.codemarks(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  return marks[bufnr] or {}
end

--- How many answers have been drawn for a buffer (tests wait on it).
function M.generation(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  return drawn[bufnr] or 0
end

local function lsp_config(root)
  return {
    name = 'marginalia',
    cmd = server_cmd(),
    cmd_env = config.cmd_env,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ':t') } },
    init_options = config.settings,
    settings = { marginalia = config.settings },
    handlers = { ['marginalia/didChangeCodemarks'] = on_did_change_codemarks },
    on_attach = function(client, bufnr)
      M.refresh(bufnr)
      if config.on_attach then
        config.on_attach(client, bufnr)
      end
    end,
  }
end

--- Starts (or reuses) the server for a buffer inside a git repository and attaches it.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if vim.bo[bufnr].buftype ~= '' or M.client(bufnr) then
    return
  end
  local root = M.find_root(vim.api.nvim_buf_get_name(bufnr))
  if not root then
    return
  end
  local cmd = server_cmd()
  if vim.fn.executable(cmd[1]) ~= 1 then
    if not warned_missing then
      warned_missing = true
      notify(
        string.format(
          "cannot run `%s`: install marginalia (cargo install --path . in its repository) or set path = '/full/path/to/marginalia' in setup()",
          cmd[1]
        ),
        vim.log.levels.ERROR
      )
    end
    return
  end
  if vim.lsp.start and not config.force_start_client then
    vim.api.nvim_buf_call(bufnr, function()
      vim.lsp.start(lsp_config(root), { bufnr = bufnr })
    end)
    return
  end
  -- Neovim 0.7: one client per repository, started once, attached to each of its buffers.
  local id = clients_by_root[root]
  local client = id and vim.lsp.get_client_by_id(id)
  if not client or client.is_stopped() then
    id = vim.lsp.start_client(lsp_config(root))
    if not id then
      notify('the language server did not start', vim.log.levels.ERROR)
      return
    end
    clients_by_root[root] = id
  end
  vim.lsp.buf_attach_client(bufnr, id)
end

-- Runs a server command; `done(result)` on success. Errors of known commands are already shown
-- by the server (window/showMessage); an unknown command is a server too old for the feature.
local function run(bufnr, command, arg, done)
  local client = M.client(bufnr)
  if not client then
    notify('no marginalia server for this buffer (is it inside a git repository?)', vim.log.levels.WARN)
    return
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = { arg } }, function(err, result)
    if err then
      local msg = err.message or vim.inspect(err)
      if msg:find('unknown command', 1, true) then
        notify(string.format('this marginalia server does not support %s yet', command), vim.log.levels.WARN)
      else
        vim.schedule(function()
          vim.api.nvim_echo({ { 'marginalia: ' .. msg, 'ErrorMsg' } }, true, {})
        end)
      end
      return
    end
    M.refresh(bufnr)
    if done then
      done(result)
    end
  end, bufnr)
end

--- Adds a codemark on lines l1..l2 (1-based, inclusive).
function M.add(bufnr, l1, l2, kind, body, title)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  -- Whole lines: from the start of the first to the start of the line after the last (a
  -- selection that ends at column 0 stops before that line).
  local arg = {
    uri = vim.uri_from_bufnr(bufnr),
    range = { start = { line = l1 - 1, character = 0 }, ['end'] = { line = l2, character = 0 } },
    kind = kind or 'comment',
    body = body,
  }
  if title and title ~= '' then
    arg.title = title
  end
  run(bufnr, 'marginalia.codemark.create', arg, function(c)
    notify(string.format('%s %s added on lines %d-%d', c.kind, c.id:sub(1, 13), l1, l2))
  end)
end

-- The codemarks on a line (0-based), innermost first.
local function at_line(bufnr, line)
  local found = {}
  for _, c in ipairs(marks[bufnr] or {}) do
    local s, e = c.range.start.line, c.range['end'].line
    if c.range['end'].character == 0 and e > s then
      e = e - 1
    end
    if s <= line and line <= e then
      table.insert(found, c)
    end
  end
  table.sort(found, function(a, b)
    return (a.range['end'].line - a.range.start.line) < (b.range['end'].line - b.range.start.line)
  end)
  return found
end

-- Calls `f(codemark)` for the codemark under the cursor, asking which one when there are several.
local function with_codemark(f)
  local bufnr = vim.api.nvim_get_current_buf()
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  local found = at_line(bufnr, line)
  if #found == 0 then
    notify('no codemark on this line (:MarginaliaList lists them)', vim.log.levels.WARN)
  elseif #found == 1 then
    f(found[1], bufnr)
  else
    vim.ui.select(found, { prompt = 'Which codemark?', format_item = M.describe }, function(c)
      if c then
        f(c, bufnr)
      end
    end)
  end
end

-- `body` from the command line, else asked for.
local function with_text(args, prompt, f)
  if args ~= '' then
    f(args)
    return
  end
  vim.ui.input({ prompt = prompt }, function(text)
    if text and vim.trim(text) ~= '' then
      f(text)
    end
  end)
end

--- The thread as Markdown lines.
function M.thread_lines(c)
  local lines = { string.format('**%s** · %s · %s', c.kind, c.status, c.author) }
  if not is_nil(c.title) and c.title ~= '' then
    vim.list_extend(lines, { '', '### ' .. c.title })
  end
  table.insert(lines, '')
  vim.list_extend(lines, vim.split(c.body or '', '\n'))
  for _, r in ipairs(c.replies or {}) do
    vim.list_extend(lines, { '', '---', '', string.format('**%s** · %s', r.author, (r.created or ''):sub(1, 10)), '' })
    vim.list_extend(lines, vim.split(r.body or '', '\n'))
  end
  return lines
end

local function list(bufnr)
  local items = {}
  for _, c in ipairs(marks[bufnr] or {}) do
    table.insert(items, {
      bufnr = bufnr,
      lnum = c.range.start.line + 1,
      col = 1,
      text = M.describe(c),
      type = c.status == 'resolved' and 'N' or 'I',
    })
  end
  vim.fn.setloclist(0, {}, ' ', { title = 'marginalia codemarks', items = items })
  if #items == 0 then
    notify('no codemarks in this buffer')
  else
    vim.cmd('lopen')
  end
end

local function define_commands()
  local cmd = vim.api.nvim_create_user_command
  cmd('MarginaliaAdd', function(o)
    local kind, rest = o.args:match('^(%a+)%s*(.*)$')
    if not (kind and KINDS[kind]) then
      kind, rest = 'comment', o.args
    end
    local bufnr = vim.api.nvim_get_current_buf()
    if kind == 'bookmark' and rest == '' then
      M.add(bufnr, o.line1, o.line2, kind, '')
      return
    end
    with_text(rest, kind .. ': ', function(body)
      M.add(bufnr, o.line1, o.line2, kind, body)
    end)
  end, { range = true, nargs = '*', desc = 'marginalia: add a codemark on the lines: [comment|question|issue|bookmark] text' })
  cmd('MarginaliaList', function()
    list(vim.api.nvim_get_current_buf())
  end, { desc = "marginalia: this buffer's codemarks in the location list" })
  cmd('MarginaliaShow', function()
    with_codemark(function(c)
      vim.lsp.util.open_floating_preview(M.thread_lines(c), 'markdown', { border = 'rounded', max_width = 80 })
    end)
  end, { desc = 'marginalia: show the thread of the codemark under the cursor' })
  cmd('MarginaliaReply', function(o)
    with_codemark(function(c, bufnr)
      with_text(o.args, 'reply: ', function(body)
        run(bufnr, 'marginalia.codemark.reply', { id = c.id, body = body })
      end)
    end)
  end, { nargs = '*', desc = 'marginalia: reply to the codemark under the cursor' })
  cmd('MarginaliaEdit', function(o)
    with_codemark(function(c, bufnr)
      with_text(o.args, 'new text: ', function(body)
        run(bufnr, 'marginalia.codemark.edit', { id = c.id, body = body })
      end)
    end)
  end, { nargs = '*', desc = 'marginalia: replace the text of the codemark under the cursor' })
  for name, command in pairs({
    MarginaliaResolve = 'marginalia.codemark.resolve',
    MarginaliaReopen = 'marginalia.codemark.reopen',
    MarginaliaDelete = 'marginalia.codemark.delete',
  }) do
    cmd(name, function()
      with_codemark(function(c, bufnr)
        run(bufnr, command, { id = c.id })
      end)
    end, { desc = 'marginalia: ' .. command:match('%.(%a+)$') .. ' the codemark under the cursor' })
  end
  cmd('MarginaliaRefresh', function()
    M.refresh(0)
  end, { desc = "marginalia: ask the server for this buffer's codemarks again" })
end

--- require('marginalia').setup{ path = 'marginalia', settings = { diagnostics = false }, ... }
function M.setup(opts)
  config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  define_signs()
  define_commands()
  local group = vim.api.nvim_create_augroup('marginalia', { clear = true })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = group,
    callback = function(a)
      M.attach(a.buf)
    end,
  })
  vim.api.nvim_create_autocmd('BufWipeout', {
    group = group,
    callback = function(a)
      marks[a.buf], drawn[a.buf], asked[a.buf], applied[a.buf], due[a.buf] = nil, nil, nil, nil, nil
    end,
  })
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) and vim.api.nvim_buf_get_name(b) ~= '' then
      M.attach(b)
    end
  end
end

return M
