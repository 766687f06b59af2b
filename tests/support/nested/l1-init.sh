#!/bin/busybox sh
# /init of the L1 guest (the "host" the agent runs on in the nested test).
#
# The initramfs holds busybox, the kernel modules in /kmod, the host's users and loader
# files in /etc, and /etc/nest/ written by tests/support/nested/l1.py:
#   modules   module names, in load order
#   shares    "<9p tag> <mount point> <mount options>" per line: the host's /usr
#             (read-only), this checkout and its virtualenv (read-only, same paths as on
#             the host), and the test's work directory (read-write)
#   channel   the command channel directory (inside the work directory)
# Then it serves the command channel until the test asks it to power off.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
hostname nest-l1
say() { echo "NEST-L1: $* (uptime $(cut -d' ' -f1 /proc/uptime))"; }
say "init started"

for m in $(cat /etc/nest/modules); do
    insmod "/kmod/$m.ko" || say "insmod $m FAILED"
done
while read -r tag dir opts; do
    mkdir -p "$dir"
    mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$opts" "$tag" "$dir" || say "mount $tag on $dir FAILED"
done < /etc/nest/shares
say "shares mounted"

CH=$(cat /etc/nest/channel)
exec /bin/sh /etc/nest/channel.sh "$CH"
