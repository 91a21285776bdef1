#!/bin/sh
# Install registry-credential-provider on this node, from a bootstrap script or by hand.
#
#   install.sh [--python PATH] [--artifact FILE] [install options...]
#   install.sh --uninstall [--python PATH] [--artifact FILE] [uninstall options...]
#
# Picks the release form for this node. With a CPython 3.9-3.13 on PATH (python3, then
# python3.13 ... python3.9, or --python): the zipapp for this CPU next to this script unless
# --artifact names one, run with that Python. With none: the self-contained form
# (registry-credential-provider-<version>-linux-<arch>-standalone.tar.gz, which brings its own
# CPython) next to this script, unpacked to a scratch directory and run from there. Either way
# that file's own installer does the work: 'registry-credential-provider install --help' lists
# the options (--flavor, --config, --restart-kubelet, --dry-run, --root ...). It checks the file
# against a SHA256SUMS beside it. With neither a suitable Python nor the self-contained file it
# says what to install and exits 3.
#
# Exit codes: the installer's (0 done, 1 refused or failed, 2 bad options); 3 no suitable
# Python and no self-contained file; 4 no release file for this CPU.
set -eu

prog="install.sh"
here=$(cd "$(dirname "$0")" && pwd)
os_release="${REGISTRY_CREDENTIAL_PROVIDER_OS_RELEASE:-/etc/os-release}"
python=""
artifact=""
root=""
command=install

say() { printf '%s: %s\n' "$prog" "$*" >&2; }

supported() {
    "$1" -c 'import sys; sys.exit(0 if (3, 9, 2) <= sys.version_info[:3] and sys.version_info[:2] < (3, 14) else 1)' >/dev/null 2>&1
}

find_python() {
    for candidate in python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
        found=$(command -v "$candidate" 2>/dev/null) || continue
        if supported "$found"; then
            printf '%s\n' "$found"
            return 0
        fi
    done
    return 1
}

# Keep in step with provider/install/pythons.py (a test compares them).
advice() {
    ID="" VERSION_ID="" ID_LIKE="" NAME=""
    if [ -r "$os_release" ]; then
        # shellcheck disable=SC1090
        . "$os_release"
    fi
    major=${VERSION_ID%%.*}
    case "$ID:$VERSION_ID" in
        amzn:2023) echo "dnf install -y python3  (Amazon Linux 2023's python3 is 3.9)"; return ;;
        amzn:*) echo "Amazon Linux 2 packages no CPython 3.9+: move the node group to Amazon Linux 2023 (dnf install -y python3)"; return ;;
    esac
    case "$ID:$major" in
        rhel:8 | centos:8 | rocky:8 | almalinux:8 | ol:8) echo "dnf install -y python39"; return ;;
        rhel:9 | centos:9 | rocky:9 | almalinux:9 | ol:9) echo "dnf install -y python3"; return ;;
    esac
    case "$ID" in fedora) echo "dnf install -y python3"; return ;; esac
    case " $ID_LIKE " in *" fedora "*) echo "dnf install -y python3"; return ;; esac
    case "$ID" in
        azurelinux) echo "tdnf install -y python3"; return ;;
        mariner) echo "tdnf install -y python3  (CBL-Mariner $VERSION_ID's python3 is 3.9)"; return ;;
    esac
    case "$ID:$VERSION_ID" in
        ubuntu:18.04 | ubuntu:20.04)
            echo "Ubuntu $VERSION_ID packages no CPython 3.9+: upgrade the node image to Ubuntu 22.04 or later"; return ;;
    esac
    case "$ID" in ubuntu) echo "apt-get install -y python3"; return ;; esac
    case " $ID_LIKE " in *" ubuntu "*) echo "apt-get install -y python3"; return ;; esac
    case "$ID:$major" in
        debian:10) echo "Debian 10 packages no CPython 3.9+: upgrade the node image to Debian 11 or later"; return ;;
    esac
    case "$ID" in debian) echo "apt-get install -y python3"; return ;; esac
    case " $ID_LIKE " in *" debian "*) echo "apt-get install -y python3"; return ;; esac
    case "$ID" in sles | opensuse-leap | sle-micro) echo "zypper install -y python311"; return ;; esac
    case " $ID_LIKE " in *" suse "*) echo "zypper install -y python311"; return ;; esac
    case "$ID" in
        flatcar | bottlerocket | cos | talos | rhcos | fedora-coreos)
            echo "${NAME:-$ID} has no package manager for CPython: build it into the image (install --layout venv at image build time) or use a node image with CPython 3.9-3.13"
            return ;;
    esac
    echo "install CPython 3.9, 3.10, 3.11, 3.12 or 3.13 with the distribution's package manager"
}

# Our own two options; everything else goes to the installer as it is.
for arg in "$@"; do
    shift
    if [ "${expect:-}" = python ]; then python=$arg; expect=""; continue; fi
    if [ "${expect:-}" = artifact ]; then artifact=$arg; expect=""; continue; fi
    if [ "${expect:-}" = root ]; then root=$arg; expect=""; fi
    case "$arg" in
        --python) expect=python; continue ;;
        --python=*) python=${arg#--python=}; continue ;;
        --artifact) expect=artifact; continue ;;
        --artifact=*) artifact=${arg#--artifact=}; continue ;;
        --uninstall) command=uninstall; continue ;;
        --root) expect=root ;;
        --root=*) root=${arg#--root=} ;;
    esac
    set -- "$@" "$arg"
done

machine=$(uname -m)
case "$machine" in amd64) machine=x86_64 ;; arm64) machine=aarch64 ;; esac

if [ -n "$python" ]; then
    if ! supported "$python"; then
        say "--python $python is not CPython 3.9-3.13"
        exit 3
    fi
elif ! python=$(find_python); then
    # No CPython for the zipapp: the self-contained form, which brings its own.
    standalone=""
    for candidate in "$here"/registry-credential-provider-*-linux-"$machine"-standalone.tar.gz; do
        if [ -f "$candidate" ]; then standalone=$candidate; fi
    done
    if [ -z "$standalone" ]; then
        say "no CPython 3.9-3.13 found (looked for python3, python3.13 ... python3.9 on PATH=$PATH) and no self-contained release file beside $0 (registry-credential-provider-<version>-linux-$machine-standalone.tar.gz)"
        say "install one: $(advice)"
        exit 3
    fi
    say "no CPython 3.9-3.13 on PATH: installing the self-contained form $standalone"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    tar -xzf "$standalone" -C "$scratch"
    name=${standalone##*/}
    program="$scratch/${name%.tar.gz}/registry-credential-provider"
    if [ "$command" = install ]; then set -- --artifact "$standalone" "$@"; fi
    "$program" "$command" "$@" && status=0 || status=$?
    exit "$status"
fi

if [ -z "$artifact" ]; then
    for candidate in "$here"/registry-credential-provider-*-linux-"$machine"; do
        if [ -f "$candidate" ]; then artifact=$candidate; fi
    done
    if [ -z "$artifact" ]; then
        say "no release file for $machine beside $0 (registry-credential-provider-<version>-linux-$machine): pass --artifact FILE"
        exit 4
    fi
fi

if [ -n "$root" ] && [ "$root" != / ]; then
    # Unpack into a scratch runtime root: the one under /var/lib belongs to the node image.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    if [ "$command" = install ]; then set -- --artifact "$artifact" --python "$python" "$@"; fi
    PEX_ROOT="$scratch" "$python" "$artifact" "$command" "$@" && status=0 || status=$?
    exit "$status"
fi
if [ "$command" = install ]; then set -- --artifact "$artifact" --python "$python" "$@"; fi
exec "$python" "$artifact" "$command" "$@"
