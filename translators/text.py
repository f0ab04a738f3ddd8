"""Checks on free text before it can reach XML, the host or a terminal.

XML 1.0 (and so lxml and libvirt) refuses C0 control characters, lone
surrogates and U+FFFE/U+FFFF; libvirt's schema refuses newlines in names,
titles and paths. All of them are refused here as bad input, up front, with
one line that shows the character by its code point (never raw).
"""

from __future__ import annotations

import re
import unicodedata

from translators.errors import HpvmError

PATH_MAX = 4096  # bytes, with the terminating NUL (Linux)
NAME_MAX = 255  # bytes of one path component
LABEL_MAX = 255  # HPVM 6.3: a label has at most 255 characters
TEXT_MAX = 4096  # any other free text (kernel command line)
ASCII_NUMBER = re.compile(r"[0-9]+")
#: Unicode categories never allowed in text: controls, surrogates, line/paragraph separators.
BAD_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
#: XML 1.0 allows tab, LF and CR among the controls; a config file may hold them.
FILE_WHITESPACE = "\t\n\r"


def bad_character(text: str, allowed: str = "") -> str | None:
    """The first character of `text` that no text field may hold, or None."""
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in BAD_CATEGORIES or char in "\ufffe\uffff":
            return char
    return None


def describe(char: str) -> str:
    """A character as `U+000A` (with its name when it has one)."""
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{code} {name}" if name else code


def check_text(value: str, what: str, statement: str | None = None, limit: int = TEXT_MAX) -> str:
    """`value` unchanged if it is plain text of at most `limit` characters."""
    char = bad_character(value)
    if char is not None:
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise HpvmError(f"{what} is not valid UTF-8 (byte {_escaped_byte(char)})", statement)
        kind = "a control character" if unicodedata.category(char) == "Cc" else "a character"
        raise HpvmError(f"{what} contains {kind} XML does not allow ({describe(char)})", statement)
    if len(value) > limit:
        raise HpvmError(f"{what} is longer than {limit} characters", statement)
    return value


def check_path(value: str, what: str, statement: str | None = None) -> str:
    """An absolute path naming a file (not `/`), within PATH_MAX and NAME_MAX."""
    check_text(value, what, statement, limit=len(value))
    if not value.startswith("/"):
        raise HpvmError(f"{what} '{_short(value, 80)}' is not absolute", statement)
    if value.strip("/") == "":
        raise HpvmError(f"{what} '{value}' names the root directory, not a file", statement)
    encoded = value.encode()
    if len(encoded) >= PATH_MAX:
        raise HpvmError(f"{what} is longer than {PATH_MAX - 1} bytes (PATH_MAX)", statement)
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise HpvmError(
            f"{what} has a component longer than {NAME_MAX} bytes (NAME_MAX)", statement
        )
    return value


def parse_number(text: str, what: str, statement: str | None = None, digits: int = 9) -> int:
    """A number of ASCII digits only (no Unicode digits, signs or spaces), at most `digits`."""
    if not ASCII_NUMBER.fullmatch(text):
        raise HpvmError(f"{what} '{_short(text)}' is not a number", statement)
    if len(text) > digits:
        raise HpvmError(f"{what} has more than {digits} digits", statement)
    return int(text)


def printable(text: str) -> str:
    """`text` with every character `bad_character` refuses written as an escape (one line)."""
    if bad_character(text) is None:
        return text
    out = []
    for char in text:
        if bad_character(char) is None:
            out.append(char)
        elif 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(_escaped_byte(char))
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _escaped_byte(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"


def _short(text: str, limit: int = 40) -> str:
    """A value to quote inside a message: escaped, and cut when long."""
    text = printable(text)
    return text if len(text) <= limit else text[:limit] + "..."
