"""One source of truth for every stage's parameters.

A stage declares its parameters once, as a dataclass whose fields are made with :func:`option`. From that
single declaration curate derives the CLI flags (:func:`cli_parameters`), the validation of YAML/JSON config
and recipe sections (:func:`from_mapping`), and what the manifest records (:func:`to_dict`,
:func:`fingerprint`). Nobody keeps a second list of the same options by hand.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from curate.io.errors import UsageError

_LIST_SEPARATOR = ","


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: list[str] | None = None,
    fingerprint: bool = True,
    required: bool = False,
) -> Any:
    """A dataclass field with the metadata the CLI, config files and manifest need.

    ``fingerprint=False`` marks parameters that cannot change the output (worker counts, verbosity), so a
    resumed run may change them freely. ``required=True`` marks a parameter every run must give (the CLI
    shows it as required; a recipe section without it is refused); ``default`` is then only a placeholder.
    """
    metadata = {"help": help, "flag": flag, "short": short, "choices": choices, "fingerprint": fingerprint,
                "required": required}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls: type, help: str) -> Any:
    """A field holding another params dataclass (one pass's settings inside a stage's). Its fields are flags
    and recipe keys of their own, and a recipe may also give them as a section (``signatures: {ngram: 5}``)."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "nested": True})


def _is_nested(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("nested"))


def leaf_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` with nested params dataclasses flattened: what the command line shows."""
    hints = _field_types(cls)
    fields: list[dataclasses.Field] = []
    for field in dataclasses.fields(cls):
        fields.extend(leaf_fields(hints[field.name]) if _is_nested(field) else [field])
    return fields


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def key_of(field: dataclasses.Field) -> str:
    """The field's name in recipes and config files: its flag without dashes (``--format`` → ``format``)."""
    return flag_of(field).split("/")[0][2:].replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Argument:
    """A command argument that is not a stage parameter (a file to read or write, a model directory): one
    declaration gives the CLI flag and the recipe key (the flag without dashes)."""

    name: str
    type: Any
    default: Any = inspect.Parameter.empty  # empty: required
    flags: tuple[str, ...] = ()
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` → (X, True); anything else → (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _list_item_type(tp: Any) -> Any | None:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is list else None


def _default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def cli_parameters(cls: type, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """Keyword-only parameters (typer options) for every field of ``cls``; lists are comma-separated."""
    import typer  # the command line only: worker processes import this module without it

    params = []
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        if _is_nested(field):
            params.extend(cli_parameters(_field_types(cls)[field.name], exclude))
            continue
        tp, optional = _unwrap_optional(_field_types(cls)[field.name])
        default = _default_of(field)
        item = _list_item_type(tp)
        if item is not None:
            cli_type: Any = str | None
            default = _LIST_SEPARATOR.join(map(str, default)) if default else None
        elif tp is Path:
            cli_type = str | None if optional else str
            default = None if default is None else str(default)
        else:
            cli_type = tp | None if optional else tp
        flag = flag_of(field)
        if tp is bool and default is True and "/" not in flag:
            flag = f"{flag}/--no-{flag[2:]}"  # a flag that is on by default must be possible to turn off
        decls = [flag] + ([field.metadata["short"]] if field.metadata.get("short") else [])
        if field.metadata.get("required"):
            default = ...
        if field.metadata.get("choices"):
            choices = enum.Enum(f"{field.name}_choices", {c: c for c in field.metadata["choices"]}, type=str)
            cli_type = choices | None if optional else choices
            default = None if default in (None, ...) else choices(default)
        info = typer.Option(default, *decls, help=field.metadata.get("help", ""), show_default=True)
        params.append(
            inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=cli_type)
        )
    return params


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a CLI string or a YAML value to the field's declared type, or raise a UsageError naming ``where``."""
    tp, optional = _unwrap_optional(tp)
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        if optional:
            return None
        if _list_item_type(tp) is not None:
            return []  # an empty list flag on the CLI
        raise UsageError(f"{where}: a value is required")
    item = _list_item_type(tp)
    if item is not None:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(_LIST_SEPARATOR) if v.strip()]
        if not isinstance(value, list | tuple):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, item, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise UsageError(f"{where}: expected {tp.__name__}, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if tp in (str, Path):
        if not isinstance(value, str | Path):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return tp(value)
    if typing.get_origin(tp) is dict or tp is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        return value
    return value


def from_mapping(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build ``cls`` from a mapping (CLI keywords, a YAML section); unknown keys, missing required keys and
    bad types are errors. A key is the flag's name (``format`` for ``--format``) or the field's name."""
    hints = _field_types(cls)
    values = dict(values)
    kwargs: dict[str, Any] = {}
    for field in [f for f in dataclasses.fields(cls) if _is_nested(f)]:
        inner = hints[field.name]
        section = values.pop(field.name, None) or {}
        if not isinstance(section, dict):
            raise UsageError(f"{where}: {field.name}: expected a mapping of its settings, got {section!r}")
        keys = {k for f in leaf_fields(inner) for k in (f.name, key_of(f))}
        flat = {k: values.pop(k) for k in list(values) if k.replace("-", "_") in keys}
        kwargs[field.name] = from_mapping(inner, {**section, **flat}, where)
    by_name = {f.name: f for f in dataclasses.fields(cls) if not _is_nested(f)}
    by_key = {**by_name, **{key_of(f): f for f in by_name.values()}}
    aliases = {k.replace("-", "_"): k for k in values}
    unknown = [aliases[k] for k in aliases if k not in by_key]
    if unknown:
        expected = sorted(key_of(f) for f in leaf_fields(cls))
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected some of {', '.join(expected)}")
    given = {by_key[k].name for k, original in aliases.items() if values[original] not in (None, "")}
    missing = [key_of(f) for f in by_name.values() if f.metadata.get("required") and f.name not in given]
    if missing:
        raise UsageError(f"{where}: {', '.join(missing)} is required")
    for key, original in aliases.items():
        field = by_key[key]
        key = field.name
        value = _convert(values[original], hints[key], f"{where}: {original}")
        choices = field.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise UsageError(f"{where}: {original} must be one of {', '.join(choices)}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


ALIAS_EXPANSION_LIMIT = 100_000  # values that aliases may add once expanded; a file's own values are free


class BoundedAliases:
    """Loader mixin: refuses a document whose aliases (``*name``) expand to too many values.

    An alias repeats a node by reference, so a few lines of nested aliases stand for billions of values once
    anything walks them (a "billion laughs" bomb). Sharing a block (``ja: *no_spaces``) stays fine: the
    expanded size is counted on the composed node graph, before anything is built, in time linear in the file.
    """

    def get_single_node(self) -> Any:
        node = super().get_single_node()  # type: ignore[misc]
        if node is not None:
            sizes: dict[int, int] = {}
            added = _expanded_size(node, sizes, set()) - len(sizes)
            if added > ALIAS_EXPANSION_LIMIT:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {ALIAS_EXPANSION_LIMIT:,} values beyond the file's "
                    "own (an alias bomb?): write the values out", node.start_mark)
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values under ``node`` with every alias expanded (memoised per node, so aliases cost nothing here)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:  # an alias to its own ancestor: endless once expanded
        raise yaml.composer.ComposerError(None, None, "a recursive alias (it contains itself)", node.start_mark)
    open_nodes.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > 10 * ALIAS_EXPANSION_LIMIT:  # already far too big: stop counting
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


class StrictLoader(BoundedAliases, yaml.SafeLoader):
    """The loader for every YAML file a user hands to curate: safe tags only, bounded alias expansion."""


def load_mapping(path: str | Path, what: str, loader: type = StrictLoader) -> dict[str, Any]:
    """A YAML (or JSON) file whose top level is a mapping, or a UsageError that names ``what`` and the file.

    Alias expansion is bounded whatever ``loader`` is given (see :class:`BoundedAliases`).
    """
    if not issubclass(loader, BoundedAliases):
        loader = type(loader.__name__, (BoundedAliases, loader), {})
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except yaml.MarkedYAMLError as exc:  # one line naming where, not the excerpt PyYAML draws
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"{what} {path}{where}: not valid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def to_dict(params: Any) -> dict[str, Any]:
    """JSON-ready view of a params dataclass (paths as strings), for manifests and summaries."""
    return json.loads(json.dumps(dataclasses.asdict(params), default=str))


def fingerprint(params: Any) -> dict[str, Any]:
    """The fields that can change the output: a resumed run must match them exactly."""
    out = to_dict(params)
    return {f.name: fingerprint(getattr(params, f.name)) if _is_nested(f) else out[f.name]
            for f in dataclasses.fields(params) if f.metadata.get("fingerprint", True)}


def digest(value: Any) -> str:
    """Stable short hash of a JSON-ready value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
