#!/bin/sh
# The fleet image's entry point, run by busybox sh (the image has no Python): check the release
# files this image carries against its SHA256SUMS, stage them with our config on the node, then
# run the staged install.sh, so the node's own CPython runs the installer, install.sh picks the
# release form for this node exactly as it does by hand, and systemctl restarts the node's kubelet.
#
# Settings (environment, from the settings ConfigMap):
#   ACTION           install (default) or uninstall (gives every file back as it was)
#   FLAVOR           --flavor (empty: the installer detects it); install only
#   EXTRA_ARGS       more install options, split on blanks; install only
#   TOKEN_MODE       1: --token-mode (with --audience AUDIENCE when set); install only
#   DRY_RUN          1: --dry-run (the diff goes to the log; only the staging directory is written)
#   RESTART_KUBELET  1 (default): --restart-kubelet when something changed; 0: leave the kubelet
#   CONFIG           our config as this container sees it (default /config/config.yaml)
# Where things are:
#   HOST             the node's root as this container sees it (default /host)
#   STAGING          the staging directory as the node sees it
#                    (default /var/lib/registry-credential-provider/staging)
#   ENTER            nsenter (default): run install.sh in the node's namespaces through PID 1
#                    (needs hostPID and privileged); root: run it here with --root "$HOST" and the
#                    python3 on this PATH (tests, which mount a scratch root as HOST)
#   NSENTER          the nsenter to call (default: busybox's; tests give a stand-in, which PATH
#                    cannot do: busybox sh runs its own applets first)
#
# Exit codes: install.sh's (0 done, 1 refused or failed, 2 bad options, 3 no suitable Python on
# the node, 4 no release file for this CPU); 1 also for a damaged image.
set -eu

prog=stage
here=$(cd "$(dirname "$0")/.." && pwd)
release="$here/release"
ACTION=${ACTION:-install}
RESTART_KUBELET=${RESTART_KUBELET:-1}
CONFIG=${CONFIG:-/config/config.yaml}
HOST=${HOST:-/host}
STAGING=${STAGING:-/var/lib/registry-credential-provider/staging}
ENTER=${ENTER:-nsenter}
NSENTER=${NSENTER:-nsenter}

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
fail() { say "$*"; exit 1; }

case "$ACTION" in install | uninstall) ;; *) fail "ACTION must be install or uninstall, not '$ACTION'" ;; esac
case "$ENTER" in nsenter | root) ;; *) fail "ENTER must be nsenter or root, not '$ENTER'" ;; esac
case "$STAGING" in /*) ;; *) fail "STAGING must be absolute, not '$STAGING'" ;; esac
if [ "$ACTION" = install ] && [ ! -r "$CONFIG" ]; then fail "no config at $CONFIG (the installer ConfigMap)"; fi

# Every file we stage is one SHA256SUMS names, with that digest: a damaged layer stops here.
cd "$release"
for file in *; do
    if [ "$file" = SHA256SUMS ]; then continue; fi
    line=$(awk -v name="$file" '$2 == name' SHA256SUMS)
    if [ -z "$line" ]; then fail "$file is not in SHA256SUMS: refusing the image"; fi
    printf '%s\n' "$line" | sha256sum -c -s - || fail "$file does not match SHA256SUMS: refusing the image"
done

# A fresh staging directory holding this release alone: install.sh picks its file by name, so no
# earlier release may linger beside it.
staged="$HOST$STAGING"
rm -rf "$staged.new"
mkdir -p "$(dirname "$staged")"
mkdir -m 0700 "$staged.new"
cp -p "$release"/* "$staged.new/"
if [ "$ACTION" = install ]; then cp "$CONFIG" "$staged.new/config.yaml"; fi
rm -rf "$staged"
mv "$staged.new" "$staged"
say "staged $(ls "$release" | tr '\n' ' ')in $STAGING"

if [ "$ENTER" = nsenter ]; then dir=$STAGING; else dir=$staged; fi
set --
if [ "$ACTION" = uninstall ]; then
    set -- --uninstall
else
    set -- --config "$dir/config.yaml"
    if [ -n "${FLAVOR:-}" ]; then set -- "$@" --flavor "$FLAVOR"; fi
    if [ "${TOKEN_MODE:-}" = 1 ]; then
        set -- "$@" --token-mode
        if [ -n "${AUDIENCE:-}" ]; then set -- "$@" --audience "$AUDIENCE"; fi
    fi
    set -f  # split EXTRA_ARGS on blanks, never glob them
    # shellcheck disable=SC2086
    set -- "$@" ${EXTRA_ARGS:-}
    set +f
fi
if [ "${DRY_RUN:-}" = 1 ]; then set -- "$@" --dry-run; fi

if [ "$ENTER" = root ]; then
    # The installer refuses to restart a kubelet under another root.
    "$here/bin/sh" "$dir/install.sh" --root "$HOST" "$@" && status=0 || status=$?
else
    if [ "$RESTART_KUBELET" = 1 ]; then set -- "$@" --restart-kubelet; fi
    "$NSENTER" --target 1 --mount --uts --ipc --net --pid -- /bin/sh "$dir/install.sh" "$@" && status=0 || status=$?
fi
if [ "$status" = 0 ] && [ "$ACTION" = uninstall ] && [ "${DRY_RUN:-}" != 1 ]; then
    # Nothing of ours stays: the staging directory goes, and its parent when that is now empty
    # (the node sees it without the pod's bind mount, so only the node can remove it).
    rm -rf "$staged"
    parent=$(dirname "$STAGING")
    if [ "$ENTER" = nsenter ]; then
        "$NSENTER" --target 1 --mount -- rmdir "$parent" 2>/dev/null || true
    else
        rmdir "$HOST$parent" 2>/dev/null || true
    fi
fi
exit "$status"
