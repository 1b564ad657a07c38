#!/bin/busybox sh
# PID 1 of the KernelX lab VM (runs from the initramfs, as busybox).
#
# Mounts the host's root file system read-only over virtio-fs and an overlay on top whose upper
# layer is RAM, so the guest can write anywhere while the host stays untouched and no host path
# is hidden (the job's directory or the lab cache may live under /tmp). Then the kernel's own
# file systems (proc, sysfs, devtmpfs, tracefs, debugfs, bpffs) go over that, the job runs
# chrooted there and reports through virtio-serial ports, never through the console:
#   kx.control  one status line per event: "mounted", "started", "exit <code>", "error <why>"
#   kx.stdout   the job's standard output
#   kx.stderr   the job's standard error
# Kernel command line: kx.job=<host dir holding job.sh>, kx.image=<host dir where the kernel's
# image package is unpacked>; its boot/ and lib/modules/<release> are shown at /boot and
# /lib/modules/<release>, as on a host that installed the package.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for arg in $(cat /proc/cmdline); do
	case "$arg" in
	kx.job=*) job="${arg#kx.job=}" ;;
	kx.image=*) image="${arg#kx.image=}" ;;
	esac
done

port() {
	for p in /sys/class/virtio-ports/*; do
		if [ "$(cat "$p/name")" = "$1" ]; then
			echo "/dev/${p##*/}"
			return 0
		fi
	done
	echo /dev/null
}

exec 3>"$(port kx.control)"
stop() {
	sync
	poweroff -f
}
fail() {
	echo "error $*" >&3
	stop
}

mkdir -p /lower /rw /host
mount -t virtiofs -o ro hostroot /lower || fail "mounting the host root over virtio-fs"
insmod /overlay.ko || fail "loading overlay.ko"
mount -t tmpfs tmpfs /rw || fail "mounting the overlay's upper layer"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /host ||
	fail "mounting the overlay over the host root"
mount -t proc proc /host/proc || fail "mounting /proc"
mount -t sysfs sysfs /host/sys || fail "mounting /sys"
mount -t devtmpfs devtmpfs /host/dev || fail "mounting /dev"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t tracefs tracefs /host/sys/kernel/tracing || fail "mounting tracefs"
mount -t debugfs debugfs /host/sys/kernel/debug || fail "mounting debugfs"
mount -t bpf bpf /host/sys/fs/bpf || fail "mounting bpffs"
release="$(uname -r)"
[ -d "/host$image/boot" ] || fail "no unpacked image at $image"
mount --bind "/host$image/boot" /host/boot || fail "binding the image's /boot"
if [ -d "/host/lib/modules/$release" ]; then
	mount --bind "/host$image/lib/modules/$release" "/host/lib/modules/$release" ||
		fail "binding the image's modules"
fi
echo mounted >&3

[ -f "/host$job/job.sh" ] || fail "no job script at $job/job.sh"
echo started >&3
chroot /host /bin/sh "$job/job.sh" </dev/null >"$(port kx.stdout)" 2>"$(port kx.stderr)"
echo "exit $?" >&3
stop
