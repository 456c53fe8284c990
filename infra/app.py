#!/usr/bin/env python3
"""CDK app entry point: ``cdk synth`` / ``cdk deploy`` run this (see ``cdk.json``).

The stage and every other setting come from CDK context, e.g.
``cdk deploy --all -c stage=prod -c alarm_email=ops@example.org``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacube_infra.stack import build_app


def main() -> None:
    """Build the app from the context the CDK CLI passes in, and synthesize it."""
    build_app().synth()


if __name__ == "__main__":
    main()
