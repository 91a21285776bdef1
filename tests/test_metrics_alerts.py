"""The example alert in ``node-config/fleet/components/metrics-alerts``: it renders with the fleet
base, is a well-formed PrometheusRule, and names only series and labels our textfile has."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from provider import metrics
from tests.test_install_fleet import FLEET, by_kind, kustomize

COMPONENT = FLEET / "components" / "metrics-alerts"
# Labels node_exporter and Prometheus add to every series of the textfile.
SCRAPE_LABELS = {"instance", "job"}


def rules() -> list[dict[str, Any]]:
    import yaml

    document = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    found: list[dict[str, Any]] = []
    for group in document["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        found += group["rules"]
    return found


def test_the_component_renders_with_the_base(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(FLEET / 'base', overlay)}]\n"
        f"components: [{os.path.relpath(COMPONENT, overlay)}]\n"
    )
    [rule] = by_kind(kustomize(overlay), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "registry-credential-provider"


def test_every_rule_is_well_formed() -> None:
    found = rules()
    names = [rule["alert"] for rule in found]
    assert "RegistryCredentialsExpiringWithoutRefresh" in names
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_the_rules_name_only_our_series_and_labels() -> None:
    ours = {
        label
        for update in (metrics.hit("ecr", "r.io", 1.0, 1.0, "fast"),)
        for _, labels, _ in update.increments + update.latest
        for label, _ in labels
    } | {"kind", "outcome", "path", "backend", "registry"}
    for rule in rules():
        expr = rule["expr"]
        series = set(re.findall(r"registry_credential_provider_\w+", expr))
        assert series, expr
        assert series <= set(metrics.FAMILIES), series - set(metrics.FAMILIES)
        for grouping in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",")}
            assert labels <= ours | SCRAPE_LABELS, labels
        for label in re.findall(r"\{\{ \$labels\.(\w+) \}\}", str(rule["annotations"])):
            assert label in ours | SCRAPE_LABELS


def test_the_expiry_alert_joins_expiry_with_failures_of_the_same_registry() -> None:
    [rule] = [rule for rule in rules() if rule["alert"] == "RegistryCredentialsExpiringWithoutRefresh"]
    assert metrics.CREDENTIAL_EXPIRY in rule["expr"]
    assert metrics.UPSTREAM_FAILURES in rule["expr"]
    assert "on (instance, registry)" in rule["expr"]
