"""`quality_train`: train a DCLM-style fastText quality classifier from labelled document nodes.

Inputs are document nodes; ``labels`` maps each input to its label (``{good_docs: hq, junk: lq}``), or
``label_column`` reads per-row labels (e.g. from ``distill_labels``). Output (type ``model``: a trained
model): ``model.bin`` in the node's output folder (``model-<lang>.bin`` too with ``per_language``) and a
one-shard table with one row per model: ``model`` (``fallback`` or the language), ``lang``, ``model_path``
(relative to the output folder), ``model_sha256``, ``labels``, ``positive_label``, the preprocessing
(``text_chars``, ``lowercase``), training counts, held-out ``precision``/``recall``/``f1``/``accuracy`` and
the fastText ``config``.

Two kinds of metrics. The default held-out split (``heldout_fraction`` of the documents, by a seeded id hash)
is drawn from the same inputs as training: it measures fit in distribution and overstates quality on data from
elsewhere (a spam model gave 0.99 there and 0.87 on mail of other months). ``eval_inputs`` names inputs used
only for evaluation (labelled like the others, by ``labels`` or ``label_column``): none of their documents is
trained on, and the "Evaluation on eval_inputs" report gives accuracy, precision, recall, F1 and ROC AUC per
language (each scored by its language's model, else the fallback) and over all, with ``eval_*`` columns in the
table. A ``quality_score`` node that reads this node scores with these models. The shard's
rows are models, so its accounting counts models; document counts are in the report.

Training runs with ``thread=1`` and a fixed seed and is deterministic (same model bytes); so is the sample,
capped per label by a seeded hash of the id (see ``data_pipes.web.quality_training``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web import quality_fasttext as ft
from data_pipes.web import quality_training as qt
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.param_error import ParamError
from tasks.registry import register

_LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")


class QualityTrainParams(KindParams):
    labels: dict[str, str] = Field(
        default_factory=dict, description="input node id -> its label, e.g. {good_docs: hq, junk: lq}"
    )
    label_column: str | None = Field(
        None, description="read labels per row from this column instead (inputs not listed in `labels`)"
    )
    positive_label: str = Field("hq", description="the label whose probability is the quality score")
    max_per_label: int | None = Field(
        None,
        ge=1,
        description="cap per label (per label and language with "
        "per_language), chosen by a seeded hash of the id",
    )
    seed: int = Field(0, description="seed of the sample, the held-out split and fastText")
    text_chars: int = Field(10_000, ge=0, description="use the first N characters of each text (0: all)")
    lowercase: bool = Field(False, description="lowercase texts before training and scoring")
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="share held out for the metrics")
    epoch: int = Field(10, ge=1, description="fastText epochs")
    lr: float = Field(0.5, gt=0, description="fastText learning rate (0.1 underfits below ~10k docs)")
    dim: int = Field(64, ge=2, description="fastText embedding size")
    word_ngrams: int = Field(2, ge=1, description="word n-grams (DCLM: bigrams)")
    min_count: int = Field(1, ge=1, description="minimum word count")
    bucket: int = Field(
        500_000, ge=1000, description="n-gram hash buckets (model size ~ bucket x dim x 4 bytes)"
    )
    per_language: bool = Field(False, description="one model per `lang` value, plus the fallback on all")
    languages: list[str] = Field(
        default_factory=list, description="with per_language: only these get a model"
    )
    min_docs_per_language: int = Field(50, ge=1, description="per label, for a language to get its own model")
    eval_inputs: list[str] = Field(
        default_factory=list,
        description="inputs used only to evaluate (never trained on), labelled by `labels` or `label_column`: "
        "the honest figure on data not drawn from the training inputs",
    )


@register
class QualityTrain(Kind):
    name: ClassVar[str] = "quality_train"
    Params = QualityTrainParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.MODEL
    packages = ("fasttext-numpy2-wheel", "polars", "numpy")
    description = "train a fastText quality classifier (DCLM: bigrams) from labelled inputs; held-out metrics"
    phases: ClassVar[tuple[str, ...]] = ("collect", "train")

    def check_inputs(self, params, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = [
            (("labels", name), f"{name!r} is not an input of this node; its inputs are {inputs}")
            for name in params.labels
            if name not in inputs
        ]
        problems += [
            (("eval_inputs", i), f"{name!r} is not an input of this node; its inputs are {inputs}")
            for i, name in enumerate(params.eval_inputs)
            if name not in inputs
        ]
        if inputs and not set(inputs) - set(params.eval_inputs):
            problems.append(
                (("eval_inputs",), "every input is an eval input; leave at least one to train on")
            )
        return problems

    def check_params(self, params: QualityTrainParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if not params.labels and not params.label_column:
            problems.append((("labels",), "give `labels` ({input: label}) or `label_column`"))
        for node, label in params.labels.items():
            if not _LABEL.match(label):
                problems.append((("labels", node), f"label {label!r} must be letters, digits, _ or -"))
        if params.labels and not params.label_column and params.positive_label not in params.labels.values():
            problems.append(
                (
                    ("positive_label",),
                    f"{params.positive_label!r} is none of the labels {sorted(set(params.labels.values()))}",
                )
            )
        return problems

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: QualityTrainParams = ctx.params  # type: ignore[assignment]
        names = [i.name for i in ctx.inputs]
        unknown = sorted(set(params.labels) - set(names))
        if unknown:
            raise ParamError(
                ctx.node_id,
                ("labels",),
                f"`labels` names {unknown}, which are not inputs",
                f"name only the node's inputs: {', '.join(names)}",
            )
        unlabelled = [n for n in names if n not in params.labels]
        if unlabelled and not params.label_column:
            raise ParamError(
                ctx.node_id,
                ("labels",),
                f"inputs {unlabelled} have no label",
                "add them to `labels` or set `label_column`",
            )
        preprocess = ft.Preprocess(params.text_chars, params.lowercase)
        specs, evals = [], []
        for inp in ctx.inputs:
            if inp.name in params.eval_inputs:
                for path in inp.shards:
                    evals.append(
                        qt.SampleSpec(
                            path,
                            qt.eval_path(ctx.out_dir, len(evals)),
                            params.labels.get(inp.name),
                            params.label_column,
                            preprocess,
                            True,  # keep `lang`: the report is per language
                            None,
                            params.seed,
                        )
                    )
                continue
            for path in inp.shards:
                specs.append(
                    qt.SampleSpec(
                        path,
                        qt.sample_path(ctx.out_dir, len(specs)),
                        params.labels.get(inp.name),
                        params.label_column,
                        preprocess,
                        params.per_language,
                        params.max_per_label,
                        params.seed,
                    )
                )
        groups = ctx.map(qt.collect_shard, specs + evals, phase="collect")[: len(specs)]
        caps = qt.global_caps(groups, params.max_per_label)
        payload = {"samples": [s.out_path for s in specs], "eval": [s.out_path for s in evals], "caps": caps}
        task = ShardTask(0, payload, label="train")
        results = ctx.run_shards([task])
        shutil.rmtree(os.path.dirname(qt.sample_path(ctx.out_dir, 0)), ignore_errors=True)  # scratch only
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: QualityTrainParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        samples = qt.load_samples(task.payload["samples"], task.payload["caps"], params.heldout_fraction)
        labels = sorted(set(samples["label"].to_list()))
        if params.positive_label not in labels:
            raise ValueError(
                f"positive_label {params.positive_label!r} is not among the labels found {labels}"
            )
        if len(labels) < 2:
            raise ValueError(f"training needs at least two labels; found {labels}")
        config = ft.TrainConfig(
            params.epoch,
            params.lr,
            params.dim,
            params.word_ngrams,
            params.min_count,
            params.bucket,
            params.seed,
        )
        models = {}
        rows = []
        for m in qt.split_models(
            samples, params.per_language, params.languages, params.min_docs_per_language
        ):
            models[m.lang], row = self._train_one(m, out_dir, config, params, labels)
            rows.append(row)
        evaluation, overlap = self._evaluate(
            task.payload.get("eval", []), models, params.positive_label, samples
        )
        overall = evaluation[-1] if evaluation else {}
        for row in rows:  # the model's own figures on the eval inputs, and the node's overall ones
            own = [e for e in evaluation if e["model"] == row["model"] and e["lang"] not in ("all",)]
            row["eval_docs"] = sum(e["docs"] for e in own) if evaluation else None
            row["eval_accuracy_all"] = overall.get("accuracy")
            row["eval_auc_all"] = overall.get("auc")
        table = pl.DataFrame(
            rows,
            schema_overrides={
                "eval_docs": pl.Int64,
                "eval_accuracy_all": pl.Float64,
                "eval_auc_all": pl.Float64,
                "heldout_auc": pl.Float64,
            },
        )
        extra = {
            "documents": samples.height,
            "heldout": int(samples["heldout"].sum()),
            "evaluation": evaluation,
            "eval_overlap": overlap,
        }
        return write_shard(out_dir, 0, table, rows_in=table.height, started=started, extra=extra)

    @staticmethod
    def _evaluate(
        paths: list[str], models: dict, positive: str, samples: pl.DataFrame
    ) -> tuple[list[dict], int]:
        """Metrics on the eval inputs, per language and over all ([] without eval inputs), and how many eval
        documents have the same preprocessed text as a training document (a leak the report names)."""
        if not paths:
            return [], 0
        frame = qt.load_eval(paths)
        if frame.height == 0:
            raise ValueError("eval_inputs hold no labelled document with text; check their labels")
        overlap = int(frame["line"].is_in(samples["line"].implode()).sum())
        return qt.evaluate(
            frame,
            lambda lang, lines: ft.probabilities(models[lang], lines, positive),
            lambda lang: lang in models,
            positive,
            ft.metrics,
        ), overlap

    @staticmethod
    def _train_one(
        m: qt.ModelData, out_dir: str, config: ft.TrainConfig, params: QualityTrainParams, labels: list[str]
    ) -> tuple[object, dict]:
        path = os.path.join(out_dir, qt.model_file(m.lang))
        model = ft.train(m.train, path, config)
        probs = ft.probabilities(model, [line for _, line in m.heldout], params.positive_label)
        scores = ft.metrics([label for label, _ in m.heldout], probs, params.positive_label)

        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        truth = [label for label, _ in m.heldout]
        return model, {
            "model": m.lang or "fallback",
            "lang": m.lang,
            "model_path": os.path.basename(path),
            "model_sha256": digest,
            "labels": labels,
            "positive_label": params.positive_label,
            "text_chars": params.text_chars,
            "lowercase": params.lowercase,
            "train_docs": len(m.train),
            "train_docs_per_label": json.dumps(m.counts()),
            **scores,
            "heldout_auc": qt.roc_auc(truth, probs, params.positive_label),
            "config": json.dumps(config.__dict__, sort_keys=True),
        }

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        params: QualityTrainParams = ctx.params  # type: ignore[assignment]
        table = pl.read_parquet(results[0].path)
        cols = [
            "model",
            "train_docs",
            "train_docs_per_label",
            "heldout_docs",
            "precision",
            "recall",
            "f1",
            "accuracy",
            "heldout_auc",
        ]
        evaluation = results[0].extra.get("evaluation") or []
        split = (
            "**What this measures:** an in-distribution split. The held-out documents come from the same "
            "inputs (same sources, same labelling) as the training documents, so these figures overstate "
            "quality on data from elsewhere. "
        )
        split += (
            'The honest figure on data not drawn from the training inputs is in "Evaluation on eval_inputs".'
            if evaluation
            else "For the honest figure, name inputs kept out of training in `eval_inputs`."
        )
        note = (
            split
            + " "
            + (
                f"fastText supervised, `wordNgrams={params.word_ngrams}`, `epoch={params.epoch}`, "
                f"`lr={params.lr}`, `dim={params.dim}`, `bucket={params.bucket}`, `thread=1`, "
                f"`seed={params.seed}` (deterministic). "
                f"Held-out: {params.heldout_fraction:.0%} of documents by seeded id hash; metrics are for "
                f"P({params.positive_label}) >= 0.5. Documents sampled: {results[0].extra.get('documents')}."
            )
        )
        ctx.add_report("Held-out metrics", markdown=note, table=table.select(cols).to_dicts())
        if evaluation:
            ctx.add_report(
                "Evaluation on eval_inputs",
                markdown=(
                    f"Inputs {params.eval_inputs}, never trained on. Each document is scored by its "
                    "language's model (else the fallback), as `quality_score` would; metrics are for "
                    f"P({params.positive_label}) >= 0.5, AUC over P({params.positive_label}) (none when a "
                    "language has one label only). Row `all` pools every language. "
                    f"Eval documents with the same text as a sampled training document: "
                    f"{results[0].extra.get('eval_overlap', 0)}"
                    + (
                        " (remove them from the eval inputs for a clean figure)."
                        if results[0].extra.get("eval_overlap")
                        else "."
                    )
                ),
                table=evaluation,
            )
