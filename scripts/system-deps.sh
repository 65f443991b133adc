#!/usr/bin/env bash
# Debian packages the tests and the demo use: Chromium (dashboard browser test), Mosquitto
# (MQTT broker), PostgreSQL (ERP context from a database) and Node.js with npm (the node-opcua
# test server). Installed with apt-get when missing and we are root; otherwise say what is
# missing and go on (those tests then skip and name the reason).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# Node.js and npm run the node-opcua test server (tests/nodeopcua; Debian's nodejs is 18.x)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "system-deps: missing ${need[*]}; install them (sudo apt-get install ${need[*]})" >&2
fi
