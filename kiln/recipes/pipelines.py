"""Reusable pipelines: a recipe's build as steps, some of them `uses: NAME` of a pipeline
file kept in the recipe repository (`pipelines/NAME.yaml`), in the way melange's
pipelines work. A pipeline is versioned with the recipes, and its bytes are an input
of every build that uses it (`pipeline:NAME` among the record's sources), so changing
one rebuilds exactly the recipes that use it.

```yaml
# pipelines/autoconf/configure.yaml
description: ./configure with the usual directories
inputs:
  opts: {description: more options, default: ""}
  prefix: {default: /usr}
runs: |
  ./configure --prefix=${{inputs.prefix}} ${{inputs.opts}}
```

```yaml
# a recipe's build
build:
  - uses: autoconf/configure
    with: {opts: --disable-nls}
  - runs: make -j"$JOBS"
  - uses: make/install
```

Inputs are put in the script as they are written (as melange does): a value is shell
text, and quoting is the recipe's. Each step runs in a subshell of its own, from the
build directory, so a `cd` in one step does not move the next.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.yamldoc import Node, Problem, Reader, load_yaml, yaml_problem

PIPELINE_DIRECTORY = "pipelines"
PIPELINE_URI = "pipeline:"  # a pipeline among a build record's sources: pipeline:NAME
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*(/[a-z0-9][a-z0-9.-]*)*")
_INPUT = re.compile(r"[a-z][a-z0-9-]*")
_PLACEHOLDER = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


@dataclass(frozen=True)
class PipelineInput:
    """An input a pipeline declares: its default, or none when a recipe must give it."""

    default: str | None  # None: the recipe must give it
    description: str = ""


@dataclass(frozen=True)
class Pipeline:
    """A reusable build pipeline, as a file of the recipe repository."""

    name: str  # its path under pipelines/, without .yaml
    file: Path
    sha256: str  # of the file's bytes: what a build that uses it records
    runs: str
    inputs: Mapping[str, PipelineInput] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class RunStep:
    """A build step that runs a script."""

    script: str
    line: int = 0


@dataclass(frozen=True)
class UseStep:
    """A build step that uses a pipeline, with the inputs the recipe gives it."""

    pipeline: str
    values: Mapping[str, str]
    line: int = 0


Step = RunStep | UseStep


def read_steps(reader: Reader, node: Node | None) -> tuple[Step, ...]:
    """A recipe's `build`: a script, or a list of `runs:` and `uses:` steps."""
    if node is None:
        return ()
    if node.kind == "scalar":
        return (RunStep(reader.string(node, "build") or "", node.line),)
    if node.kind != "seq" or not node.items:
        reader.problem(node.line, "build is a script, or a list of steps (runs: or uses:)")
        return ()
    steps: list[Step] = []
    for item in node.items:
        fields = reader.mapping(item, "a build step", {"runs", "uses", "with"})
        if item.kind != "map":
            continue  # said by mapping()
        if ("runs" in fields) == ("uses" in fields):
            reader.problem(item.line, "a build step has either runs: or uses:")
        elif "runs" in fields:
            if "with" in fields:
                reader.problem(fields["with"].line, "with: gives a pipeline's inputs; this"
                                                    " step uses none")
            steps.append(RunStep(reader.string(fields["runs"], "runs") or "", item.line))
        else:
            name = reader.string(fields["uses"], "uses") or ""
            if name and not _NAME.fullmatch(name):
                reader.problem(fields["uses"].line, f"{name!r} is not a pipeline's name"
                                                    " (a path under pipelines/, without .yaml)")
            steps.append(UseStep(name, reader.env(fields.get("with")), item.line))
    return tuple(steps)


def load_pipelines(root: Path) -> tuple[dict[str, Pipeline], list[Problem]]:
    """Every pipeline under `root/pipelines`, and every problem found reading them."""
    pipelines: dict[str, Pipeline] = {}
    problems: list[Problem] = []
    base = root / PIPELINE_DIRECTORY
    for file in sorted(base.rglob("*.yaml")) if base.is_dir() else ():
        name = file.relative_to(base).with_suffix("").as_posix()
        pipeline, found = _load_pipeline(file, name)
        problems.extend(found)
        if pipeline is not None:
            pipelines[name] = pipeline
    return pipelines, problems


def _load_pipeline(file: Path, name: str) -> tuple[Pipeline | None, list[Problem]]:
    where = str(file)
    if file.is_symlink() or not _NAME.fullmatch(name):
        return None, [Problem(where, 1, f"{name!r} is not a pipeline's name: lower case,"
                                        " digits, '.', '-', a plain file", "bad-recipe")]
    try:
        data = file.read_bytes()
        root = load_yaml(data.decode("utf-8"), where)
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(where, 1, f"cannot read the pipeline: {exc}", "unreadable-file")]
    except InputError as exc:  # not YAML
        return None, [yaml_problem(exc, where)]
    reader = Reader(where, "bad-recipe")
    top = reader.mapping(root, "the pipeline", {"description", "inputs", "runs"}, {"runs"})
    inputs: dict[str, PipelineInput] = {}
    if "inputs" in top:
        declared = top["inputs"]
        if declared.kind != "map":
            reader.problem(declared.line, "inputs is a mapping of names to"
                                          " {default, description}")
        for key, line, value in declared.pairs:
            if not _INPUT.fullmatch(key):
                reader.problem(line, f"{key!r} is not an input's name (lower case, digits, -)")
            fields = reader.mapping(value, f"input {key}", {"default", "description"})
            inputs[key] = PipelineInput(
                reader.string(fields.get("default"), "default") if "default" in fields
                else None, reader.string(fields.get("description"), "description") or "")
    runs = reader.string(top.get("runs"), "runs") or ""
    for used in _PLACEHOLDER.findall(runs):
        if used.removeprefix("inputs.") not in inputs or not used.startswith("inputs."):
            reader.problem(top["runs"].line, f"runs names ${{{{{used}}}}}, which is not one"
                                             " of its inputs")
    if reader.problems:
        return None, reader.problems
    return Pipeline(name, file, hashlib.sha256(data).hexdigest(), runs, inputs,
                    reader.string(top.get("description"), "description") or ""), []


def check_steps(recipe_file: Path, steps: tuple[Step, ...],
                pipelines: Mapping[str, Pipeline]) -> list[Problem]:
    """Every `uses:` names a pipeline, gives only its inputs, and every input it needs."""
    problems = []
    for step in steps:
        if not isinstance(step, UseStep) or not step.pipeline:
            continue
        pipeline = pipelines.get(step.pipeline)
        if pipeline is None:
            known = ", ".join(sorted(pipelines)) or "none there"
            problems.append(Problem(str(recipe_file), step.line,
                                    f"uses {step.pipeline}, which is not in"
                                    f" {PIPELINE_DIRECTORY}/ ({known})", "unknown-pipeline"))
            continue
        for key in sorted(set(step.values) - set(pipeline.inputs)):
            problems.append(Problem(str(recipe_file), step.line,
                                    f"{step.pipeline} has no input {key!r} (it takes:"
                                    f" {', '.join(sorted(pipeline.inputs)) or 'none'})",
                                    "unknown-pipeline-input"))
        for key, declared in sorted(pipeline.inputs.items()):
            if declared.default is None and key not in step.values:
                problems.append(Problem(str(recipe_file), step.line,
                                        f"{step.pipeline} needs the input {key!r}",
                                        "missing-pipeline-input"))
    return problems


def pipelines_used(steps: tuple[Step, ...], pipelines: Mapping[str, Pipeline],
                   ) -> tuple[Pipeline, ...]:
    """The pipelines `steps` use, each once, by name."""
    names = sorted({step.pipeline for step in steps if isinstance(step, UseStep)})
    return tuple(pipelines[name] for name in names if name in pipelines)


def render(steps: tuple[Step, ...], pipelines: Mapping[str, Pipeline]) -> str:
    """The build script: a script as written, or each step in a subshell of its own with
    its pipeline's inputs put in."""
    if len(steps) == 1 and isinstance(steps[0], RunStep):
        return steps[0].script
    parts = []
    for step in steps:
        if isinstance(step, RunStep):
            parts.append(f"(\n{step.script}\n)")
            continue
        pipeline = pipelines[step.pipeline]
        parts.append(f"# uses: {pipeline.name}\n(\n{_with_inputs(pipeline, step)}\n)")
    return "\n".join(parts) + "\n"


def _with_inputs(pipeline: Pipeline, step: UseStep) -> str:
    values = {key: step.values.get(key, declared.default or "")
              for key, declared in pipeline.inputs.items()}
    return _PLACEHOLDER.sub(lambda found: values[found.group(1).removeprefix("inputs.")],
                            pipeline.runs)
