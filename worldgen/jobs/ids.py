"""Ids of worlds, uploads, keys and webhook deliveries: 32 lowercase hex characters."""

from __future__ import annotations

import re
import uuid

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
"""What `new_id` makes: world and upload ids are checked against it before any query."""


def valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def new_id() -> str:
    return uuid.uuid4().hex
