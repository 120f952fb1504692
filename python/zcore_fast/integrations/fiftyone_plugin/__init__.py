"""FiftyOne plugin: the `select_coreset` operator, for App users.

It wraps `zcore_fast.integrations.fiftyone.select_coreset` (same defaults,
same results). FiftyOne loads this file itself; register the plugin with
`FIFTYONE_PLUGINS_DIR` (see `zcore_fast.integrations.fiftyone.plugin_dir`).
"""

from __future__ import annotations

from typing import Any

import fiftyone.core.fields as fof
import fiftyone.operators as foo
import fiftyone.operators.types as types

from zcore_fast.integrations.fiftyone import run_coreset
from zcore_fast.methods.registry import METHODS, method_options
from zcore_fast.methods.scorers import ZCORE_OPTIONS
from zcore_fast.methods.zcore import DEFAULTS

#: ZCore's parameters in the form: (name, type, label, description).
_ZCORE_FORM: tuple[tuple[str, str, str, str], ...] = (
    ("n_sample", "int", "Samples", "random samples drawn (more: steadier scores, slower)"),
    ("sample_dim", "int", "Dimensions per sample", "embedding dimensions each sample uses"),
    ("redund_nn", "int", "Redundancy neighbours", "nearest neighbours penalised per pick"),
    ("redund_exp", "float", "Redundancy exponent", "how fast the penalty falls with rank"),
    ("rand_init", "bool", "Random start", "start each sample at a random point"),
)


class SelectCoreset(foo.Operator):
    """Selects a coreset of the target view, writes each sample's score and
    shows (and optionally saves) the coreset view."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="select_coreset",
            label="Select coreset (zcore-fast)",
            description="Pick the most informative samples from their embeddings",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx: Any) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx)
        fields = embedding_fields(ctx.dataset)
        if not fields:
            inputs.view(
                "no_embeddings",
                types.Warning(
                    label="No embeddings field",
                    description="Compute embeddings first (e.g. dataset.compute_embeddings)",
                ),
            )
            return types.Property(inputs, view=types.View(label="Select coreset"))
        choices = types.Dropdown()
        for f in fields:
            choices.add_choice(f, label=f)
        inputs.enum(
            "embeddings",
            choices.values(),
            default=fields[0],
            required=True,
            label="Embeddings field",
            view=choices,
        )
        methods = types.Dropdown()
        for m in METHODS:
            methods.add_choice(m, label=m)
        inputs.enum(
            "method",
            methods.values(),
            default="zcore",
            required=True,
            label="Method",
            view=methods,
        )
        inputs.float(
            "budget",
            default=0.1,
            min=0,
            required=True,
            label="Budget",
            description="a fraction of the samples (0 to 1], or a sample count (> 1)",
        )
        inputs.int("seed", default=0, required=True, label="Seed")
        if "n_sample" in method_options(ctx.params.get("method", "zcore")):
            for name, kind, label, description in _ZCORE_FORM:
                add = getattr(inputs, kind)
                add(name, default=DEFAULTS[name], label=label, description=description)
        inputs.str(
            "score_field",
            default="zcore_score",
            required=False,
            label="Score field",
            description="the sample field that gets each sample's score",
        )
        inputs.str(
            "saved_view",
            required=False,
            label="Save as view",
            description="optional name to save the coreset view under",
        )
        return types.Property(inputs, view=types.View(label="Select coreset"))

    def execute(self, ctx: Any) -> dict[str, Any]:
        params = ctx.params
        method = params.get("method", "zcore")
        budget = float(params["budget"])
        options = {
            k: params[k]
            for k in ZCORE_OPTIONS
            if params.get(k) is not None and k in method_options(method)
        }
        run = run_coreset(
            ctx.target_view(),
            int(budget) if budget > 1 else budget,
            embeddings=params["embeddings"],
            method=method,
            seed=int(params.get("seed") or 0),
            score_field=params.get("score_field", "zcore_score") or None,
            saved_view=params.get("saved_view") or None,
            **options,
        )
        if ctx.executor is not None:
            ctx.ops.set_view(view=run.view)
        return {"selected": len(run.view), "scored": run.scored, "left_out": len(run.left_out)}

    def resolve_output(self, ctx: Any) -> types.Property:
        outputs = types.Object()
        outputs.int("selected", label="Samples in the coreset")
        outputs.int("scored", label="Samples scored")
        outputs.int("left_out", label="Samples without an embedding (left out)")
        return types.Property(outputs, view=types.View(label="Coreset selected"))


def embedding_fields(dataset: Any) -> list[str]:
    """The dataset's top-level fields that can hold embeddings: vector fields
    and lists of numbers."""
    found = []
    for name, field in dataset.get_field_schema().items():
        if isinstance(field, fof.VectorField) or (
            isinstance(field, fof.ListField)
            and isinstance(field.field, (fof.FloatField, fof.IntField))
        ):
            found.append(name)
    return found


def register(plugin: Any) -> None:
    plugin.register(SelectCoreset)
