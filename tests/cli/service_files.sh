#!/bin/sh
# service_files.sh NUDGE DEPLOY_DIR WORK_DIR: examples/deploy's unit files pass
# `systemd-analyze verify` (skipped, exit 77, where the tool is missing or cannot run). The units
# name /usr/local/bin/nudge, which verify requires to exist: the copies checked name NUDGE.
nudge=$1 deploy=$2 work=$3
if ! command -v systemd-analyze > /dev/null 2>&1; then
  echo "skipped: systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work" || exit 1
for unit in nudge-run.service nudge-deliver.service; do
  sed "s#/usr/local/bin/nudge #$nudge #" "$deploy/$unit" > "$work/$unit" || exit 1
done
cd "$work" || exit 1
if ! out=$(systemd-analyze verify ./nudge-run.service ./nudge-deliver.service 2>&1); then
  case $out in
    *"Failed to initialize"* | *"System has not been booted with systemd"*)
      echo "skipped: systemd-analyze cannot run here: $out"
      exit 77 ;;
  esac
  echo "systemd-analyze verify failed:"
  echo "$out"
  exit 1
fi
if [ -n "$out" ]; then
  echo "systemd-analyze verify warned:"
  echo "$out"
  exit 1
fi
echo "service files: verified"
