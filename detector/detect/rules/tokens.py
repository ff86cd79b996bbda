r"""The condition language's tokens: a hand-written tokenizer (no ``eval``, ``exec`` or Python's
``tokenize``) that ends with an ``end`` token, or an ``error`` token at the first bad character.

Lexical rules: names ``[A-Za-z_][A-Za-z0-9_]*`` (the keywords below are reserved), numbers (an integer
fits in Int64; a float needs a leading digit), strings in single or double quotes with the escapes
``\\ \' \" \n \t``, and the operators in ``_OPERATORS``. Habits from other languages (``&&``,
``=``, ``.``...) get a hint saying what to write instead. ``detector.detect.rules.expr`` parses the
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

from detector.detect.rules.errors import ExpressionError
from detector.errors import DetectorError

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "true", "false", "null"})

# Longest first, so "<=" wins over "<".
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",")

# Typical habits from other languages, each answered with what to write instead.
_HINTS = {
    "&&": "use 'and'",
    "||": "use 'or'",
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not'",
    "=": "use '==' to compare",
    ".": "attribute access is not part of the condition language",
    ":": "':' is not part of the condition language (no lambdas, slices or dicts)",
    "{": "'{' is not part of the condition language",
    "}": "'}' is not part of the condition language",
    "@": "'@' is not part of the condition language",
    ";": "a condition is one expression",
}

#: A condition longer than this is certainly a mistake; the cap keeps parsing cheap on hostile input.
MAX_CONDITION_CHARS = 10_000
#: Integer literals are Int64 columns in polars.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

TokenKind = TypingLiteral["number", "string", "name", "keyword", "op", "end", "error"]
LiteralValue = int | float | str | bool | None


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (or decoded value for strings and numbers) and 0-based offset."""

    kind: TokenKind
    text: str
    pos: int
    value: LiteralValue = None

    def describe(self) -> str:
        """How error messages name this token."""
        if self.kind == "error":
            raise ExpressionError(self.text, self.pos)
        if self.kind == "end":
            return "end of condition"
        if self.kind == "string":
            return f"string {self.text}"
        return f"'{self.text}'"


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_name_char(ch: str) -> bool:
    return _is_name_start(ch) or ("0" <= ch <= "9")


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def _read_string(text: str, start: int) -> tuple[Token, int]:
    quote = text[start]
    i = start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return Token("string", text[start : i + 1], start, "".join(out)), i + 1
        if ch == "\\":
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise ExpressionError(f"unknown escape '\\{esc}' in string", i)
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    raise ExpressionError("unterminated string", start)


def _read_number(text: str, start: int) -> tuple[Token, int]:
    i = start
    while i < len(text) and _is_digit(text[i]):
        i += 1
    is_float = False
    if i < len(text) and text[i] == "." and i + 1 < len(text) and _is_digit(text[i + 1]):
        is_float = True
        i += 1
        while i < len(text) and _is_digit(text[i]):
            i += 1
    if i < len(text) and text[i] in "eE":
        j = i + 1
        if j < len(text) and text[j] in "+-":
            j += 1
        if j < len(text) and _is_digit(text[j]):
            is_float = True
            i = j
            while i < len(text) and _is_digit(text[i]):
                i += 1
    if i < len(text) and (_is_name_char(text[i]) or text[i] == "."):
        raise ExpressionError(f"malformed number '{text[start : i + 1]}'", start)
    literal = text[start:i]
    # checked before int(): Python refuses to convert more than 4300 digits (ValueError)
    if not is_float and len(literal.lstrip("0")) > len(str(INT64_MAX)):
        shown = literal if len(literal) <= 24 else f"{literal[:20]}... ({len(literal)} digits)"
        raise ExpressionError(f"integer {shown} does not fit in 64 bits", start)
    value: int | float = float(literal) if is_float else int(literal)
    if isinstance(value, int) and value > INT64_MAX + 1:  # + 1: "-9223372036854775808" is still valid
        raise ExpressionError(f"integer {literal} does not fit in 64 bits", start)
    return Token("number", literal, start, value), i


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens, ending with an ``end`` token, or an ``error`` token at bad input.

    The parser raises the error token's message only when it reaches it, so the first problem in
    reading order is the one reported (``f(x).y`` names the unknown function, not the dot).
    """
    try:
        return _tokenize(text)
    except _TokenizeError as exc:
        return [*exc.tokens, Token("error", exc.error.message, exc.error.pos)]


class _TokenizeError(DetectorError):
    def __init__(self, tokens: list[Token], error: ExpressionError) -> None:
        self.tokens = tokens
        self.error = error


def _tokenize(text: str) -> list[Token]:
    if len(text) > MAX_CONDITION_CHARS:
        raise ExpressionError(f"condition longer than {MAX_CONDITION_CHARS} characters", MAX_CONDITION_CHARS)
    tokens: list[Token] = []
    i = 0
    try:
        while i < len(text):
            ch = text[i]
            if ch in " \t\r\n":
                i += 1
            elif ch in "'\"":
                tok, i = _read_string(text, i)
                tokens.append(tok)
            elif _is_digit(ch) or (ch == "." and i + 1 < len(text) and _is_digit(text[i + 1])):
                if ch == ".":
                    raise ExpressionError("write a leading zero: '0.5', not '.5'", i)
                tok, i = _read_number(text, i)
                tokens.append(tok)
            elif _is_name_start(ch):
                j = i + 1
                while j < len(text) and _is_name_char(text[j]):
                    j += 1
                word = text[i:j]
                tokens.append(Token("keyword" if word in KEYWORDS else "name", word, i))
                i = j
            else:
                for op in _OPERATORS:
                    if text.startswith(op, i):
                        tokens.append(Token("op", op, i))
                        i += len(op)
                        break
                else:
                    two = text[i : i + 2]
                    hint = _HINTS.get(two) or _HINTS.get(ch)
                    shown = two if two in _HINTS else ch
                    message = f"unexpected character {shown!r}" + (f": {hint}" if hint else "")
                    raise ExpressionError(message, i)
    except ExpressionError as exc:
        raise _TokenizeError(tokens, exc) from None
    tokens.append(Token("end", "", len(text)))
    return tokens
