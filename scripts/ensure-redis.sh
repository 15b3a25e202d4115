#!/usr/bin/env bash
# Make sure redis-server is there (the data service's production store; its tests start one on
# loopback). Install it with apt when run as root on Debian/Ubuntu, like ensure-java.sh does Java.
set -euo pipefail
if command -v redis-server >/dev/null; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "ensure-redis: installing redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "ensure-redis: no redis-server found. Install it (e.g. apt-get install redis-server, or brew install redis); the data service's tests need it." >&2
exit 1
