#!/usr/bin/env bash
# Runs a command inside an arm64 root filesystem on an x86-64 host, emulated by qemu-user through
# binfmt_misc (scripts/build_arm64_image.sh installs and registers it).
#
#   bash scripts/arm64_chroot.sh ROOTFS [--user USER[:GROUP]] [--workdir DIR] [--env K=V]... \
#        [--bind SRC:DST[:ro]]... -- COMMAND [ARG...]
#
# /proc, /sys and /dev (with /dev/pts, for the pty of a simulated P1 meter) and the --bind
# directories are mounted in a private mount namespace that ends with the command: nothing stays
# mounted on the host, however the command ends. The environment is cleared except PATH, HOME,
# LANG, the --env values and QEMU_CPU, which defaults to cortex-a72 (a Raspberry Pi 4's core):
# qemu's default "max" CPU has SME, with which onnxruntime picks int8 MatMul kernels no Pi has and
# its results differ from x86 and from a Pi by up to 3e-3. The network is the host's, so a broker
# on the host's 127.0.0.1 is reachable. The command's exit status is returned. Needs root.
set -euo pipefail

usage() { sed -n '2,7p' "$0" >&2; exit 2; }

if [[ "${1:-}" == "--in-namespace" ]]; then  # second half, inside `unshare --mount`
  shift
  ROOTFS=$1 USERSPEC=$2 WORKDIR=$3 NBINDS=$4 NENV=$5; shift 5
  mount -t proc proc "$ROOTFS/proc"
  mount --rbind /sys "$ROOTFS/sys"
  mount --rbind /dev "$ROOTFS/dev"
  for ((i = 0; i < NBINDS; i++)); do
    IFS=: read -r src dst mode <<<"$1"; shift
    mkdir -p "$ROOTFS$dst"
    mount --bind "$src" "$ROOTFS$dst"
    if [[ "$mode" == "ro" ]]; then mount -o remount,bind,ro "$ROOTFS$dst"; fi
  done
  envs=("${@:1:NENV}"); shift "$NENV"
  chroot_args=()
  if [[ -n "$USERSPEC" ]]; then chroot_args+=(--userspec="$USERSPEC"); fi
  # shellcheck disable=SC2016  # $0/$@ are expanded by the shell inside the root
  exec chroot "${chroot_args[@]}" "$ROOTFS" /usr/bin/env -i "${envs[@]}" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$WORKDIR" "$@"
fi

[[ $# -ge 1 ]] || usage
ROOTFS=$(realpath "$1"); shift
USERSPEC="" WORKDIR=/ ENVS=() BINDS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --user) USERSPEC=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    --env) ENVS+=("$2"); shift 2 ;;
    --bind) BINDS+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "arm64_chroot.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ $# -ge 1 ]] || usage
[[ -x "$ROOTFS/usr/bin/env" ]] || { echo "arm64_chroot.sh: $ROOTFS is not a root filesystem" >&2; exit 2; }
[[ "$(id -u)" -eq 0 ]] || { echo "arm64_chroot.sh: needs root (chroot, mounts)" >&2; exit 2; }

home=/root
if [[ -n "$USERSPEC" ]]; then
  home=$(awk -F: -v u="${USERSPEC%%:*}" '$1 == u || $3 == u {print $6; exit}' "$ROOTFS/etc/passwd")
fi
ENV_ARGS=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "HOME=${home:-/}"
          LANG=C.UTF-8 "QEMU_CPU=${QEMU_CPU:-cortex-a72}" "${ENVS[@]}")
exec unshare --mount --propagation private -- \
  bash "$0" --in-namespace "$ROOTFS" "$USERSPEC" "$WORKDIR" "${#BINDS[@]}" "${#ENV_ARGS[@]}" \
  "${BINDS[@]}" "${ENV_ARGS[@]}" "$@"
