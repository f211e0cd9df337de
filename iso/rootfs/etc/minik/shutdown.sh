#!/bin/sh
# busybox init's ::shutdown: action (poweroff, ACPI power button, ctrl-alt-del):
# SIGTERM the agent and wait for it (up to 30 s), stop dropbear, sync and
# unmount the data disk. init then kills the rest and powers off.
say() { echo "minik-init: $*" >/dev/console; }
: >/run/minik/stopping
if [ -s /run/minik/agent.pid ]; then
    pid=$(cat /run/minik/agent.pid)
    say "stopping agent (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$pid" 2>/dev/null; then say "agent did not exit in 30 s; killing it"; kill -KILL "$pid"; fi
fi
[ -s /run/dropbear.pid ] && kill -TERM "$(cat /run/dropbear.pid)" 2>/dev/null
sync
umount /var/lib/minik 2>/dev/null || mount -o remount,ro /var/lib/minik 2>/dev/null
sync
say "stopped; powering off"
