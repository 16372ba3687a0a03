"""The Corefile grammar: the Caddyfile syntax CoreDNS reads, parsed into server blocks.

A pure parser: text (and the files it imports) in, :class:`ServerBlock` values
out.  It knows nothing about plugins; :mod:`clusterdns.config` gives the
directives their meaning.  The grammar follows CoreDNS's Caddy fork:

- tokens are separated by white space; ``"a quoted token"`` may hold spaces and
  newlines (``\\"`` is a quote in it); ``#`` outside quotes starts a comment;
- a server block is its keys (``.:53``, ``cluster.local:53 example.org``,
  ``dns://.:1053``; commas also separate keys) and ``{ directives }``; a file
  holding a single block may leave the braces out;
- a directive is its name and the tokens on the same line, then optionally a
  ``{ ... }`` block of lines of the same shape, nested as deep as needed;
- ``(name) { ... }`` at the top level defines a snippet; ``import name``
  pastes it; ``import PATTERN`` pastes files (relative to the importing file;
  a glob matching nothing is fine, a missing plain file is an error);
- ``{$VAR}``, ``{%VAR%}`` and ``{env.VAR}`` in a token are replaced by the
  environment variable (empty when unset), after tokenising, as Caddy does.

Every token keeps the file and line it came from, so errors can name them.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

MAX_IMPORTS = 1000  # imports expanded in one Corefile: a guard against runaway globs


class CorefileError(Exception):
    """A Corefile that cannot be read; ``str()`` is ``FILE:LINE: message``."""

    def __init__(self, file: str, line: int, message: str):
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    file: str
    line: int
    quoted: bool = False
    end_line: int = 0  # the line the token ends on (a quoted token may span lines)
    imported_by: tuple[str, ...] = ()  # the chain of files/snippets that pasted it in (cycle check)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Directive:
    """``name args... [{ block }]``; block is None when there are no braces."""

    token: Token  # the name
    args: tuple[Token, ...] = ()
    block: tuple["Directive", ...] | None = None

    @property
    def name(self) -> str:
        return self.token.text

    @property
    def values(self) -> list[str]:
        return [a.text for a in self.args]

    @property
    def where(self) -> str:
        return self.token.where

    def error(self, message: str) -> CorefileError:
        return CorefileError(self.token.file, self.token.line, message)


@dataclass(frozen=True, slots=True)
class ServerBlock:
    keys: tuple[Token, ...]
    directives: tuple[Directive, ...]

    @property
    def label(self) -> str:
        return " ".join(k.text for k in self.keys)

    @property
    def where(self) -> str:
        return self.keys[0].where


# ----------------------------------------------------------------------------- lexer


def tokenize(text: str, file: str, imported_by: tuple[str, ...] = ()) -> list[Token]:
    """Split Corefile text into tokens, as Caddy's lexer does."""
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == '"':
            start_line, i, chars = line, i + 1, []
            while True:
                if i >= n:
                    raise CorefileError(file, start_line, "unterminated quoted token")
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] == '"':
                    chars.append('"')
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                if ch == "\n":
                    line += 1
                chars.append(ch)
                i += 1
            tokens.append(Token("".join(chars), file, start_line, True, line, imported_by))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != "#":
                i += 1
            tokens.append(Token(text[start:i], file, line, False, line, imported_by))
    return tokens


_PLACEHOLDER = re.compile(r"\{\$([A-Za-z0-9_]+)\}|\{%([A-Za-z0-9_]+)%\}|\{env\.([A-Za-z0-9_]+)\}")


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """``{$VAR}``, ``{%VAR%}`` and ``{env.VAR}`` → the variable's value (empty if unset)."""
    if "{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: env.get(next(g for g in m.groups() if g), ""), text)


# ----------------------------------------------------------------------------- parser


def parse_file(path: str | Path, env: Mapping[str, str] | None = None) -> list[ServerBlock]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorefileError(str(path), 0, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from exc
    return parse(text, str(path), env)


def parse(text: str, file: str = "Corefile", env: Mapping[str, str] | None = None) -> list[ServerBlock]:
    """Server blocks of a Corefile; raises :class:`CorefileError` naming file and line."""
    return _Parser(tokenize(text, file), file, os.environ if env is None else env).parse()


@dataclass
class _Parser:
    tokens: list[Token]
    file: str
    env: Mapping[str, str]
    pos: int = 0
    snippets: dict[str, list[Token]] = field(default_factory=dict)
    imports: int = 0

    # -- cursor

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _last_line(self) -> int:
        return self.tokens[self.pos - 1].end_line if self.pos else 0

    def _at_line_start(self) -> bool:
        """The next token begins a new line (or follows a brace)."""
        if self.pos == 0:
            return True
        prev, token = self.tokens[self.pos - 1], self.tokens[self.pos]
        return token.line != prev.end_line or token.file != prev.file or (not prev.quoted and prev.text in "{}")

    def _is(self, token: Token | None, text: str) -> bool:
        return token is not None and not token.quoted and token.text == text

    # -- grammar

    def parse(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while True:
            self._expand_imports()
            token = self._peek()
            if token is None:
                return blocks
            if not token.quoted and token.text.startswith("(") and token.text.endswith(")") and len(token.text) > 2:
                self._snippet()
                continue
            blocks.append(self._server_block(first=not blocks))

    def _snippet(self) -> None:
        name_token = self._next()
        name = name_token.text[1:-1]
        if not self._is(self._peek(), "{"):
            raise CorefileError(name_token.file, name_token.line, f"snippet ({name}) needs a {{ block }}")
        self._next()
        depth, body = 1, []
        while True:
            token = self._peek()
            if token is None:
                raise CorefileError(name_token.file, name_token.line, f"snippet ({name}) has no closing '}}'")
            self._next()
            if self._is(token, "{"):
                depth += 1
            elif self._is(token, "}"):
                depth -= 1
                if depth == 0:
                    break
            body.append(token)
        if name in self.snippets:
            raise CorefileError(name_token.file, name_token.line, f"snippet ({name}) is defined twice")
        self.snippets[name] = body

    def _server_block(self, first: bool) -> ServerBlock:
        keys: list[Token] = []
        start = self._peek()
        assert start is not None  # parse() calls this at a token
        while True:
            token = self._peek()
            if token is None or self._is(token, "{"):
                break
            if keys and token.line != self._last_line() and not self.tokens[self.pos - 1].text.endswith(","):
                break  # the keys end with their line (or a trailing comma continues them)
            self._next()
            if self._is(token, "}"):
                raise CorefileError(token.file, token.line, "unexpected '}': no block is open")
            for part in expand_env(token.text, self.env).split(","):
                if part.strip():
                    keys.append(Token(part.strip(), token.file, token.line, token.quoted, token.end_line))
        if not keys:
            raise CorefileError(start.file, start.line, "a server block needs at least one key, such as .:53")
        if self._is(self._peek(), "{"):
            self._next()
            directives = self._directives(closing=True, opened=start)
        elif first:  # a single server block may leave out its braces
            directives = self._directives(closing=False, opened=start)
            token = self._peek()
            if token is not None:
                raise CorefileError(token.file, token.line, "unexpected token after a server block without braces")
        else:
            raise CorefileError(start.file, start.line, f"server block {keys[0].text} needs a {{ block }}")
        return ServerBlock(tuple(keys), tuple(directives))

    def _directives(self, closing: bool, opened: Token) -> list[Directive]:
        directives: list[Directive] = []
        while True:
            self._expand_imports()
            token = self._peek()
            if token is None:
                if closing:
                    raise CorefileError(opened.file, opened.line, f"block opened here ({opened.text}) has no closing '}}'")
                return directives
            if self._is(token, "}"):
                if not closing:
                    raise CorefileError(token.file, token.line, "unexpected '}': no block is open")
                self._next()
                return directives
            if self._is(token, "{"):
                raise CorefileError(token.file, token.line, "unexpected '{': a block must follow a directive on its line")
            directives.append(self._directive())

    def _directive(self) -> Directive:
        name = self._next()
        name = Token(expand_env(name.text, self.env), name.file, name.line, name.quoted, name.end_line)
        args: list[Token] = []
        while True:
            token = self._peek()
            if token is None or self._at_line_start() or self._is(token, "}"):
                return Directive(name, tuple(args))
            self._next()
            if self._is(token, "{"):
                return Directive(name, tuple(args), tuple(self._directives(closing=True, opened=name)))
            args.append(Token(expand_env(token.text, self.env), token.file, token.line, token.quoted, token.end_line))

    # -- import

    def _expand_imports(self) -> None:
        """Replace ``import X`` at the cursor (first on its line) by what X holds."""
        while True:
            token = self._peek()
            if token is None or not self._is(token, "import") or not self._at_line_start():
                return
            self._next()
            args = []
            while self._peek() is not None and not self._at_line_start() and not self._is(self._peek(), "}"):
                args.append(self._next())
            if len(args) != 1:
                raise CorefileError(token.file, token.line, "import takes one argument: a snippet name, a file or a glob")
            self.imports += 1
            if self.imports > MAX_IMPORTS:
                raise CorefileError(token.file, token.line, f"more than {MAX_IMPORTS} imports: a runaway glob or a cycle?")
            pasted = self._imported(token, expand_env(args[0].text, self.env))
            self.tokens[self.pos : self.pos] = pasted

    def _imported(self, token: Token, target: str) -> list[Token]:
        chain = token.imported_by
        if target in self.snippets:
            if target in chain:
                raise CorefileError(token.file, token.line, f"import cycle: snippet {target} imports itself")
            return [Token(t.text, t.file, t.line, t.quoted, t.end_line, (*chain, target)) for t in self.snippets[target]]
        pattern = target if os.path.isabs(target) else os.path.join(os.path.dirname(token.file), target)
        if glob.has_magic(pattern):
            paths = sorted(glob.glob(pattern))  # nothing matching is fine (k3s's custom/*.server)
        elif os.path.exists(pattern):
            paths = [pattern]
        else:
            raise CorefileError(token.file, token.line, f"import {target}: no such snippet or file ({pattern})")
        pasted: list[Token] = []
        for path in paths:
            real = os.path.realpath(path)
            if real in chain or real == os.path.realpath(self.file):
                raise CorefileError(token.file, token.line, f"import cycle: {path} imports itself")
            if os.path.isdir(path):
                continue
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CorefileError(token.file, token.line, f"import {path}: {getattr(exc, 'strerror', None) or exc}") from exc
            pasted += tokenize(text, path, (*chain, real))
        return pasted
