"""Messages are checked by the facts they must carry (the input's name, the number, the fix), not by wording."""

from __future__ import annotations


def says(message: str, *facts: str) -> None:
    missing = [fact for fact in facts if fact not in message]
    assert not missing, f"{missing} missing from: {message}"
