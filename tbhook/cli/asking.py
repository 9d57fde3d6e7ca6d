"""A question's options, from the one table both faces read (``tbhook.model.query``): the
filters, the limit, the order, the zone, the business hours. A command declares
``asked: Asked`` and ``@asks("events")``; typer sees the options, the command gets them
read, a value that cannot be read is a usage error naming its option."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Optional, TypeVar

import typer

from tbhook.cli.options import given as typed
from tbhook.model.query import PARAMS, QUESTIONS, Param, QueryError, read, refuse_empty

Command = TypeVar("Command", bound=Callable[..., Any])


def option(param: Param, question: str) -> Any:
    """The typer option of ``param`` as ``question`` shows it (a refused one is hidden)."""
    asked = QUESTIONS[question]
    if param.flag:  # yes or no, read as the console's key=yes|no is
        flag = typer.Option(
            f"--{param.key}/--no-{param.key}", help=asked.help.get(param.key, param.help)
        )
        return Annotated[bool, flag]
    names = [f"--{param.key}", *([param.short] if param.short else [])]
    info = typer.Option(
        *names,
        metavar=param.metavar,
        help=asked.help.get(param.key, param.help),
        envvar=param.envvar,
        hidden=param.key in asked.refused,
        show_default=param.default is not None,
    )
    kind = Optional[list[str]] if param.many or param.key in asked.many else Optional[str]
    return Annotated[kind, info]  # type: ignore[valid-type]


LocalOption = Annotated[
    bool, typer.Option("--local", help="Show times in this machine's zone (as --tz local).")
]


def asks(question: str) -> Callable[[Command], Command]:
    """Give ``command`` the options of ``question`` in place of its ``asked`` parameter (in
    the manner of sqlite-utils' ``output_options``), and --local beside --tz."""
    keys = QUESTIONS[question].keys

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name != "asked":
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            for key in keys:
                param = PARAMS[key]
                default = param.default == "yes" if param.flag else param.default
                parameters.append(_keyword(_name(key), option(param, question), default))
            if "tz" in keys:
                parameters.append(_keyword("local", LocalOption, False))
        own = [p.name for p in parameters if p.annotation is typer.Context]
        context = own[0] if own else "asks_context"  # typer gives one parameter the context
        if not own:
            parameters.append(_keyword(context, typer.Context))

        @functools.wraps(command)
        def with_options(**values: Any) -> Any:
            ctx = values[context] if own else values.pop(context)
            given = {key: _text(PARAMS[key], values.pop(_name(key))) for key in keys}
            if values.pop("local", False):
                if given.get("tz") is not None and typed(ctx, "tz", environment=False):
                    raise typer.BadParameter(
                        "give --tz ZONE or --local, not both", param_hint="'--tz'"
                    )
                given["tz"] = "local"
            return command(**values, asked=ask(question, given))

        with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_options  # type: ignore[return-value]

    return decorate


def ask(question: str, given: dict[str, Any]) -> Any:
    """``given`` read as ``question``'s arguments; a mistake is a usage error naming the
    option."""
    with reported_mistakes():
        refuse_empty(given)
        asked = read(question, given)
    for key, note in asked.notes:  # how a bare number was read (13 digits: milliseconds)
        typer.echo(f"Note: --{key} {note}", err=True)
    return asked


@contextlib.contextmanager
def reported_mistakes() -> Iterator[None]:
    """A QueryError the answer raises (too many periods) as a usage error naming the option."""
    try:
        yield
    except QueryError as exc:
        said = exc.advised(lambda key, value: f"--{key} {value}", " ")
        raise typer.BadParameter(said, param_hint=hint(exc.keys)) from None


def hint(keys: tuple[str, ...]) -> str:
    """How a usage error names options: ``'--since' / '--until'``, ``'--limit' / '-n'``."""
    names = []
    for key in keys:
        param = PARAMS.get(key)
        names += [f"--{key}", *([param.short] if param and param.short else [])]
    return " / ".join(f"'{name}'" for name in names)


def _text(param: Param, value: Any) -> Any:
    """A flag's True or False as the text both faces read (yes, no); other values as given."""
    if param.flag:
        return "yes" if value else "no"
    return value


def _keyword(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _name(key: str) -> str:
    return key.replace("-", "_")
