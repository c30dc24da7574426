#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through executable_path; no browser download).
set -euo pipefail
# shellcheck source=deploy/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVICE_NAME=chromium

case "${1:-install}" in
  install)
    apt_install chromium fonts-dejavu-core
    /usr/bin/chromium --version >/dev/null 2>&1 || die "chromium is installed but does not run"
    log "$(/usr/bin/chromium --version 2>/dev/null)"
    ;;
  status)
    if [ -x /usr/bin/chromium ]; then /usr/bin/chromium --version; else echo "chromium: not installed"; exit 1; fi
    ;;
  *) die "usage: $0 {install|status}" ;;
esac
