"""The condition language: a recursive-descent parser over the tokens of ``rules.tokens``, producing a
small AST.

Nothing here (or anywhere in the rules package) calls ``eval``, ``exec``, ``compile`` or Python's
``ast``: a condition is text read by ``tokenize`` and ``Parser``, and the only things it can name are
feature columns and the functions in ``FUNCTIONS``. Grammar, loosest binding first::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := additive [ ("<" | "<=" | ">" | ">=" | "==" | "!=") additive
                           | ["not"] "in" "[" literal ("," literal)* [","] "]"
                           | "is" ["not"] "null" ]
    additive   := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null"
                | FUNCTION "(" [condition ("," condition)*] ")"
                | FEATURE | "(" condition ")"
    literal    := ["-"] NUMBER | STRING | "true" | "false" | "null"

Comparisons do not chain (``a < b < c`` is a syntax error: write ``a < b and b < c``).
"""

from __future__ import annotations

from dataclasses import dataclass

from detector.detect.rules.errors import ExpressionError
from detector.detect.rules.tokens import INT64_MAX, INT64_MIN, LiteralValue, Token, TokenKind, tokenize

#: Whitelisted functions: name -> (fewest arguments, most arguments or None for "any number").
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "log1p": (1, 1),
    "min": (2, None),
    "max": (2, None),
    "coalesce": (2, None),
    "between": (3, 3),
}

COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})

#: Nesting deeper than this is certainly a mistake; the cap keeps the parser off Python's stack limit.
MAX_DEPTH = 64
#: Most operations in one chain (``a and b and ...``): the checker recurses once per level, so this
#: bounds its stack use far below Python's limit while leaving room for any sane rule.
MAX_AST_DEPTH = 256


# --- AST -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: int, float, string, boolean or null."""

    value: LiteralValue
    pos: int


@dataclass(frozen=True, slots=True)
class Feature:
    """A feature column of the frame the rule runs on."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    """``not x`` or ``-x``; ``pos`` is the operator's offset."""

    op: str
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    """``and``/``or``, a comparison or arithmetic; ``pos`` is the operator's offset."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class InList:
    """``x in [...]`` or ``x not in [...]``; ``pos`` is the ``in``/``not`` offset."""

    operand: Node
    items: tuple[Literal, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class IsNull:
    """``x is null`` or ``x is not null``; ``pos`` is the ``is`` offset."""

    operand: Node
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a whitelisted function; ``pos`` is the function name's offset."""

    name: str
    args: tuple[Node, ...]
    pos: int


Node = Literal | Feature | Unary | Binary | InList | IsNull | Call


class Parser:
    """Recursive-descent parser over the tokens of one condition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # token helpers
    def peek(self, ahead: int = 0) -> Token:
        """The token ``ahead`` places after the current one (the end token past the end)."""
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        """Consume and return the current token (raising the tokenizer's error if it is one)."""
        tok = self.peek()
        if tok.kind == "error":
            raise ExpressionError(tok.text, tok.pos)
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return tok

    def at(self, kind: TokenKind, text: str | None = None, ahead: int = 0) -> bool:
        """Whether the token ``ahead`` has this kind (and text)."""
        tok = self.peek(ahead)
        return tok.kind == kind and (text is None or tok.text == text)

    def expect_op(self, text: str, context: str) -> Token:
        """Consume the operator ``text`` or fail saying what was found instead."""
        if not self.at("op", text):
            tok = self.peek()
            raise ExpressionError(f"expected '{text}' {context}, got {tok.describe()}", tok.pos)
        return self.advance()

    # grammar
    def parse(self) -> Node:
        """Parse the whole condition."""
        if self.at("end"):
            raise ExpressionError("empty condition", 0)
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ExpressionError(f"unexpected {tok.describe()}{self._after_hint(tok)}", tok.pos)
        return node

    def _after_hint(self, tok: Token) -> str:
        if tok.kind == "op" and tok.text == "[":
            return ": subscripts are not part of the condition language (lists only follow 'in')"
        if tok.kind == "op" and tok.text == "(":
            return ": only the functions " + ", ".join(sorted(FUNCTIONS)) + " can be called"
        if tok.kind in ("name", "number", "string", "keyword"):
            return ": a missing operator?"
        return ""

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"condition nested more than {MAX_DEPTH} levels deep", pos)

    def or_expr(self) -> Node:
        """``and_expr ("or" and_expr)*``."""
        node = self.and_expr()
        while self.at("keyword", "or"):
            op = self.advance()
            node = Binary("or", node, self.and_expr(), op.pos)
        return node

    def and_expr(self) -> Node:
        """``not_expr ("and" not_expr)*``."""
        node = self.not_expr()
        while self.at("keyword", "and"):
            op = self.advance()
            node = Binary("and", node, self.not_expr(), op.pos)
        return node

    def not_expr(self) -> Node:
        """``"not" not_expr | comparison``."""
        if self.at("keyword", "not"):
            op = self.advance()
            self._enter(op.pos)
            operand = self.not_expr()
            self.depth -= 1
            return Unary("not", operand, op.pos)
        return self.comparison()

    def _at_comparison(self) -> bool:
        return (
            (self.peek().kind == "op" and self.peek().text in COMPARISONS)
            or self.at("keyword", "in")
            or self.at("keyword", "is")
            or (self.at("keyword", "not") and self.at("keyword", "in", ahead=1))
        )

    def comparison(self) -> Node:
        """``additive`` optionally followed by one comparison, ``in`` list or ``is null`` test."""
        left = self.additive()
        if not self._at_comparison():
            return left
        tok = self.advance()
        node: Node
        if tok.kind == "op":
            node = Binary(tok.text, left, self.additive(), tok.pos)
        elif tok.text == "is":
            negated = False
            if self.at("keyword", "not"):
                self.advance()
                negated = True
            if not self.at("keyword", "null"):
                nxt = self.peek()
                raise ExpressionError(
                    f"expected 'null' after 'is{' not' if negated else ''}', got {nxt.describe()}"
                    " ('is' only tests for null; use '==' to compare)",
                    nxt.pos,
                )
            self.advance()
            node = IsNull(left, negated, tok.pos)
        else:
            negated = tok.text == "not"
            if negated:
                self.advance()  # the 'in'
            node = InList(left, self.literal_list(), negated, tok.pos)
        if self._at_comparison():
            nxt = self.peek()
            raise ExpressionError("comparisons do not chain: combine them with 'and'", nxt.pos)
        return node

    def literal_list(self) -> tuple[Literal, ...]:
        """``"[" literal ("," literal)* [","] "]"``."""
        self.expect_op("[", "after 'in'")
        items: list[Literal] = []
        while not self.at("op", "]"):
            items.append(self.literal())
            if self.at("op", ","):
                self.advance()
            elif not self.at("op", "]"):
                tok = self.peek()
                raise ExpressionError(f"expected ',' or ']' in list, got {tok.describe()}", tok.pos)
        close = self.advance()
        if not items:
            raise ExpressionError("empty list after 'in'", close.pos)
        return tuple(items)

    def literal(self) -> Literal:
        """A constant list item: ``["-"] NUMBER | STRING | true | false | null``."""
        tok = self.advance()
        if tok.kind == "op" and tok.text == "-" and self.at("number"):
            num = self.advance()
            assert isinstance(num.value, int | float)
            return Literal(_checked_negation(num.value, tok.pos), tok.pos)
        if tok.kind in ("number", "string"):
            return Literal(tok.value, tok.pos)
        if tok.kind == "keyword" and tok.text in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[tok.text], tok.pos)
        raise ExpressionError(f"list items must be constants, got {tok.describe()}", tok.pos)

    def additive(self) -> Node:
        """``term (("+" | "-") term)*``."""
        node = self.term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.advance()
            node = Binary(op.text, node, self.term(), op.pos)
        return node

    def term(self) -> Node:
        """``unary (("*" | "/") unary)*``."""
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.advance()
            node = Binary(op.text, node, self.unary(), op.pos)
        return node

    def unary(self) -> Node:
        """``"-" unary | primary``; a minus before a number literal folds into the literal."""
        if self.at("op", "-"):
            op = self.advance()
            if self.at("number"):
                num = self.advance()
                assert isinstance(num.value, int | float)
                return Literal(_checked_negation(num.value, op.pos), op.pos)
            self._enter(op.pos)
            operand = self.unary()
            self.depth -= 1
            return Unary("-", operand, op.pos)
        return self.primary()

    def primary(self) -> Node:
        """A constant, a feature, a function call or a parenthesised condition."""
        tok = self.advance()
        if tok.kind in ("number", "string"):
            if tok.kind == "number" and isinstance(tok.value, int) and tok.value > INT64_MAX:
                raise ExpressionError(f"integer {tok.text} does not fit in 64 bits", tok.pos)
            return Literal(tok.value, tok.pos)
        if tok.kind == "keyword":
            if tok.text in ("true", "false", "null"):
                return Literal({"true": True, "false": False, "null": None}[tok.text], tok.pos)
            raise ExpressionError(f"expected a value, got {tok.describe()}", tok.pos)
        if tok.kind == "name":
            if self.at("op", "("):
                return self.call(tok)
            if tok.text.lower() in ("true", "false", "null", "none"):
                word = {"none": "null"}.get(tok.text.lower(), tok.text.lower())
                raise ExpressionError(f"unknown name '{tok.text}': write '{word}'", tok.pos)
            return Feature(tok.text, tok.pos)
        if tok.kind == "op" and tok.text == "(":
            self._enter(tok.pos)
            node = self.or_expr()
            self.depth -= 1
            self.expect_op(")", "to close '('")
            return node
        if tok.kind == "op" and tok.text == "[":
            raise ExpressionError("a list is only allowed after 'in' / 'not in'", tok.pos)
        raise ExpressionError(f"expected a value, got {tok.describe()}", tok.pos)

    def call(self, name: Token) -> Call:
        """``FUNCTION "(" [condition ("," condition)*] ")"`` for a whitelisted function."""
        if name.text not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"unknown function '{name.text}' (allowed: {allowed})", name.pos)
        self._enter(name.pos)
        self.advance()  # '('
        args: list[Node] = []
        if not self.at("op", ")"):
            args.append(self.or_expr())
            while self.at("op", ","):
                self.advance()
                args.append(self.or_expr())
        self.expect_op(")", f"to close {name.text}(")
        self.depth -= 1
        return Call(name.text, tuple(args), name.pos)


def _checked_negation(value: int | float, pos: int) -> int | float:
    if isinstance(value, int) and -value < INT64_MIN:
        raise ExpressionError(f"integer -{value} does not fit in 64 bits", pos)
    return -value


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary | IsNull | InList):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def ast_depth(root: Node) -> int:
    """The depth of the tree (a lone literal is 1), computed without recursion."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in _children(node))
    return deepest


def parse_condition(text: str) -> Node:
    """Parse a condition into its AST; raises ``ExpressionError`` (with the offset) on bad syntax."""
    tree = Parser(text).parse()
    if ast_depth(tree) > MAX_AST_DEPTH:
        raise ExpressionError(f"condition chains more than {MAX_AST_DEPTH} operations: split the rule", 0)
    return tree
