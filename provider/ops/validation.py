"""Would the kubelet start with this setup, and would it ask us for the right images?

``check(options)`` returns every check, one line each, and the kubelet's own start-up error if
it would exit:

- the kubelet's CredentialProviderConfig (a file or a directory), read and validated exactly
  as the kubelet does at start-up (it exits on any error), with its own messages;
- the bin dir and every provider's executable (the kubelet's start-up check), and that ours
  runs;
- our provider's ``args`` and ``env`` (they must select kubelet mode and a config that loads);
- our own config;
- the traps the kubelet accepts silently: globs with a scheme, a path glob, a tag, a port,
  the wrong number of labels; rules no ``matchImages`` entry reaches; ``matchImages``
  entries no rule serves; rules shadowed by earlier ones; token mode without the
  node-audience RBAC.

The ``validate`` command prints the result; ``install`` checks what it wrote with it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Optional

import msgspec

from provider import globs
from provider.config import CONFIG_ENV, CloudRule, ProviderConfig, Rule, load_config
from provider.errors import ConfigError
from provider.kubeletconfig import (
    CredentialProvider,
    KubeletConfigError,
    LoadedConfig,
    LoadedProvider,
    aggregate,
    go_quote,
    load,
    validate,
)
from provider.locations import config_path
from provider.output import Check, Status, worst
from provider.platforms import PROVIDER_NAME

__all__ = ["NEWEST_KUBELET", "Report", "ValidateOptions", "check", "missing_file_warning", "missing_files"]

VERSION_TIMEOUT_SECONDS = 20.0
# The kubelet's start-up steps in its order (RegisterCredentialProviderPlugins): it exits with
# the first failing step's error, so a config error hides a missing binary.
_STEPS = ("bin dir", "read", "validate", "binaries")
# Judged as this kubelet when its version is not given: every feature on.
NEWEST_KUBELET = (1, 36)


def missing_files(rule: Rule) -> list[tuple[int, str]]:
    """The credential files a rule names that do not exist, with their positions in ``files``
    (a rule that names none searches the node's usual files, any of which may be absent)."""
    from provider.backends.dockerconfig import DockerConfigRule

    if not isinstance(rule, DockerConfigRule):
        return []
    return [(position, file) for position, file in enumerate(rule.files or ()) if not os.path.exists(file)]


def missing_file_warning(file: str) -> str:
    """What a missing credential file means for the images of its rule."""
    return f"{file} does not exist: no credentials come from it (empty auth: an anonymous pull)"


class ValidateOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What to check, with the paths as this process sees them.

    ``kubelet_config`` and ``bin_dir`` are the kubelet's two flags (None: not checked);
    ``name`` is our provider's name in the kubelet config; ``kubelet_version`` judges as that
    kubelet would (None: the newest); ``config`` is our config as ``--config`` gives it (None:
    the one the kubelet's entry for us passes, else the environment, else the embedded one).
    """

    kubelet_config: Optional[str] = None
    bin_dir: Optional[str] = None
    name: str = PROVIDER_NAME
    kubelet_version: Optional[tuple[int, int]] = None
    config: Optional[str] = None


class Report(msgspec.Struct, kw_only=True):
    """Every check, and the kubelet's own start-up error if it would exit (``--output json``).

    ``kubelet_config`` is the kubelet config that was checked (None: our config only) and
    ``config`` the path of our config that was (None: the embedded default, or none loaded).
    """

    ok: bool
    status: str
    kubelet_config: Optional[str] = msgspec.field(name="kubeletConfig")
    config: Optional[str]
    checks: list[Check]
    kubelet_error: Optional[str] = msgspec.field(default=None, name="kubeletError")


def check(options: ValidateOptions) -> Report:
    """Every check of ``options``, in order: the kubelet's config, the bin dir, our entry, our
    config, then the two sides together."""
    validation = _Validation(options)
    loaded = validation.kubelet_config()
    validation.bin_dir_checks(loaded)
    ours = validation.our_provider(loaded)
    config = validation.provider_config()
    if ours is not None and config is not None:
        validation.coverage(ours, config)
    if ours is not None:
        validation.token_mode(ours, config)
    status = worst(validation.checks)
    return Report(
        ok=status != "fail",
        status=status,
        kubelet_config=validation.kubelet_config_path,
        config=validation.config_path,
        checks=validation.checks,
        kubelet_error=validation.kubelet_error,
    )


class _Validation:
    """The checks of one run, in the order they are made; ``checks`` grows as they go."""

    def __init__(self, options: ValidateOptions) -> None:
        self.options = options
        self.checks: list[Check] = []
        self.kubelet_error: str | None = None
        self._error_step = len(_STEPS)
        self.version = options.kubelet_version or NEWEST_KUBELET
        self.kubelet_config_path = options.kubelet_config
        self.bin_dir = options.bin_dir
        self.config_path: str | None = None

    def add(self, status: Status, check: str, detail: str = "") -> None:
        self.checks.append(Check(status=status, check=check, detail=detail))

    # --- the kubelet's config -------------------------------------------------------------------

    def kubelet_config(self) -> LoadedConfig | None:
        path = self.kubelet_config_path
        if path is None:
            return None
        if self.version < (1, 34) and os.path.isdir(path):
            self._kubelet_exits(
                "kubelet config",
                f"kubelet {self.version[0]}.{self.version[1]} reads one file; "
                "a directory needs kubelet 1.34+",
                "read",
            )
            return None
        try:
            loaded = load(path)
        except KubeletConfigError as exc:
            self._kubelet_exits("kubelet config", str(exc), "read")
            return None
        files = ", ".join(loaded.files)
        count = len(loaded.providers)
        self.add("ok", "kubelet config", f"{count} provider{'s' * (count != 1)} from {files}")
        self._validate_loaded(loaded)
        for index, item in enumerate(loaded.providers):
            for position, glob in enumerate(item.provider.match_images or ()):
                reach = globs.raw_prefix_reach(glob)
                for trap in [*globs.traps(glob), *([reach] if reach else [])]:
                    self.add("warn", f"providers[{index}].matchImages[{position}]", f"{glob!r}: {trap}")
        return loaded

    def _validate_loaded(self, loaded: LoadedConfig) -> None:
        """The kubelet's validation, provider by provider (its messages name no index)."""
        token_gate = self.version >= (1, 34)
        messages: list[str] = []
        if not loaded.providers:
            messages = validate([])
            for message in messages:
                self.add("fail", "kubelet config", message)
        for index, item in enumerate(loaded.providers):
            where = f"providers[{index}] {item.provider.name}"
            if self.version < (1, 33) and item.provider.token_attributes is not None:
                self._kubelet_exits(
                    where,
                    f"kubelet {self.version[0]}.{self.version[1]} has no tokenAttributes "
                    f'(strict decoding error: unknown field "providers[{index}].tokenAttributes"); '
                    "it needs 1.33+",
                    "read",
                )
                continue
            found = validate([item.provider], token_gate=token_gate)
            messages += found
            for message in found:
                self.add("fail", where, message)
        if messages:
            self._first_error(
                "failed to validate credential provider config: " + aggregate(messages), "validate"
            )
        elif self.kubelet_error is None:
            self.add("ok", "kubelet config", "passes the kubelet's validation")

    def _kubelet_exits(self, check: str, message: str, step: str, detail: str | None = None) -> None:
        """A check the kubelet fails at start-up with ``message`` (``detail``: ours, if longer)."""
        self.add("fail", check, detail or message)
        self._first_error(message, step)

    def _first_error(self, message: str, step: str) -> None:
        """Keeps the message of the kubelet's earliest failing step: the one it exits with."""
        if _STEPS.index(step) < self._error_step:
            self.kubelet_error, self._error_step = message, _STEPS.index(step)

    def bin_dir_checks(self, loaded: LoadedConfig | None) -> None:
        if self.bin_dir is None:
            return
        if not os.path.isdir(self.bin_dir):
            self._kubelet_exits("bin dir", f"plugin binary directory {self.bin_dir} did not exist", "bin dir")
            return
        self.add("ok", "bin dir", self.bin_dir)
        for item in loaded.providers if loaded else ():
            name = item.provider.name
            binary = os.path.normpath(os.path.join(self.bin_dir, name))
            if not os.path.exists(binary):
                # exec.LookPath returns "" on error, hence the kubelet's double space.
                self._kubelet_exits(
                    f"binary {name}",
                    "plugin binary executable  did not exist",
                    "binaries",
                    f"plugin binary executable  did not exist ({binary})",
                )
            elif os.path.isdir(binary) or not os.access(binary, os.X_OK):
                why = "is a directory" if os.path.isdir(binary) else "permission denied"
                self._kubelet_exits(
                    f"binary {name}",
                    f"error inspecting binary executable : exec: {go_quote(binary)}: {why}",
                    "binaries",
                )
            elif name == self.options.name:
                self._our_binary(binary)
            else:
                self.add("ok", f"binary {name}", binary)

    def _our_binary(self, binary: str) -> None:
        try:
            result = subprocess.run(
                [binary, "--version"],
                capture_output=True,
                timeout=VERSION_TIMEOUT_SECONDS,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = "did not answer in time" if isinstance(exc, subprocess.TimeoutExpired) else exc.strerror
            self.add("warn", f"binary {self.options.name}", f"{binary} --version failed: {reason}")
            return
        first = (result.stdout or result.stderr).decode("utf-8", "replace").strip().splitlines()[:1]
        line = first[0] if first else ""
        if result.returncode == 0 and line.startswith(PROVIDER_NAME):
            self.add("ok", f"binary {self.options.name}", f"{binary}: {line}")
        else:
            self.add(
                "warn",
                f"binary {self.options.name}",
                f"{binary} --version exited {result.returncode}: {line or '(no output)'}; is it this plugin?",
            )

    # --- our provider entry ---------------------------------------------------------------------

    def our_provider(self, loaded: LoadedConfig | None) -> LoadedProvider | None:
        if loaded is None:
            return None
        ours = [item for item in loaded.providers if item.provider.name == self.options.name]
        if not ours:
            names = ", ".join(item.provider.name for item in loaded.providers) or "none"
            self.add(
                "warn",
                f"provider {self.options.name}",
                f"no provider of that name (providers: {names}): the kubelet never runs this plugin; "
                "pass --name if it is installed under another name",
            )
            return None
        item = ours[0]
        self._check_args(item.provider)
        return item

    def _check_args(self, provider: CredentialProvider) -> None:
        from provider.__main__ import build_parser, fast_kubelet_args

        args = list(provider.args or ())
        where = "args"
        parsed = fast_kubelet_args(args)
        config: str | None
        timeout: str | None
        if parsed is not None:
            config, timeout = parsed.config, parsed.timeout
        else:
            try:
                namespace = build_parser().parse_args(args)
            except Exception as exc:  # argparse's usage error (a private class)
                self.add("fail", where, f"{args!r}: the plugin would exit 2 on every pull: {exc}")
                return
            if getattr(namespace, "run", None) is not None:
                self.add(
                    "fail",
                    where,
                    f"{args!r} runs the operator command {namespace.command!r}, not kubelet mode",
                )
                return
            config, timeout = namespace.config, namespace.timeout
        if timeout is not None:
            from provider.protocol import parse_timeout

            try:
                parse_timeout(timeout)
            except ValueError as exc:
                self.add("fail", where, f"{args!r}: the plugin would exit 2 on every pull: {exc}")
                return
        env = {var.name: var.value for var in provider.env or ()}
        from_kubelet = config or env.get(CONFIG_ENV) or None
        if (
            self.options.config
            and from_kubelet
            and os.path.abspath(self.options.config) != os.path.abspath(from_kubelet)
        ):
            self.add(
                "warn",
                where,
                f"checking --config {self.options.config}, but the kubelet passes {from_kubelet}",
            )
        if not self.options.config:
            self.config_path = from_kubelet
        self.add("ok", where, f"{args!r}: kubelet mode, config {from_kubelet or 'embedded default'}")

    # --- our config -----------------------------------------------------------------------------

    def provider_config(self) -> ProviderConfig | None:
        from provider.backends import built

        environ = dict(os.environ)
        if self.config_path is not None:
            environ[CONFIG_ENV] = self.config_path
        try:
            path = config_path(self.options.config, environ)
            config = load_config(path)
        except ConfigError as exc:
            from_environment = (
                not self.options.config and self.config_path is None and os.environ.get(CONFIG_ENV)
            )
            self.add("fail", "config", f"{exc} (named by {CONFIG_ENV})" if from_environment else str(exc))
            return None
        self.config_path = path
        backends = ", ".join(dict.fromkeys(rule.backend for rule in config.rules))
        count = len(config.rules)
        self.add(
            "ok", "config", f"{path or 'embedded default'}: {count} rule{'s' * (count != 1)} ({backends})"
        )
        for index, rule in enumerate(config.rules):
            if not built(rule.backend):
                fallback = isinstance(rule, CloudRule) and rule.on_no_identity == "next"
                then = "go to the next matching rule" if fallback else "fail until it ships"
                self.add(
                    "warn",
                    f"rules[{index}]",
                    f"backend {rule.backend!r} is not in this build: images it matches {then}",
                )
            for position, glob in enumerate(rule.match or ()):
                for trap in globs.traps(glob):
                    self.add("warn", f"rules[{index}].match[{position}]", f"{glob!r}: {trap}")
            for position, file in missing_files(rule):
                self.add("warn", f"rules[{index}].files[{position}]", missing_file_warning(file))
        self._shadowed(config)
        return config

    def _shadowed(self, config: ProviderConfig) -> None:
        earlier: globs.GlobIndex[int] = globs.GlobIndex()
        for index, rule in enumerate(config.rules):
            parsed = [(position, globs.parse(text)) for position, text in enumerate(rule.match or ())]
            for position, glob in parsed:
                if glob is None:
                    continue
                first = next(iter(earlier.covering(glob)), None)
                if first is not None:
                    other, other_index = first
                    self.add(
                        "warn",
                        f"rules[{index}].match[{position}]",
                        f"{glob.text!r} is shadowed by rules[{other_index}] {other.text!r}: "
                        "the first match wins",
                    )
            for _, glob in parsed:
                if glob is not None:
                    earlier.add(glob, index)

    # --- the two sides together -----------------------------------------------------------------

    def coverage(self, item: LoadedProvider, config: ProviderConfig) -> None:
        match_images = [
            g
            for g in map(globs.parse, item.provider.match_images or ())
            if g is not None and not globs.never_matches(g.text)
        ]
        if not match_images:
            return
        rule_globs: list[tuple[int, int, globs.Glob]] = []
        catch_all = any(rule.match is None for rule in config.rules)
        for index, rule in enumerate(config.rules):
            for position, text in enumerate(rule.match or ()):
                glob = globs.parse(text)
                if glob is not None and not globs.never_matches(text):
                    rule_globs.append((index, position, glob))
        kubelet_side: globs.GlobIndex[None] = globs.GlobIndex()
        for m in match_images:
            kubelet_side.add(m, None)
        for index, position, glob in rule_globs:
            where = f"rules[{index}].match[{position}]"
            if kubelet_side.covering(glob):
                continue
            partly = [m for m, _ in kubelet_side.overlapping(glob)]
            if partly:
                self.add(
                    "warn",
                    where,
                    f"{glob.text!r} is reached only in part: "
                    "the kubelet asks for those images only when they "
                    f"also match {', '.join(repr(m.text) for m in partly)}",
                )
                continue
            near = globs.hint(match_images, glob)
            hint = f" ({near})" if near else ""
            self.add(
                "warn",
                where,
                f"{glob.text!r} is never reached: no matchImages entry of {item.provider.name} covers it, "
                f"so the kubelet never asks for these images{hint}",
            )
        if not catch_all:
            self._served(match_images, [glob for _, _, glob in rule_globs])

    def _served(self, match_images: list[globs.Glob], all_rule_globs: list[globs.Glob]) -> None:
        """Each ``matchImages`` entry: does some rule of ours answer all, part or none of it?"""
        our_side: globs.GlobIndex[None] = globs.GlobIndex()
        for glob in all_rule_globs:
            our_side.add(glob, None)
        for position, m in enumerate(match_images):
            where = f"matchImages[{position}]"
            if our_side.covering(m):
                continue
            if our_side.overlapping(m):
                self.add(
                    "warn",
                    where,
                    f"{m.text!r} is served only in part: for its other images the plugin runs and answers "
                    "empty auth (anonymous pull)",
                )
                continue
            near = globs.hint(all_rule_globs, m)
            hint = f" ({near})" if near else ""
            self.add(
                "warn",
                where,
                f"{m.text!r}: no rule serves it, so the plugin runs for these images only to answer "
                f"empty auth (anonymous pull){hint}",
            )

    def token_mode(self, item: LoadedProvider, config: ProviderConfig | None) -> None:
        attributes = item.provider.token_attributes
        if attributes is None:
            return
        where = "token mode"
        audience = attributes.service_account_token_audience or "<audience>"
        self.add(
            "warn",
            where,
            "token mode: since Kubernetes 1.32 (ServiceAccountNodeAudienceRestriction) nodes need RBAC to "
            f"request tokens for audience {audience!r}, or the kubelet never runs the plugin in token mode;\n"
            "this cannot be checked from the node: "
            f"apply 'render --rbac --audience {audience}' on the cluster",
        )
        if attributes.cache_type == "Token":
            self.add(
                "warn",
                where,
                "cacheType Token: the kubelet caches per token, in practice per pod, so the plugin runs "
                "for every new pod; ServiceAccount is enough unless the token itself is the password",
            )
        ours = config.cache.service_account_cache_type if config is not None else None
        if ours is not None and attributes.cache_type and ours != attributes.cache_type:
            self.add(
                "warn",
                where,
                f"the kubelet caches per {attributes.cache_type} (tokenAttributes.cacheType) but our disk "
                f"cache keys pod credentials per {ours} (cache.serviceAccountCacheType): set both alike",
            )
        from provider.backends import BACKENDS, BY_NAME

        if config is not None and not any(BY_NAME[r.backend].uses_token for r in config.rules):
            users = ", ".join(spec.name for spec in BACKENDS if spec.uses_token)
            self.add(
                "warn",
                where,
                f"no rule's backend uses the service account token (only {users} do): the kubelet "
                "requests a token on every pull for nothing",
            )
