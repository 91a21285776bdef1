"""``install``: put the plugin on this node (or into an image with ``--root``) for a platform.

It places the release file in the kubelet's bin dir (checksum verified, atomic rename), our
config beside the kubelet's, our provider in the kubelet's CredentialProviderConfig (merged
with the providers already there, or as our own file in its config directory on kubelets
1.34+), and the kubelet's two flags through the platform's own mechanism; then it pre-warms
the zipapp, checks everything with ``validate``, and restarts the kubelet only with
``--restart-kubelet``. Running it again changes nothing and says so; ``--dry-run`` shows the
diff; ``uninstall`` puts back exactly what was there.
"""

from __future__ import annotations

import argparse

from provider.commands import Streams
from provider.commands.common import EXIT_CODES, finish_install, say_to
from provider.install.apply import install
from provider.install.flavours import FLAVOURS
from provider.install.options import DEFAULT_VENV_DIR, InstallError, Options
from provider.output import add_output_argument
from provider.platforms import PROVIDER_NAME

HELP = "install the plugin on this node for its platform (eks, gke, aks, kubeadm, k3s, rke2, openshift...)"
FLAVOUR_NAMES = (*sorted(FLAVOURS), "generic")
EPILOG = (
    EXIT_CODES.format(
        ok="installed (or already installed: nothing changed), and validate passed",
        failure="refused before writing anything, or validate failed and the run was undone; stderr says why",
    )
    + "\nflavours (detected when --flavor is not given):\n"
    + "".join(
        f"  {f.name:<10} {f.platform.title}\n{'':<13}bin dir {f.platform.bin_dir}\n"
        f"{'':<13}config  {f.platform.kubelet_config}\n"
        for f in FLAVOURS.values()
    )
    + "  generic    explicit --bin-dir and --kubelet-config; flags through a kubelet.service drop-in\n"
    + "\nbootstrap scripts without a suitable python3 use node-config/install.sh, which finds one.\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option = parser.add_argument
    option(
        "--flavor",
        "--flavour",
        dest="flavor",
        choices=FLAVOUR_NAMES,
        default=None,
        help="the platform (default: detected)",
    )
    option("--artifact", metavar="FILE", default=None, help="the release file (default: this executable)")
    option(
        "--sha256",
        metavar="HEX",
        default=None,
        help="its expected SHA-256 (default: a SHA256SUMS file beside it)",
    )
    option("--name", default=PROVIDER_NAME, help=f"the provider's name (default: {PROVIDER_NAME})")
    option("--bin-dir", metavar="DIR", default=None, help="the kubelet's bin dir (generic)")
    option(
        "--kubelet-config",
        metavar="PATH",
        default=None,
        help="the kubelet's --image-credential-provider-config (generic)",
    )
    option(
        "--kubelet-config-dir",
        action="store_true",
        default=False,
        help="--kubelet-config is a directory: write our own file there (kubelet 1.34+)",
    )
    option(
        "--provider-config",
        metavar="PATH",
        default=None,
        help="where our config goes on the node (default: the platform's)",
    )
    option(
        "--eks-mode",
        choices=("beside", "instead"),
        default="beside",
        help="eks: keep ecr-credential-provider beside ours (default), or replace its entry",
    )
    option(
        "--layout",
        choices=("zipapp", "venv"),
        default="zipapp",
        help="zipapp (unpacks once under /var/lib) or venv (read-only, for image builds)",
    )
    option(
        "--venv-dir",
        metavar="DIR",
        default=DEFAULT_VENV_DIR,
        help=f"--layout venv: where the venv goes (default: {DEFAULT_VENV_DIR})",
    )
    option(
        "--python",
        metavar="PATH",
        default=None,
        help="the CPython 3.9-3.13 that runs the plugin (default: the one running this)",
    )
    option(
        "--kubelet-version",
        metavar="1.N",
        default=None,
        help="the kubelet's version, when it cannot be asked (--root)",
    )
    option(
        "--token-mode",
        action="store_true",
        default=False,
        help="have the kubelet send pods' service account tokens",
    )
    option(
        "--audience",
        default=None,
        help="token audience (eks, aks: a default; required with vault, files or identity rules)",
    )
    option(
        "--annotation-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a ServiceAccount annotation to pass in token mode (repeatable)",
    )
    option(
        "--cache-type",
        choices=("ServiceAccount", "Token"),
        default="ServiceAccount",
        help="token mode: the kubelet's cache key",
    )
    option(
        "--partial",
        action="store_true",
        default=False,
        help="leave rules without 'match' out of matchImages instead of refusing",
    )
    option(
        "--skip-kubelet-flags",
        action="store_true",
        default=False,
        help="do not touch the kubelet's flags (you pass them yourself)",
    )
    option("--create-bin-dir", action="store_true", default=False, help="generic: create a missing --bin-dir")
    option(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        default=True,
        help="do not unpack the zipapp now (the kubelet's first pull will)",
    )
    option("--arch", default=None, help="the node's CPU architecture (default: this machine's)")
    option("--root", metavar="DIR", default="/", help="install into this directory (image builds, tests)")
    option("--dry-run", action="store_true", default=False, help="show the diff, write nothing")
    option(
        "--restart-kubelet",
        action="store_true",
        default=False,
        help="restart the kubelet if anything changed",
    )
    option(
        "--from-state",
        action="store_true",
        default=False,
        help="install again exactly as recorded (the EKS kubelet drop-in runs this)",
    )
    option("-q", "--quiet", action="store_true", default=False, help="print errors only")
    add_output_argument(parser)
    parser.epilog = EPILOG


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        flavour=args.flavor,
        root=args.root,
        artifact=args.artifact,
        sha256=args.sha256,
        config=getattr(args, "config", None),
        name=args.name,
        bin_dir=args.bin_dir,
        kubelet_config=args.kubelet_config,
        kubelet_config_dir=args.kubelet_config_dir,
        provider_config=args.provider_config,
        eks_mode=args.eks_mode,
        layout=args.layout,
        venv_dir=args.venv_dir,
        python=args.python,
        kubelet_version=args.kubelet_version,
        token_mode=args.token_mode,
        audience=args.audience,
        annotation_keys=list(args.annotation_key),
        cache_type=args.cache_type,
        partial=args.partial,
        skip_kubelet_flags=args.skip_kubelet_flags,
        create_bin_dir=args.create_bin_dir,
        prewarm=args.prewarm,
        arch=args.arch,
    )


def run(args: argparse.Namespace, streams: Streams) -> int:
    say = say_to(args, streams)
    try:
        outcome = install(
            options_from(args),
            say,
            dry_run=args.dry_run,
            restart=args.restart_kubelet,
            from_state=args.from_state,
        )
    except InstallError as exc:
        return finish_install(args, streams, None, str(exc))
    return finish_install(args, streams, outcome, outcome.error)
