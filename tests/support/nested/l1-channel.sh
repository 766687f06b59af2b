#!/bin/busybox sh
# The L1 command channel: a directory shared with the test over 9p.
#
# The test writes <id>.timeout, then <id>.cmd (atomically, by rename). This loop runs each
# <id>.cmd in turn with the host's /usr/bin/sh (so `date` and friends are the host's, not
# busybox applets, which this busybox's own shell prefers), output in <id>.out, and writes the exit status to <id>.rc last
# (again by rename), so the test reads <id>.out only when it is complete. `<dir>/poweroff`
# ends the loop and powers L1 off.
CH=$1
say() { echo "NEST-L1: $* (uptime $(cut -d' ' -f1 /proc/uptime))"; }
say "channel ready at $CH"
: > "$CH/ready"
while [ ! -e "$CH/poweroff" ]; do
    for cmd in "$CH"/*.cmd; do
        [ -f "$cmd" ] || continue
        id=${cmd%.cmd}
        mv "$cmd" "$id.running" || continue
        limit=$(cat "$id.timeout" 2>/dev/null || echo 600)
        timeout "$limit" /usr/bin/sh "$id.running" > "$id.out" 2>&1 < /dev/null
        echo $? > "$id.rc.tmp"
        mv "$id.rc.tmp" "$id.rc"
    done
    sleep 0.2
done
say "powering off"
sync
poweroff -f
