"""The condition language of ``curate filter --expr``: a small, safe grammar compiled to polars expressions.

Nothing is evaluated as Python: a tokenizer and a recursive-descent parser accept only what the grammar
below names and build polars expressions; anything else is refused with the expression and a caret under
the offending token.

    expr       := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum | "not"? "in" list)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | postfix
    postfix    := atom ("." method "(" arguments ")" | ".str." method "(" … ")" | ".list." method "(" … ")")*
    atom       := column | `any column` | number | "string" | 'string' | true | false | "(" expr ")"

Methods: ``is_null()``, ``is_not_null()``, ``is_in([...])``; ``.str.contains(s)`` (a plain substring, not
a regex), ``.str.starts_with(s)``, ``.str.ends_with(s)``, ``.str.len_chars()``, ``.str.to_lowercase()``;
``.list.contains(value)``, ``.list.len()``. Method arguments are literals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from curate.io.errors import UsageError

KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|[<>+\-*/%().,\[\]])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_COMPARISONS: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_ARITHMETIC: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "%": lambda a, b: a % b,
}
# namespace → method → (argument kinds, builder); "value" is a literal, "list" a list of literals
_METHODS: dict[str, dict[str, tuple[tuple[str, ...], Callable[..., pl.Expr]]]] = {
    "": {
        "is_null": ((), lambda e: e.is_null()),
        "is_not_null": ((), lambda e: e.is_not_null()),
        "is_in": (("list",), lambda e, values: e.is_in(values)),
    },
    "str": {
        "contains": (("string",), lambda e, s: e.str.contains(s, literal=True)),
        "starts_with": (("string",), lambda e, s: e.str.starts_with(s)),
        "ends_with": (("string",), lambda e, s: e.str.ends_with(s)),
        "len_chars": ((), lambda e: e.str.len_chars()),
        "to_lowercase": ((), lambda e: e.str.to_lowercase()),
    },
    "list": {
        "contains": (("value",), lambda e, v: e.list.contains(v)),
        "len": ((), lambda e: e.list.len()),
    },
}


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name (a keyword too), quoted, op, end
    text: str
    position: int


@dataclass
class Clause:
    """One top-level ``and`` operand: its polars expression and its source text (the removal reason)."""

    expr: pl.Expr
    text: str


@dataclass
class Condition:
    source: str
    clauses: list[Clause]
    columns: dict[str, int] = field(default_factory=dict)  # column → position of its first mention

    def error(self, position: int, problem: str) -> UsageError:
        return expression_error(self.source, position, problem)

    def check_columns(self, available: list[str]) -> None:
        """Refuse a column that the data does not have, naming the ones it has."""
        for name, position in self.columns.items():
            if name not in available:
                raise self.error(position, f"unknown column '{name}' (columns: {', '.join(available)})")


def expression_error(source: str, position: int, problem: str) -> UsageError:
    return UsageError(f"--expr: {problem}\n  {source}\n  {' ' * position}^")


def tokenize(source: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise expression_error(source, position, f"unexpected character {source[position]!r}")
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup or "", match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = tokenize(source)
        self.at = 0
        self.columns: dict[str, int] = {}

    # -- tokens
    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def accept(self, *texts: str) -> Token | None:
        token = self.token
        if token.kind in ("op", "name") and token.text in texts:
            self.at += 1
            return token
        return None

    def expect(self, text: str, what: str) -> Token:
        token = self.accept(text)
        if token is None:
            raise self.unexpected(f"expected {what}")
        return token

    def unexpected(self, expected: str) -> UsageError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return expression_error(self.source, token.position, f"{expected}, found {found}")

    # -- grammar
    def condition(self) -> Condition:
        chains = self.or_chains()
        if self.token.kind != "end":
            raise self.unexpected("expected 'and', 'or' or the end of the expression")
        if len(chains) == 1:
            clauses = [Clause(expr, self.source[start:end].strip()) for expr, start, end in chains[0]]
        else:
            clauses = [Clause(_join(chains), self.source.strip())]
        return Condition(self.source, clauses, self.columns)

    def or_chains(self) -> list[list[tuple[pl.Expr, int, int]]]:
        """The operands of ``or``, each an ``and`` chain of (expression, start, end in the source)."""
        chains = [self.and_chain()]
        while self.accept("or"):
            chains.append(self.and_chain())
        return chains

    def and_chain(self) -> list[tuple[pl.Expr, int, int]]:
        items = []
        while True:
            start = self.token.position
            expr = self.negation()
            items.append((expr, start, self.token.position))
            if not self.accept("and"):
                return items

    def negation(self) -> pl.Expr:
        if self.accept("not"):
            return ~self.negation()
        return self.comparison()

    def comparison(self) -> pl.Expr:
        left = self.sum()
        operator = self.token
        if self.accept(*_COMPARISONS):
            if self.token.text == "null":
                raise expression_error(self.source, self.token.position, "a comparison with null is never "
                                       f"true: write .is_null() or .is_not_null(), not '{operator.text} null'")
            right = self.sum()
            if self.token.kind == "op" and self.token.text in _COMPARISONS:
                raise self.unexpected("comparisons do not chain: join them with 'and'")
            return _COMPARISONS[operator.text](left, right)
        negated = False
        if self.token.text == "not" and self.tokens[self.at + 1].text == "in":
            self.at += 1
            negated = True
        if self.accept("in"):
            member = left.is_in(self.literal_list())
            return ~member if negated else member
        return left

    def sum(self) -> pl.Expr:
        expr = self.product()
        while (token := self.accept("+", "-")) is not None:
            expr = _ARITHMETIC[token.text](expr, self.product())
        return expr

    def product(self) -> pl.Expr:
        expr = self.unary()
        while (token := self.accept("*", "/", "%")) is not None:
            expr = _ARITHMETIC[token.text](expr, self.unary())
        return expr

    def unary(self) -> pl.Expr:
        if self.accept("-"):
            return -self.unary()
        return self.postfix()

    def postfix(self) -> pl.Expr:
        expr = self.atom()
        while self.accept("."):
            namespace = ""
            if self.token.text in ("str", "list") and self.tokens[self.at + 1].text == ".":
                namespace = self.token.text
                self.at += 2
            name = self.token
            methods = _METHODS[namespace]
            if name.kind != "name" or name.text not in methods:
                prefix = f"{namespace}." if namespace else ""
                raise self.unexpected("expected a method (" + ", ".join(f"{prefix}{m}" for m in methods) +
                                      ("" if namespace else ", str.…, list.…") + ")")
            self.at += 1
            kinds, build = methods[name.text]
            self.expect("(", "'('")
            arguments = []
            for i, kind in enumerate(kinds):
                if i:
                    self.expect(",", "','")
                arguments.append(self.literal_list() if kind == "list" else self.literal(kind))
            self.expect(")", f"')' ({name.text} takes {len(kinds) or 'no'} argument{'s' * (len(kinds) != 1)})")
            expr = build(expr, *arguments)
        return expr

    def atom(self) -> pl.Expr:
        token = self.token
        if token.kind in ("name", "quoted") and token.text not in KEYWORDS:
            self.at += 1
            name = token.text.strip("`") if token.kind == "quoted" else token.text
            self.columns.setdefault(name, token.position)
            return pl.col(name)
        if self.accept("("):
            chains = self.or_chains()
            self.expect(")", "')'")
            return _join(chains)
        if token.kind in ("number", "string") or token.text in ("true", "false"):
            return pl.lit(self.literal("value"))
        raise self.unexpected("expected a column, a literal or '('")

    def literal(self, kind: str) -> object:
        token = self.token
        negative = kind == "value" and token.text == "-" and self.tokens[self.at + 1].kind == "number"
        if negative:
            self.at += 1
            token = self.token
        if token.kind == "string" and kind in ("string", "value"):
            self.at += 1
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), token.text[1:-1])
        if token.kind == "number" and kind == "value":
            self.at += 1
            number = float(token.text) if re.search(r"[.eE]", token.text) else int(token.text)
            return -number if negative else number
        if token.text in ("true", "false") and kind == "value":
            self.at += 1
            return token.text == "true"
        raise self.unexpected("expected a string" if kind == "string" else "expected a literal")

    def literal_list(self) -> list:
        self.expect("[", "'[' (a list of literals)")
        values = []
        while not self.accept("]"):
            if values:
                self.expect(",", "',' or ']'")
            values.append(self.literal("value"))
        return values


def _join(chains: list[list[tuple[pl.Expr, int, int]]]) -> pl.Expr:
    """``or`` of ``and`` chains."""
    ors = []
    for chain in chains:
        joined = chain[0][0]
        for expr, _, _ in chain[1:]:
            joined = joined & expr
        ors.append(joined)
    expr = ors[0]
    for other in ors[1:]:
        expr = expr | other
    return expr


def parse(source: str) -> Condition:
    """The condition ``source`` describes, split into its top-level ``and`` clauses."""
    if not source.strip():
        raise UsageError("--expr: the expression is empty")
    return _Parser(source).condition()
