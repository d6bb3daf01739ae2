#!/usr/bin/env bash
# cluster-tests/contract/setup.sh: installs the pinned linter
# (package-lock.json) into node_modules/ here with `npm ci`, once: a stamp
# holding the lock file's SHA-256 says the install matches the lock, so a
# second run does nothing. Exit 77 (skip) without node and npm.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: node and npm are needed for the linter" >&2
    exit 77
fi
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.ovha-lock.sha256
if [ -x node_modules/.bin/redocly ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >&2
printf '%s\n' "$want" >"$stamp"
