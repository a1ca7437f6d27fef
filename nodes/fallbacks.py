"""Features of ComfyUI the pack uses when they are there: an older or a stand-in ComfyUI may lack one, and the
pack then says once, at warning level, what that costs instead of failing or staying silent."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MISSING = (ImportError, AttributeError)
"""What a missing or renamed piece of ComfyUI raises; every other error is a real one and propagates."""

_warned: set[str] = set()


def unavailable(feature: str, exc: BaseException, consequence: str) -> None:
    if feature not in _warned:
        _warned.add(feature)
        log.warning("AniTalker: ComfyUI's %s is unavailable (%s: %s); %s", feature, type(exc).__name__, exc,
                    consequence)


def ignored(method: str, keywords: dict) -> None:
    """Keywords a later ComfyUI passes that the pack does not know yet: said once, and the call goes on."""
    feature = f"{method}({', '.join(sorted(keywords))})"
    if feature not in _warned:
        _warned.add(feature)
        log.warning("AniTalker: ComfyUI passed %s to %s, which this version of the pack does not know; it is "
                    "ignored (update the pack if the result misses it)", ", ".join(sorted(keywords)), method)
