"""Secrets the API hands out (API keys, device credentials): made, hashed and checked here.

Both are 32 random bytes, so a plain SHA-256 is the right hash: a slow password hash guards
guessable secrets, and these are not guessable. A key reads `iotlm_<prefix>_<secret>`; the prefix is
stored in clear to find the row, the hash of the whole key to check it, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque

from iotlm.credentials import mosquitto_digest

KEY_PREFIX_CHARS = 8
SCOPES = ("read", "label", "admin")
# What each scope lets a key do besides its own: admin implies label implies read.
IMPLIED = {"read": {"read"}, "label": {"read", "label"}, "admin": {"read", "label", "admin"}}


def new_key() -> tuple[str, str]:
    """(key, its lookup prefix)."""
    prefix = secrets.token_hex(KEY_PREFIX_CHARS // 2)
    return f"iotlm_{prefix}_{secrets.token_urlsafe(32)}", prefix


def key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "iotlm" or len(parts[1]) != KEY_PREFIX_CHARS:
        return None
    return parts[1]


def digest(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


# Device secrets are also MQTT passwords, so devices' hashes are stored in Mosquitto's `$7$` format
# (iotlm.credentials.mosquitto_digest), which the broker's password file and the API both check.
device_digest = mosquitto_digest


def matches(secret: str, stored: str) -> bool:
    if stored.startswith("$7$"):
        try:
            _, _, iterations, salt, _ = stored.split("$")
            expected = mosquitto_digest(secret, base64.b64decode(salt), int(iterations))
        except ValueError:
            return False
        return hmac.compare_digest(expected.encode(), stored.encode())
    return hmac.compare_digest(digest(secret).encode(), stored.encode())


def new_device_secret() -> str:
    return secrets.token_urlsafe(32)


def granted(scopes: list[str]) -> set[str]:
    """Every scope a key holding `scopes` may use."""
    return set().union(*(IMPLIED.get(s, set()) for s in scopes))


class FailedAttempts:
    """Failed key attempts per client over a sliding window: past the limit, the client waits.

    In memory, per API process: enough to make guessing keys from one address hopeless; several API
    processes behind a balancer each keep their own count.
    """

    def __init__(self, limit: int, window_s: float, clock=time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures[client]
        cutoff = self.clock() - self.window_s
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None when it is not limited."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            if not failures:
                self._failures.pop(client, None)
            return None
        return max(0.0, failures[0] + self.window_s - self.clock())

    def failed(self, client: str) -> None:
        self._recent(client).append(self.clock())
