#!/usr/bin/env bash
# Builds the admin console (web/: Vite, TypeScript and Vue 3) into web/dist,
# which `cloudpacs serve` serves at "/" (see [http] console_dir).
#
#   scripts/console.sh     install the pinned packages when needed, type
#                          check (vue-tsc) and build
#
# `npm ci` runs only when web/node_modules is missing or package-lock.json
# is newer than the last install; both web/node_modules and web/dist are
# ignored by git. The build writes only web/dist: web/viewer (the OHIF
# viewer, scripts/viewer.sh) is left alone. Needs Node.js 18 or newer and
# npm (scripts/deps.sh installs them when missing).
set -euo pipefail
cd "$(dirname "$0")/../web"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "console: $tool not found; run scripts/deps.sh" >&2
        exit 1
    fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if ((major < 18)); then
    echo "console: Node.js $(node --version) is too old; the build needs 18 or newer" >&2
    exit 1
fi

# npm writes node_modules/.package-lock.json at every install.
installed=node_modules/.package-lock.json
if [[ ! -f $installed || package-lock.json -nt $installed ]]; then
    echo "console: installing the build's packages (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error
fi

npm run --silent build
if [[ ! -f dist/index.html ]]; then
    echo "console: the build left no web/dist/index.html" >&2
    exit 1
fi
echo "console: built in web/dist" >&2
