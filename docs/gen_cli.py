"""The command-line reference, written from lossmap's real argparse parsers.

Nothing here is copied by hand: :func:`cli_markdown` walks the parser that
``lossmap`` itself builds (``lossmap.cli.main._build_parser``), every subcommand
and sub-subcommand, and writes each one's usage and options. A new subcommand or
option appears on the page at the next build. ``docs/hooks.py`` calls it during
``mkdocs build``; ``python docs/gen_cli.py`` prints the page.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator

__all__ = ["cli_markdown", "command_paths", "lossmap_parser"]

_WIDTH = "80"  # the usage lines are wrapped as on an 80-column terminal, on every machine
_SPECIAL = re.compile(r"([\\*_\[\]<>#|])")


def lossmap_parser() -> argparse.ArgumentParser:
    """The parser ``lossmap`` runs, with every subcommand (imported late: needs lossmap)."""
    from lossmap.cli.main import _build_parser

    return _build_parser()


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each direct subcommand, aliases left out."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                yield name, helps.get(name, ""), sub


def command_paths(parser: argparse.ArgumentParser, prefix: str | None = None) -> list[str]:
    """Every command of ``parser``: ``["lossmap scan", "lossmap info", ...]``, depth first."""
    prefix = parser.prog if prefix is None else prefix
    out: list[str] = []
    for name, _help, sub in _subcommands(parser):
        path = f"{prefix} {name}"
        out.append(path)
        out.extend(command_paths(sub, path))
    return out


def anchor(path: str) -> str:
    """The HTML id of a command's heading: ``"lossmap scan"`` -> ``"lossmap-scan"``."""
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _text(s: str) -> str:
    """Help text as Markdown: `code` kept as code, everything else shown literally."""
    parts = s.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show it all literally
        return _SPECIAL.sub(r"\\\1", s.replace("`", "\\`"))
    return "".join(f"`{p}`" if i % 2 else _SPECIAL.sub(r"\\\1", p) for i, p in enumerate(parts))


def _code(s: str) -> str:
    """Inline code that may itself hold backticks."""
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def _flag(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--grid LO:HI:N``, ``-o OUT, --out OUT``, or the positional's name."""
    formatter = parser._get_formatter()
    return formatter._format_action_invocation(action)


def _option_line(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    flag = _flag(parser, action)
    line = f"- {_code(flag)}"
    text = _help(parser, action)
    if text:
        line += f": {_text(text)}"
    facts = []
    if action.choices is not None and "{" not in flag:  # else the flag shows them
        facts.append("one of " + ", ".join(_code(str(c)) for c in action.choices))
    if action.required and action.option_strings:
        facts.append("required")
    default = action.default
    hidden = default is None or default is False or default == argparse.SUPPRESS
    if not hidden and action.nargs != 0 and "default" not in text.lower():
        facts.append(f"default {_code(str(default))}")
    if isinstance(action, argparse._AppendAction) and "repeat" not in text.lower():
        facts.append("may be repeated")
    if facts:
        line += f" ({'; '.join(facts)})"
    return line


def _usage(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _WIDTH
    try:
        return parser.format_usage().strip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _section(
    parser: argparse.ArgumentParser, path: str, summary: str, level: int, heading: bool = True
) -> list[str]:
    """One command: heading, description, usage, options, then its subcommands' sections."""
    lines = [f"{'#' * level} `{path}` {{#{anchor(path)}}}", ""] if heading else []
    description = parser.description or summary
    if description:
        lines += [_text(" ".join(description.split())), ""]
    lines += ["```text", _usage(parser), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if a.help is not argparse.SUPPRESS
                   and not isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        lines += [f"**{_text(group.title or 'arguments').capitalize()}**", ""]
        lines += [_option_line(parser, a) for a in actions]
        lines.append("")
    subs = list(_subcommands(parser))
    if subs:
        lines += ["**Commands**", ""]
        lines += [f"- [`{path} {name}`](#{anchor(f'{path} {name}')}): {_text(h)}"
                  for name, h, _ in subs]
        lines.append("")
        for name, h, sub in subs:
            lines += _section(sub, f"{path} {name}", h, min(level + heading, 6))
    return lines


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference page of ``parser`` (default: the real ``lossmap`` parser).

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
        The top-level parser; subcommands are found through its subparsers action.

    Returns
    -------
    str
        Markdown: one section per command, with its usage and every option that
        is not hidden (``help=argparse.SUPPRESS``), its choices and its default.
    """
    parser = parser or lossmap_parser()
    head = [
        "# Command line reference",
        "",
        "Generated from `lossmap`'s own argument parsers at every build of this site "
        "(`docs/gen_cli.py`), so it lists every command and option of this version. "
        "`lossmap COMMAND --help` prints the same. Bad input prints one line on stderr "
        "and exits with status 2; `lossmap --debug COMMAND ...` shows the traceback.",
        "",
    ]
    body = _section(parser, parser.prog, parser.description or "", 2, heading=False)
    return "\n".join(head + body).rstrip() + "\n"


if __name__ == "__main__":
    print(cli_markdown(), end="")
