"""The one error type a user can cause, and the warnings collected on the way."""

from __future__ import annotations


class HpvmError(Exception):
    """Bad input: a statement, option or rule violation. Maps to exit status 2."""

    def __init__(self, message: str, statement: str | None = None) -> None:
        self.statement = statement
        if statement is not None:
            message = f"{message}: '{statement}'"
        super().__init__(message)


class Warnings(list[str]):
    """Warnings collected while parsing; printed by the command front ends."""

    def add(self, message: str) -> None:
        self.append(message)
