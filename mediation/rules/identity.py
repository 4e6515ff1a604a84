"""Stable, privacy-preserving identities derived from what SDKs send."""

from __future__ import annotations

import hashlib

__all__ = ["ROLLOUT_BUCKETS", "device_hash", "hash_app_key", "rollout_bucket"]

ROLLOUT_BUCKETS = 100


def device_hash(app_id: str, device_id: str) -> str:
    """Per-app device hash: raw device ids are never stored."""
    return hashlib.sha256(f"{app_id}\x00{device_id}".encode()).hexdigest()[:32]


def rollout_bucket(device_id: str) -> int:
    """Stable bucket 0..99 of a device; a rollout to N% serves buckets < N."""
    digest = hashlib.sha256(device_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % ROLLOUT_BUCKETS


def hash_app_key(app_key: str) -> str:
    """How write keys are stored: SHA-256 hex (keys are long random tokens)."""
    return hashlib.sha256(app_key.encode()).hexdigest()
