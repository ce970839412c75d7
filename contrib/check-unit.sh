#!/usr/bin/env bash
# Runs contrib/clavitor.service, as shipped, under a private systemd (PID 1 of new mount, PID,
# network, UTS and IPC namespaces) and checks that the hardened service starts, answers
# /healthz, survives `systemctl reload` and stops cleanly. For developers changing the binary
# or the unit (a new syscall outside @system-service, W^X memory, a write outside the data dir
# would show here); the host's /etc, /var/lib, /run and network are not touched.
#
# Usage (root, systemd installed, not under systemd itself): contrib/check-unit.sh BINARY
# A Commercial BINARY runs as a backup POP with certificates from contrib/pop-pki.sh.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (namespaces, mounts)" >&2; exit 1; }
command -v /lib/systemd/systemd >/dev/null || { echo "$0: systemd is not installed" >&2; exit 1; }
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/clavitor-unit-check.XXXXXX)
cg=clavitor-unit-check-$$
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && sleep 1
  for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [ -d "$h/$cg" ] || continue
    find "$h/$cg" -depth -mindepth 1 -type d -exec rmdir {} \; 2>/dev/null || true
    echo $$ >"$h/cgroup.procs" 2>/dev/null || true
    rmdir "$h/$cg" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Files the private systemd sees in place of the host's.
cp /etc/passwd "$work/passwd"; cp /etc/group "$work/group"
echo 'clavitor:x:990:990:Clavitor Vault:/nonexistent:/usr/sbin/nologin' >>"$work/passwd"
echo 'clavitor:x:990:' >>"$work/group"
mkdir -p "$work/varlib" "$work/etc-clavitor" "$work/dropin"
"$bin" init --data-dir "$work/varlib/clavitor" --owner-token-out "$work/owner.token" >/dev/null
if "$bin" --version | grep -q commercial; then
  "$here/pop-pki.sh" "$work/pki" zurich-01=127.0.0.1 calgary-01 >/dev/null
  cp "$work/pki"/{zurich-01.crt,zurich-01.key,pop-ca.crt,replication.token} "$work/etc-clavitor/"
  printf '%s\n' 'pop_id: "zurich-01"' 'role: "backup"' 'primary_pop:' '  id: "calgary-01"' 'auth:' \
    '  token_file: "/etc/clavitor/replication.token"' '  mtls_cert: "/etc/clavitor/zurich-01.crt"' \
    '  mtls_key: "/etc/clavitor/zurich-01.key"' '  mtls_ca: "/etc/clavitor/pop-ca.crt"' \
    >"$work/etc-clavitor/replication.yaml"
fi
# Only for the check: output to a file (no journald here), no boot-time dependencies.
printf '%s\n' '[Unit]' 'DefaultDependencies=no' 'Wants=' '[Service]' 'Restart=no' \
  'StandardOutput=append:/run/clavitor.log' 'StandardError=append:/run/clavitor.log' \
  >"$work/dropin/check.conf"

cat >"$work/inside.sh" <<EOF
#!/bin/bash
set -e
ip link set lo up
# Fresh cgroup mounts: inside the cgroup namespace they show our own cgroup as the root.
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
else
  mount -t tmpfs tmpfs /sys/fs/cgroup
  mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
  mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
  mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
fi
mkdir -p $work/etc-upper $work/etc-work
mount -t overlay overlay -o lowerdir=/etc,upperdir=$work/etc-upper,workdir=$work/etc-work /etc
cp $work/passwd /etc/passwd; cp $work/group /etc/group
mkdir -p /etc/clavitor; cp -r $work/etc-clavitor/. /etc/clavitor/; chown -R 990:990 /etc/clavitor
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system/clavitor.service.d
cp $here/clavitor.service /run/systemd/system/
cp $work/dropin/check.conf /run/systemd/system/clavitor.service.d/
mount -t tmpfs tmpfs /usr/local/bin; cp $bin /usr/local/bin/clavitor
mount --bind $work/varlib /var/lib
export container=clavitor-unit-check
exec unshare --pid --fork --mount-proc /lib/systemd/systemd --system --unit=clavitor.service --show-status=no
EOF
chmod +x "$work/inside.sh"
# The private systemd's cgroups go under one of our own, removed at the end.
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  [ -e "$h/cgroup.procs" ] && mkdir -p "$h/$cg" && echo $$ >"$h/$cg/cgroup.procs" || true
done
unshare --mount --uts --ipc --net --cgroup --propagation private "$work/inside.sh" >"$work/systemd.log" 2>&1 &
for _ in $(seq 50); do
  pid=$(pgrep -f "^/lib/systemd/systemd --system --unit=clavitor.service" || true)
  [ -n "$pid" ] && break
  sleep 0.2
done
[ -n "$pid" ] || { cat "$work/systemd.log"; echo "FAIL: systemd did not start" >&2; exit 1; }
inns() { nsenter -t "$pid" -m -p -n "$@"; }
fail() { echo "FAIL: $*" >&2; inns cat /run/clavitor.log >&2 || true; exit 1; }
sleep 3
inns systemctl is-active --quiet clavitor.service || fail "the service is not running"
health=$(inns curl -sk https://127.0.0.1:7441/healthz || inns curl -s http://127.0.0.1:7441/healthz) ||
  fail "no /healthz answer"
echo "healthz: $health"
inns systemctl reload clavitor.service
sleep 1
inns systemctl is-active --quiet clavitor.service || fail "systemctl reload stopped the service"
inns systemctl stop clavitor.service
inns grep -q '"stopped"' /run/clavitor.log || fail "no clean stop"
inns cat /run/clavitor.log
echo "ok: the unit runs $("$bin" --version) hardened: start, /healthz, reload, stop"
