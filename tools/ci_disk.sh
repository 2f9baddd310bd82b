#!/usr/bin/env bash
# Peak disk use of a command, e.g. all of CI in a clean clone (the number behind need_gb in .ci/run):
#   git clone -q . /tmp/ci-clone && tools/ci_disk.sh bash -c 'cd /tmp/ci-clone && CI=true bash .ci/run'
# Samples the file system's used space every 5 s (so it counts pip's cache and pytest's temp folders too, which
# a du of the clone would miss) and prints the peak above where it started. Other writers on the disk count too:
# run it on a quiet machine.
set -uo pipefail
used_mb() { df -P -BM "${DISK_OF:-.}" | awk 'NR == 2 { sub("M", "", $3); print $3 }'; }
base=$(used_mb)
"$@" &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  now=$(( $(used_mb) - base ))
  [ "$now" -gt "$peak" ] && peak=$now
  sleep 5
done
wait "$pid"
rc=$?
echo "ci_disk: peak $((peak / 1024)).$(( (peak % 1024) * 10 / 1024 )) GB above the start; exit $rc" >&2
exit "$rc"
