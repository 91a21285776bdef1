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

check
[ -z "$packages" ] && exit 0

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
