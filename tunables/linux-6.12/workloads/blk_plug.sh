#!/bin/sh
# Random 4 KiB direct writes to a null_blk device, submitted 64 at a time (fio, libaio), and
# how the block layer's plug cut them into dispatches: requests per plug flush (the nr_rq of
# the tracepoint block:block_unplug), the number of flushes, and the IOPS fio saw.
# BLK_MAX_REQUEST_COUNT caps the requests a plug holds before it flushes.
#
#   blk_plug.sh            one line for people
#   blk_plug.sh --effect   only the most common requests per flush (for `cargo xtask eval`)
set -eu
output=${1:-}
ios=${BLK_PLUG_IOS:-6400}
unplug=/sys/kernel/tracing/events/block/block_unplug
[ -b /dev/nullb0 ] || modprobe null_blk nr_devices=1 queue_mode=2 gb=1 irqmode=0
# A histogram of nr_rq per unplug, started empty for this run.
echo '!hist:keys=nr_rq' >"$unplug/trigger" 2>/dev/null || true
echo 'hist:keys=nr_rq' >"$unplug/trigger"
echo 1 >"$unplug/enable"
fio --name=plug --filename=/dev/nullb0 --direct=1 --rw=randwrite --bs=4k --size=256m \
	--ioengine=libaio --iodepth=64 --iodepth_batch_submit=64 \
	--iodepth_batch_complete_min=64 --number_ios="$ios" --output-format=json >/tmp/blk_plug.json
hist=$(cat "$unplug/hist")
echo 0 >"$unplug/enable"
echo '!hist:keys=nr_rq' >"$unplug/trigger"
# `{ nr_rq: 32 } hitcount: 200` lines -> the most common nr_rq and the number of unplugs.
set -- $(echo "$hist" | awk '/nr_rq:/ { h = $6; flushes += h; if (h > best) { best = h; mode = $3 } }
	END { print mode + 0, flushes + 0 }')
mode=$1 flushes=$2
if [ "$flushes" = 0 ]; then
	echo "blk_plug.sh: no block_unplug event was traced" >&2
	exit 1
fi
if [ "$output" = --effect ]; then
	echo "$mode"
	exit 0
fi
iops=$(python3 -c 'import json; print(round(json.load(open("/tmp/blk_plug.json"))["jobs"][0]["write"]["iops"]))')
echo "$ios random writes: $mode requests per plug flush ($flushes flushes), $iops IOPS"
