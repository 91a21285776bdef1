"""The kubelet's two flags, read and written through each flavour's own mechanism.

``--image-credential-provider-config`` and ``--image-credential-provider-bin-dir`` are flags,
not KubeletConfiguration fields. Where the node already passes them (to any paths), we use
those paths: there is one bin dir and one config per kubelet, shared with other providers.
Where it does not, we add them:

- kubeadm: appended to ``KUBELET_KUBEADM_ARGS`` in ``/var/lib/kubelet/kubeadm-flags.env``
  (``KUBELET_EXTRA_ARGS`` in ``/etc/default/kubelet`` or ``/etc/sysconfig/kubelet`` is read
  too: it comes later on the command line, so it wins);
- k3s and rke2: ``kubelet-arg+`` in ``config.yaml.d/90-registry-credential-provider.yaml``
  (``+`` appends to the user's ``kubelet-arg`` instead of replacing it); their own
  ``image-credential-provider-*`` options and ``kubelet-arg`` entries are read first;
- systemd: a ``kubelet.service.d`` drop-in repeating the unit's ``ExecStart`` with the flags.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import Optional

import msgspec

from provider.install.files import Change, Root
from provider.install.flavours import Flavour
from provider.platforms import PROVIDER_NAME

__all__ = ["FLAG_BIN_DIR", "FLAG_CONFIG", "FlagsError", "FlagsPlan", "plan_flags"]

FLAG_CONFIG = "image-credential-provider-config"
FLAG_BIN_DIR = "image-credential-provider-bin-dir"
KUBEADM_FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_EXTRA_ARGS_FILES = ("/etc/default/kubelet", "/etc/sysconfig/kubelet")
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
DROP_IN_NAME = f"90-{PROVIDER_NAME}.conf"
REMERGE_DROP_IN_NAME = f"90-{PROVIDER_NAME}-remerge.conf"
RANCHER_DROP_IN_NAME = f"90-{PROVIDER_NAME}.yaml"
HEADER = f"Written by '{PROVIDER_NAME} install'; '{PROVIDER_NAME} uninstall' removes it."


class FlagsError(Exception):
    """The flags cannot be set as asked (one line for stderr)."""


class FlagsPlan(msgspec.Struct, kw_only=True):
    """Where the kubelet reads its credential provider config and binaries, why, and the file
    change (if any) that makes it so."""

    kubelet_config: str
    bin_dir: str
    source: str
    change: Optional[Change] = None
    notes: list[str] = msgspec.field(default_factory=list)


def flags_in(words: Iterable[str]) -> dict[str, str]:
    """The two flags' last values among command-line words (``--f=v``, ``--f v``, ``-f=v``)."""
    found: dict[str, str] = {}
    items = list(words)
    for index, word in enumerate(items):
        name, equals, value = word.lstrip("-").partition("=")
        if not word.startswith("-") or name not in (FLAG_CONFIG, FLAG_BIN_DIR):
            continue
        if not equals:
            value = items[index + 1] if index + 1 < len(items) else ""
        found[name] = value
    return found


def _check_path(path: str) -> None:
    if not path.startswith("/") or re.search(r"\s|[\"'$`\\]", path):
        raise FlagsError(f"{path!r}: the kubelet's flags need an absolute path without spaces or quotes")


# --- environment files (kubeadm-flags.env, /etc/default/kubelet) --------------------------------


def _env_assignments(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        name, _, value = stripped.partition("=")
        try:
            words = shlex.split(value, comments=False)
        except ValueError:
            words = [value]
        values[name.strip().removeprefix("export ").strip()] = " ".join(words)
    return values


def _env_file_flags(root: Root, path: str, variable: str) -> dict[str, str]:
    data = root.read(path)
    if data is None:
        return {}
    value = _env_assignments(data.decode("utf-8", "replace")).get(variable, "")
    return flags_in(value.split())


def _kubeadm_flags_env(root: Root, kubelet_config: str, bin_dir: str) -> Change:
    """``kubeadm-flags.env`` with our two flags appended to ``KUBELET_KUBEADM_ARGS``."""
    data = root.read(KUBEADM_FLAGS_ENV)
    if data is None:
        raise FlagsError(
            f"{KUBEADM_FLAGS_ENV} does not exist: kubeadm writes it at 'kubeadm init/join' "
            "(is this a kubeadm node? use --flavor generic with a systemd kubelet)"
        )
    lines = data.decode("utf-8").splitlines(keepends=True)
    wanted = [f"--{FLAG_CONFIG}={kubelet_config}", f"--{FLAG_BIN_DIR}={bin_dir}"]
    for index, line in enumerate(lines):
        if not line.strip().startswith("KUBELET_KUBEADM_ARGS="):
            continue
        _, _, value = line.strip().partition("=")
        words = " ".join(shlex.split(value)).split()  # the quoted value is one shell word
        if flags_in(words) == {FLAG_CONFIG: kubelet_config, FLAG_BIN_DIR: bin_dir}:
            break  # already there: leave the file as it is
        kept: list[str] = []
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            name = word.lstrip("-").partition("=")[0]
            if word.startswith("-") and name in (FLAG_CONFIG, FLAG_BIN_DIR):
                skip = "=" not in word
                continue
            kept.append(word)
        ending = "\n" if line.endswith("\n") else ""
        lines[index] = 'KUBELET_KUBEADM_ARGS="' + " ".join(kept + wanted) + '"' + ending
        break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append('KUBELET_KUBEADM_ARGS="' + " ".join(wanted) + '"\n')
    return Change(
        path=KUBEADM_FLAGS_ENV, what="kubelet flags (kubeadm)", content="".join(lines).encode(), mode=0o644
    )


# --- systemd -------------------------------------------------------------------------------------


def unit_file(root: Root, unit: str) -> str | None:
    for directory in UNIT_DIRS:
        path = f"{directory}/{unit}"
        if root.read(path) is not None:
            return path
    return None


def drop_ins(root: Root, unit: str, exclude: Sequence[str] = ()) -> list[str]:
    """The unit's drop-in files in the order systemd applies them (by name; the first directory
    holding a name wins)."""
    chosen: dict[str, str] = {}
    for directory in UNIT_DIRS:
        host = root.host(f"{directory}/{unit}.d")
        if not os.path.isdir(host):
            continue
        for name in os.listdir(host):
            if name.endswith(".conf") and name not in chosen and name not in exclude:
                chosen[name] = f"{directory}/{unit}.d/{name}"
    return [chosen[name] for name in sorted(chosen)]


def _service_lines(text: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of the ``[Service]`` section, continuation lines joined."""
    pairs: list[tuple[str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


class UnitView(msgspec.Struct, kw_only=True):
    unit: str
    files: list[str]
    exec_start: str
    environment_files: list[str]


def unit_view(root: Root, unit: str, exclude: Sequence[str] = ()) -> UnitView | None:
    """The unit's effective ``ExecStart`` (after its drop-ins) and environment files."""
    main = unit_file(root, unit)
    if main is None:
        return None
    files = [main, *drop_ins(root, unit, exclude)]
    exec_start = ""
    environment_files: list[str] = []
    for path in files:
        data = root.read(path) or b""
        for key, value in _service_lines(data.decode("utf-8", "replace")):
            if key == "ExecStart":
                exec_start = value
            elif key == "EnvironmentFile":
                environment_files.append(value.lstrip("-"))
    return UnitView(unit=unit, files=files, exec_start=exec_start, environment_files=environment_files)


def _unit_flags(root: Root, view: UnitView) -> tuple[dict[str, str], str]:
    found = flags_in(view.exec_start.split())
    if found:
        return found, f"ExecStart of {view.files[-1]}"
    for path in view.environment_files:
        data = root.read(path)
        if data is None:
            continue
        for value in _env_assignments(data.decode("utf-8", "replace")).values():
            found = flags_in(value.split())
            if found:
                return found, path
    return {}, ""


def _systemd_drop_in(view: UnitView, kubelet_config: str, bin_dir: str, flavour: str) -> Change:
    if not view.exec_start:
        raise FlagsError(f"{view.files[0]} has no ExecStart to add the flags to")
    command = f"{view.exec_start} --{FLAG_CONFIG}={kubelet_config} --{FLAG_BIN_DIR}={bin_dir}"
    text = (
        f"# {HEADER}\n"
        f"# The kubelet's ExecStart ({view.files[-1]}) with the credential provider flags ({flavour}).\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={command}\n"
    )
    return Change(
        path=f"/etc/systemd/system/{view.unit}.d/{DROP_IN_NAME}",
        what="kubelet flags (systemd drop-in)",
        content=text.encode(),
    )


def remerge_drop_in(unit: str, binary: str, flavour: str) -> Change:
    """A kubelet drop-in that merges our provider back into the kubelet config before every
    kubelet start (nodeadm rewrites that file at boot). ``-``: a failure never blocks the kubelet."""
    text = (
        f"# {HEADER}\n"
        f"# nodeadm rewrites the kubelet's credential provider config at boot: merge our provider\n"
        "# back before the kubelet reads it (a failure is ignored: the kubelet starts regardless).\n"
        "[Service]\n"
        f"ExecStartPre=-{binary} install --flavor {flavour} --from-state --quiet\n"
    )
    return Change(
        path=f"/etc/systemd/system/{unit}.d/{REMERGE_DROP_IN_NAME}",
        what="kubelet drop-in keeping our provider across nodeadm's rewrites",
        content=text.encode(),
    )


# --- k3s / rke2 ----------------------------------------------------------------------------------


def _rancher_files(root: Root, directory: str) -> list[str]:
    files = [f"{directory}/config.yaml"] if root.read(f"{directory}/config.yaml") is not None else []
    host = root.host(f"{directory}/config.yaml.d")
    if os.path.isdir(host):
        files += [
            f"{directory}/config.yaml.d/{name}"
            for name in sorted(os.listdir(host))
            if name.endswith((".yaml", ".yml")) and name != RANCHER_DROP_IN_NAME
        ]
    return files


def _as_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    return []


def _rancher_flags(root: Root, directory: str) -> tuple[dict[str, str], str]:
    import yaml

    found: dict[str, str] = {}
    source = ""
    for path in _rancher_files(root, directory):
        try:
            document = yaml.safe_load(root.read(path) or b"") or {}
        except yaml.YAMLError as exc:
            raise FlagsError(
                f"{path} is not valid YAML ({' '.join(str(exc).split())}): fix it first"
            ) from None
        if not isinstance(document, dict):
            continue
        for option in (FLAG_CONFIG, FLAG_BIN_DIR):
            if isinstance(document.get(option), str):
                found[option] = document[option]
                source = path
        for key in ("kubelet-arg", "kubelet-arg+"):
            words = [f"--{arg.lstrip('-')}" for arg in _as_list(document.get(key))]
            more = flags_in(words)
            if more:
                found.update(more)
                source = path
    return found, source


def _rancher_drop_in(directory: str, kubelet_config: str, bin_dir: str) -> Change:
    text = (
        f"# {HEADER}\n"
        "# '+' appends to kubelet-arg from config.yaml instead of replacing it.\n"
        "kubelet-arg+:\n"
        f"  - {FLAG_CONFIG}={kubelet_config}\n"
        f"  - {FLAG_BIN_DIR}={bin_dir}\n"
    )
    return Change(
        path=f"{directory}/config.yaml.d/{RANCHER_DROP_IN_NAME}",
        what=f"kubelet flags ({os.path.basename(directory)} config.yaml.d)",
        content=text.encode(),
    )


# --- the plan ------------------------------------------------------------------------------------


def _conflict(found: dict[str, str], config: str | None, bin_dir: str | None, where: str) -> None:
    for flag, asked in ((FLAG_CONFIG, config), (FLAG_BIN_DIR, bin_dir)):
        if asked is not None and flag in found and os.path.normpath(found[flag]) != os.path.normpath(asked):
            raise FlagsError(
                f"the kubelet already runs with --{flag}={found[flag]} ({where}); install uses it "
                f"(one per kubelet, shared with other providers): drop the option or pass {found[flag]}"
            )


def plan_flags(
    root: Root, flavour: Flavour, *, kubelet_config: str | None = None, bin_dir: str | None = None
) -> FlagsPlan:
    """Where the kubelet will read its credential provider config and binaries, and the change
    that makes it pass those flags. ``kubelet_config`` and ``bin_dir``: explicit wishes (they
    must agree with flags the node already passes)."""
    platform = flavour.platform
    want_config = kubelet_config or platform.kubelet_config_flag
    want_bin = bin_dir or platform.bin_dir
    if flavour.flags == "platform":
        for asked, fixed, flag in (
            (kubelet_config, platform.kubelet_config_flag, FLAG_CONFIG),
            (bin_dir, platform.bin_dir, FLAG_BIN_DIR),
        ):
            if asked is not None and os.path.normpath(asked) != fixed:
                raise FlagsError(
                    f"{flavour.name}: the platform passes --{flag}={fixed}; it cannot be changed here"
                )
        return FlagsPlan(kubelet_config=want_config, bin_dir=want_bin, source=platform.flags)
    if flavour.flags == "kubeadm-flags-env":
        found: dict[str, str] = {}
        where = ""
        for path, variable in (
            (KUBEADM_FLAGS_ENV, "KUBELET_KUBEADM_ARGS"),
            *((extra, "KUBELET_EXTRA_ARGS") for extra in KUBELET_EXTRA_ARGS_FILES),
        ):
            more = _env_file_flags(root, path, variable)
            if more:
                found.update(more)
                where = path
        return _existing_or_new(
            found,
            where,
            kubelet_config,
            bin_dir,
            want_config,
            want_bin,
            lambda c, b: _kubeadm_flags_env(root, c, b),
            f"added to KUBELET_KUBEADM_ARGS in {KUBEADM_FLAGS_ENV}",
            ours=where == KUBEADM_FLAGS_ENV,
        )
    if flavour.flags == "rancher":
        found, where = _rancher_flags(root, flavour.rancher_dir)
        return _existing_or_new(
            found,
            where,
            kubelet_config,
            bin_dir,
            want_config,
            want_bin,
            lambda c, b: _rancher_drop_in(flavour.rancher_dir, c, b),
            f"kubelet-arg+ in {flavour.rancher_dir}/config.yaml.d/{RANCHER_DROP_IN_NAME}",
        )
    view = unit_view(root, "kubelet.service", exclude=(DROP_IN_NAME,))
    if view is None:
        raise FlagsError(
            "no kubelet.service unit found (looked in " + ", ".join(UNIT_DIRS) + "): pass --flavor for this "
            "platform, or start the kubelet with "
            f"--{FLAG_CONFIG}={want_config} --{FLAG_BIN_DIR}={want_bin} yourself (--skip-kubelet-flags)"
        )
    found, where = _unit_flags(root, view)
    return _existing_or_new(
        found,
        where,
        kubelet_config,
        bin_dir,
        want_config,
        want_bin,
        lambda c, b: _systemd_drop_in(view, c, b, flavour.name),
        f"kubelet.service drop-in {DROP_IN_NAME}",
    )


def _existing_or_new(
    found: dict[str, str],
    where: str,
    kubelet_config: str | None,
    bin_dir: str | None,
    want_config: str,
    want_bin: str,
    build: Callable[[str, str], Change],
    how: str,
    *,
    ours: bool = False,
) -> FlagsPlan:
    if FLAG_CONFIG in found and FLAG_BIN_DIR in found:
        _conflict(found, kubelet_config, bin_dir, where)
        config, directory = found[FLAG_CONFIG], found[FLAG_BIN_DIR]
        _check_path(config)
        _check_path(directory)
        if ours:  # our own earlier edit: keep rewriting it the same way (idempotent)
            return FlagsPlan(
                kubelet_config=config, bin_dir=directory, source=how, change=build(config, directory)
            )
        return FlagsPlan(kubelet_config=config, bin_dir=directory, source=f"already passed by {where}")
    if found:
        missing = FLAG_BIN_DIR if FLAG_CONFIG in found else FLAG_CONFIG
        _conflict(found, kubelet_config, bin_dir, where)
        present = next(iter(found))
        want_config = found.get(FLAG_CONFIG, want_config)
        want_bin = found.get(FLAG_BIN_DIR, want_bin)
        note = f"{where} passes --{present} but not --{missing}: adding both"
    else:
        note = ""
    _check_path(want_config)
    _check_path(want_bin)
    plan = FlagsPlan(
        kubelet_config=want_config, bin_dir=want_bin, source=how, change=build(want_config, want_bin)
    )
    if note:
        plan.notes.append(note)
    return plan
