"""The node installer behind ``install`` and ``uninstall``.

Every step reads and writes through a root directory (``/`` on a node, another directory for
image builds and tests), so the same code installs, previews (``--dry-run``) and removes.

    flavours      where each platform keeps the kubelet's files and how it passes the flags
    kubeletflags  the flags' own mechanisms: kubeadm-flags.env, a systemd drop-in, rancher config.yaml.d
    files         file changes as data: diffs, atomic writes, backups, the install record
    artifact      the executable: checksum, architecture, pre-warming, the read-only venv
    installer     install and uninstall, from options to changes and back

Nothing here is imported on the kubelet's path.
"""
