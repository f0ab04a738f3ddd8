"""The one error type a user can cause, and the warnings collected on the way."""

from __future__ import annotations

QUOTE_MAX = 300  # characters of a statement quoted in a message


class HpvmError(Exception):
    """Bad input: a statement, option or rule violation. Maps to exit status 2.

    The message is one printable line: control characters are escaped and a
    long statement is cut (input may come from any file).
    """

    def __init__(self, message: str, statement: str | None = None) -> None:
        from translators.text import printable

        self.statement = statement
        if statement is not None:
            if len(statement) > QUOTE_MAX:
                statement = f"{statement[:QUOTE_MAX]}... ({len(statement)} characters)"
            message = f"{message}: '{statement}'"
        super().__init__(printable(message))


class Warnings(list[str]):
    """Warnings collected while parsing; printed by the command front ends."""

    def add(self, message: str) -> None:
        self.append(message)
