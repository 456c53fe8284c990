"""Helpers for the infrastructure tests: synthesize the app, find resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Stack
from stacube_infra.stack import StacubeStack, build_app

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGE = "test"


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """Context of ``cdk.json`` plus skipped bundling, stage ``test`` and ``overrides``."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update({"aws:cdk:bundling-stacks": [], "stage": STAGE})
    context.update(overrides)
    return context


def synth_stack(tmp_dir: Path, **overrides: Any) -> StacubeStack:
    """Build the app with ``overrides`` in context and return its stack."""
    app: App = build_app(cdk_context(**overrides), outdir=str(tmp_dir))
    stack = app.node.find_child(f"stacube-{overrides.get('stage', STAGE)}")
    assert isinstance(stack, StacubeStack)
    return stack


def logical_id(construct: Any) -> str:
    """CloudFormation logical ID of an L2 construct (its default child) or L1 resource."""
    resource = getattr(construct.node, "default_child", None) or construct
    stack = Stack.of(resource)
    return str(stack.resolve(stack.get_logical_id(resource)))


def resources_of(template_json: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """Resources of one type, by logical ID."""
    return {
        key: value
        for key, value in template_json["Resources"].items()
        if value["Type"] == resource_type
    }


def functions_by_name(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Properties of the ``stacube-test-<name>`` functions, by ``name``."""
    prefix = f"stacube-{STAGE}-"
    found = {}
    for resource in resources_of(template_json, "AWS::Lambda::Function").values():
        name = resource["Properties"].get("FunctionName", "")
        if isinstance(name, str) and name.startswith(prefix):
            found[name.removeprefix(prefix)] = resource["Properties"]
    return found
