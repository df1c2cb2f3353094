"""Tool schemas derived from typed Python functions, and validation with the same model.

A function's first parameter is the agent's state (not shown to the model); every other
parameter is ``Annotated[type, Field(description=...)]``, and its docstring's first
paragraph is the tool's description. A parameter without a description is refused, as
smolagents does: the model can only use what it is told about. Non-terminal tools get
``request_heartbeat`` added here, in one place.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

HEARTBEAT = "request_heartbeat"
SCHEMA_WORDS = frozenset({"type", "title", "description", "properties", "required", "$schema",
                          "additionalProperties"})
_HEARTBEAT_FIELD = (bool, Field(False, description="true: continue right after the result; false: yield to the user"))


class ToolError(Exception):
    """A failure the model caused or can fix: returned to it as a failed result."""


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    model: type[BaseModel]
    description: str
    terminal: bool
    hidden: frozenset[str] = frozenset()  # accepted but not shown (a compact set's heartbeat)

    def schema(self) -> dict[str, Any]:
        parameters = _clean(self.model.model_json_schema())
        for name in self.hidden:
            parameters.get("properties", {}).pop(name, None)
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": parameters}}

    def parse(self, arguments: dict[str, Any]) -> BaseModel:
        """Validate; keys that are JSON-schema words (``"type": "object"``, which small models
        copy from the schema) are dropped when no parameter has that name, and a value that is
        the parameter's own description is refused as not a value."""
        fields = self.model.model_fields
        arguments = {k: v for k, v in arguments.items() if k in fields or k not in SCHEMA_WORDS}
        for name, value in arguments.items():
            described = fields[name].description if name in fields else None
            if isinstance(value, str) and described and _same(value, described):
                raise ToolError(f"{name}: that is the parameter's description, not a value; write your own")
        return self.model.model_validate(arguments)


def derive(fn: Callable[..., Any], terminal: bool = False) -> Tool:
    hints = get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[1:]  # skip the state
    fields: dict[str, Any] = {}
    for p in params:
        annotation = hints[p.name]
        metadata = getattr(annotation, "__metadata__", ())
        field_info = next((m for m in metadata if hasattr(m, "description")), None)
        if field_info is None or not field_info.description:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name} has no description")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    if not terminal:
        fields[HEARTBEAT] = _HEARTBEAT_FIELD
    model = create_model(fn.__name__, __config__=ConfigDict(extra="forbid"), **fields)
    doc = inspect.getdoc(fn) or ""
    description = doc.split("\n\n")[0].replace("\n", " ").strip()
    if not description:
        raise TypeError(f"tool {fn.__name__} has no docstring")
    return Tool(fn.__name__, fn, model, description, terminal)


def compact(tool: Tool, description: str, params: dict[str, str],
            types: dict[str, Any] | None = None, required: frozenset[str] = frozenset()) -> Tool:
    """The same function with shorter descriptions and only ``params`` shown, for small windows.

    Parameters left out are refused like unknown ones, except ``request_heartbeat``: it is
    still accepted but defaults to true, so chaining needs no words in the schema."""
    fields: dict[str, Any] = {}
    for name, info in tool.model.model_fields.items():
        if name in params:
            annotation = (types or {}).get(name, info.annotation)
            default = ... if info.is_required() or name in required else info.default
            fields[name] = (annotation, Field(default, description=params[name], **_limits(info)))
    hidden: frozenset[str] = frozenset()
    if not tool.terminal:
        fields[HEARTBEAT] = (bool, Field(True, description="continue right after the result"))
        hidden = frozenset({HEARTBEAT})
    model = create_model(tool.name, __config__=ConfigDict(extra="forbid"), **fields)
    return Tool(tool.name, tool.fn, model, description, tool.terminal, hidden)


def _limits(info: Any) -> dict[str, Any]:
    """ge/le bounds of a field, kept by ``compact``."""
    out: dict[str, Any] = {}
    for meta in info.metadata:
        for key in ("ge", "le", "gt", "lt"):
            if getattr(meta, key, None) is not None:
                out[key] = getattr(meta, key)
    return out


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline $refs, drop titles, show Optional[X] as X: many local models choke on those.

    Unknown arguments are still refused by the model's ``extra="forbid"``; saying so in the
    schema would cost tokens in every call."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(copy.deepcopy(defs[node["$ref"].split("/")[-1]]))
            if "anyOf" in node:
                options = [o for o in node["anyOf"] if o.get("type") != "null"]
                if len(options) == 1:
                    merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
                    return walk(merged)
            return {k: walk(v) for k, v in node.items()
                    if k not in ("title", "additionalProperties") and not (k == "default" and v is None)}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold().rstrip(".") == " ".join(b.split()).casefold().rstrip(".")


def error_text(exc: ValidationError) -> str:
    """Pydantic's errors, phrased for a model to fix its call."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
