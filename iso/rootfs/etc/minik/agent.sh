#!/bin/sh
# Runs the agent from the payload (/run/minik/agent/cmdline: one argument a
# line, "@IP@" replaced by eth0's address), logging to the serial console and
# /var/lib/minik/agent.log. busybox init respawns it when it exits.
A=/run/minik/agent
cd "$A" || exit 1
[ -e /run/minik/stopping ] && exec sleep 3600
i=0
while [ ! -e /run/minik/net-done ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
IP="$(ip -4 -o addr show dev eth0 2>/dev/null | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -1)"
[ -f "$A/env" ] && { set -a; . "$A/env"; set +a; }
set --
while IFS= read -r arg || [ -n "$arg" ]; do
    set -- "$@" "$(printf '%s\n' "$arg" | sed "s/@IP@/${IP:-127.0.0.1}/g")"
done <"$A/cmdline"
case "$1" in ./*) chmod +x "$1" ;; esac
echo "minik-init: starting agent: $*" >/dev/console
start=$(cut -d' ' -f1 /proc/uptime)
sh -c 'echo $$ >/run/minik/agent.pid; exec "$@"' agent "$@" 2>&1 | tee -a /var/lib/minik/agent.log >/dev/console
rm -f /run/minik/agent.pid
[ -e /run/minik/stopping ] && exec sleep 3600
echo "minik-init: agent exited (started at uptime $start); restarting in 2 s" >/dev/console
sleep 2
