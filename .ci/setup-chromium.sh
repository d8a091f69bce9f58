#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests
# (server/ui/browser_test.go, cmd/streamd/dashboard_test.go).
# Idempotent: does nothing when /usr/bin/chromium already exists.
# Uses sudo only when not running as root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
	echo "setup-chromium: /usr/bin/chromium is installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
	exit 0
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version 2>/dev/null
