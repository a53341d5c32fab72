-- Loads this plugin and nothing else, for tests and for trying it out:
--   MARGINALIA_PATH=/path/to/marginalia nvim --noplugin -u editors/neovim/tests/minimal_init.lua FILE
-- MARGINALIA_FORCE_START_CLIENT=1 takes the Neovim 0.7 path (vim.lsp.start_client) on newer ones.
local here = debug.getinfo(1, 'S').source:sub(2)
local plugin = vim.fn.fnamemodify(here, ':p:h:h')
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'
require('marginalia').setup({
  force_start_client = os.getenv('MARGINALIA_FORCE_START_CLIENT') == '1',
})
