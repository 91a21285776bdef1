"""The node installer behind ``install`` and ``uninstall``.

Every step reads and writes through a root directory (``/`` on a node, another directory for
image builds and tests), so the same code installs, previews (``--dry-run``) and removes.

    options       the installer's interface: Options in, Outcome out, InstallError
    plan          from options and the node to every change an install makes, without writing
    apply         install: preview or write the plan, pre-warm, check the result, restart
    uninstall     put back: the whole install (uninstall), or one failed run (undo_run)
    record        the install record and the state directory with the originals
    kubeletfile   the kubelet's CredentialProviderConfig: our entry merged in, or taken out
    restart       restarting the kubelet through systemd
    flavours      where each platform keeps the kubelet's files and how it passes the flags
    kubeletflags  the flags' own mechanisms: kubeadm-flags.env, a systemd drop-in, rancher config.yaml.d
    files         file changes as data: diffs, atomic writes, backups, the ledger of what was written
    artifact      the executable: checksum, architecture, pre-warming, the read-only venv
    pythons       the CPython the kubelet will find on its PATH

The checks and the kubelet config's rendering are ``provider.ops``'s; nothing here imports
``provider.commands``. Nothing here is imported on the kubelet's path.
"""
