"""Who may reach the chat: this machine only, unless a password guards it."""

from __future__ import annotations

import hmac
import ipaddress

from kbqa.errors import SettingError


def is_loopback(address: str) -> bool:
    """Example: is_loopback("127.0.0.1") and not is_loopback("0.0.0.0")"""
    if address.strip().lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(address: str, password: str) -> None:
    """Refuse to serve documents beyond this machine without a password."""
    if not is_loopback(address) and not password:
        raise SettingError(
            f"serving on {address} would let anyone on the network read your documents: set "
            "an access password (KBQA_UI_PASSWORD=...) or serve on 127.0.0.1 (the default)")


def password_ok(given: str, expected: str) -> bool:
    """Constant-time comparison, so the check does not leak the password's prefix."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"),
                                                   expected.encode("utf-8"))
