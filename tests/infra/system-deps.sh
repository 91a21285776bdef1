#!/bin/sh
# Make sure this machine has what `make test` needs from Debian (tests/infra/system-packages.txt,
# and `$PYTHON -m venv`). Everything present: exit 0 at once, no apt call. Something missing: as
# root, one `apt-get update` and one `apt-get install` of every missing package; otherwise one
# line on stderr naming every missing program and the command that installs them all, exit 1.
set -eu

list="$(dirname "$0")/system-packages.txt"
python="${PYTHON:-python3}"
missing=""
packages=""

need() { # need PROGRAM PACKAGE: remember a missing program and its package (once)
	missing="${missing:+$missing, }$1"
	case " $packages " in *" $2 "*) ;; *) packages="${packages:+$packages }$2" ;; esac
}

check() {
	missing=""
	packages=""
	while read -r program package; do
		case "$program" in '' | '#'*) continue ;; esac
		command -v "$program" >/dev/null 2>&1 || need "$program" "$package"
	done <"$list"
	# Debian's python3 creates a venv only with ensurepip, which python3-venv ships.
	"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || need "$python -m venv" python3-venv
}

# The aarch64 artifacts run here under qemu-user-static through binfmt_misc (tests/test_standalone.py).
# A clean machine or a container may have it unmounted or unregistered: as root, mount it and
# register qemu-aarch64 (update-binfmts, from binfmt-support); when that cannot be done, one line
# saying why and exit 1, never a skip. BINFMT_MISC: the mount point (tests point it elsewhere).
binfmt_dir="${BINFMT_MISC:-/proc/sys/fs/binfmt_misc}"

aarch64_enabled() {
	[ -f "$binfmt_dir/qemu-aarch64" ] || return 1
	read -r state <"$binfmt_dir/qemu-aarch64" || return 1
	[ "$state" = enabled ]
}

binfmt() {
	if command -v uname >/dev/null 2>&1 && [ "$(uname -m)" = aarch64 ]; then return 0; fi
	aarch64_enabled && return 0
	how="mount -t binfmt_misc binfmt_misc $binfmt_dir && update-binfmts --enable qemu-aarch64"
	if [ "$(id -u)" != 0 ]; then
		echo "make test runs aarch64 binaries under qemu-user-static, and binfmt_misc has no enabled qemu-aarch64; as root: $how" >&2
		return 1
	fi
	if [ ! -f "$binfmt_dir/register" ] && ! mount -t binfmt_misc binfmt_misc "$binfmt_dir" >/dev/null 2>&1; then
		echo "make test runs aarch64 binaries under qemu-user-static, and binfmt_misc cannot be mounted at $binfmt_dir (a container needs --privileged, or the host's binfmt_misc with qemu-aarch64 registered)" >&2
		return 1
	fi
	update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
	if ! aarch64_enabled; then
		echo "make test runs aarch64 binaries under qemu-user-static, and 'update-binfmts --enable qemu-aarch64' did not register it in $binfmt_dir (is qemu-user-static installed?)" >&2
		return 1
	fi
	echo "registered qemu-aarch64 in $binfmt_dir (binfmt_misc)" >&2
}

check
if [ -z "$packages" ]; then
	binfmt
	exit $?
fi

install="apt-get install -y --no-install-recommends $packages"
if [ "$(id -u)" != 0 ]; then
	echo "make test needs $missing; install them with: sudo sh -c 'apt-get update && $install'" >&2
	exit 1
fi

echo "make test needs $missing; installing: $install" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $packages >/dev/null

check
if [ -n "$packages" ]; then
	echo "still missing after apt-get install: $missing" >&2
	exit 1
fi
binfmt
