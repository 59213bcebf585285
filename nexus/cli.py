"""``nexus``: the pipeline's verbs for direct use (stage scripts call the same functions).

    nexus plan --caps cot            # what would run, no torch import
    nexus organize [--preview]       # catalog data files into data/organized/
    nexus detect models/base         # modalities of a model folder or GGUF file
    nexus prepare-base --out models/base
    nexus train --capability cot [--out models/capabilities/cot]
    nexus eval --capability cot --model models/capabilities/cot
    nexus chat models/merged         # stream tokens in the terminal
    nexus serve models/merged        # OpenAI-compatible /v1/chat/completions (SSE with stream: true)
    nexus merge --out models/merged  # one model out of the capability adapters
    nexus report                     # the scorecard (reports/scorecard/)
    nexus scores --caps cot          # base vs trained held-out scores
    nexus benchmark --model models/base [--tasks gsm8k,mmlu --limit 20]   # docs/benchmarks.md
    nexus compare --cap cot --methods sft,dpo,orpo   # method bake-off (docs/methods.md)
    nexus set-params --caps cot --method sft --epochs 2

Errors print one line (``error: ...``) and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nexus import registry
from nexus.cli_media import add_media_commands
from nexus.config import PARAMS_FILE

SERVING_VERBS = {  # their arguments are defined once, in nexus/serving/cli.py
    "chat": "chat in the terminal; tokens stream as they are generated",
    "serve": "serve an OpenAI-compatible /v1/chat/completions on localhost",
}


def _caps_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--caps", default="cot", help="capabilities or groups, comma-separated "
                        f"(valid: {', '.join(registry.valid_names())})")


def _cmd_plan(args: argparse.Namespace) -> int:
    from nexus.plan import build_plan, format_plan

    print(format_plan(build_plan(args.caps, params_file=args.params, quick=args.quick)))
    return 0


def _cmd_organize(args: argparse.Namespace) -> int:
    from nexus.catalog_summary import format_summary
    from nexus.methods import load_params
    from nexus.organize import organize

    params = load_params(args.params)
    written = _path(args.out) / "catalog.json"
    before = written.read_bytes() if written.is_file() else None
    catalog = organize([*map(_path, params.organize.sources)], _path(args.out),
                       head_records=params.organize.head_records,
                       model_dirs=[*map(_path, params.organize.model_dirs)], move=args.move)
    print(format_summary(catalog))
    if before == written.read_bytes():  # the stage runs on every `dvc repro`: say when that changed nothing
        print(f"{args.out}: unchanged since the last run (same files, same contents): nothing downstream reruns")
    if args.preview:
        from nexus.preview import preview

        print(preview(params, organized_dir=_path(args.out)))
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    import json

    from nexus.modality import detect_modalities, write_report

    model = args.model
    if model is None:
        from nexus.methods import load_params

        model = load_params(args.params).base.model
    report = write_report(model, args.out) if args.out else detect_modalities(model)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_prepare_base(args: argparse.Namespace) -> int:
    from nexus import logs
    from nexus.loading import convert_to_hf, embedded_gguf_path, is_converted

    logs.setup("prepare_base")
    source = args.source or embedded_gguf_path()
    if is_converted(source, args.out):  # dvc.yaml keeps the folder (persist): a code change reruns this
        logging.getLogger("nexus").info("%s already holds %s (its stamp matches): kept", args.out, source)
        return 0
    convert_to_hf(source, args.out)
    return 0


def _cmd_encoders(args: argparse.Namespace) -> int:
    import time

    from nexus import logs
    from nexus.encoder_stage import run_stage, summary_lines

    logs.setup("encoders")
    started = time.perf_counter()
    for line in summary_lines(run_stage(args.params, args.config, Path(args.out)), time.perf_counter() - started):
        print(line)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from nexus import logs, paths
    from nexus.config import with_overrides
    from nexus.methods import load_params
    from nexus.prepare import run_prepare

    name = _capability(args)
    logs.setup(f"prepare_{name}")
    params = with_overrides(load_params(args.params), name, quick=args.quick or None,
                            long_context=args.long_context)
    run_prepare(name, params, organized_dir=args.data, out_dir=args.out or paths.prepared_dir(name))
    return 0


def _capability(args: argparse.Namespace) -> str:
    """The run's capability: ``--capability``, else the one DVC names in ``$DVC_STAGE``.

    dvc.yaml's commands name no capability (a params.yaml key interpolated into a shell command
    could run code): DVC sets ``DVC_STAGE=train@cot`` for the command, and it is read from there.
    """
    import os

    if args.capability is None:
        stage = os.environ.get("DVC_STAGE", "").rsplit(":", 1)[-1]
        if "@" not in stage:
            raise ValueError("--capability is required (e.g. --capability cot) outside a DVC stage")
        args.capability = stage.split("@", 1)[1]
    name = registry.normalize(args.capability)
    registry.resolve(name)
    if getattr(args, "prepared", None) == "":  # bare --prepared: the prepare stage's own folder
        from nexus import paths

        args.prepared = str(paths.prepared_dir(name))
    return name


def _stage_params(args: argparse.Namespace, name: str):
    """params.yaml with the run's own --quick / --long-context; refused with --prepared, whose
    settings.json already holds what the prepare stage resolved."""
    from nexus.config import with_overrides
    from nexus.methods import load_params

    if args.prepared and (args.quick or args.long_context):
        raise ValueError("--quick and --long-context belong to the prepare stage: pass them to "
                         "`nexus prepare`, or leave out --prepared")
    return with_overrides(load_params(args.params), name, quick=args.quick or None,
                          long_context=args.long_context)


def _cmd_train(args: argparse.Namespace) -> int:
    from nexus.signals import install_stage_signals

    signals = install_stage_signals()  # before torch loads; kept until the process exits
    from nexus.config import load_launch
    from nexus.launch import needs_launch, relaunch

    launch = load_launch(args.params)
    if needs_launch(launch):  # this process becomes the ranks' parent (nexus/launch.py)
        return relaunch(launch, "nexus.cli", args.argv)
    from nexus import logs, paths, ranks
    from nexus.trainer import run_capability

    name = _capability(args)
    logs.setup(f"train_{name}", rank=0 if ranks.is_main() else ranks.rank())  # each node's first process reports
    run_capability(name, _stage_params(args, name), paths.output_dir(name, args.out), organized_dir=args.data,
                   modality_file=args.modality, prepared_dir=args.prepared, signals=signals)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from nexus import logs, paths
    from nexus.evaluate import run_eval

    name = _capability(args)
    logs.setup(f"eval_{name}")
    metrics = run_eval(name, _stage_params(args, name), args.model or paths.output_dir(name),
                       organized_dir=args.data, prepared_dir=args.prepared, report_dir=args.out)
    print(json.dumps({name: metrics}))
    return 0


LAUNCH_FLAGS: dict[str, type] = {"processes": int, "nodes": int, "node-rank": int, "master-addr": str,
                                 "master-port": int, "strategy": str}
"""``set-params`` flags for the ``launch:`` section (``make train NPROC=2 ...``)."""


def _cmd_set_params(args: argparse.Namespace) -> int:
    from nexus.params_edit import apply_overrides, overrides_from_options

    selected, _ = registry.resolve(args.caps)
    changes = overrides_from_options(selected, method=args.method, sample_size=args.sample_size,
                                     epochs=args.epochs, batch_size=args.batch_size, quick=args.quick)
    for flag in LAUNCH_FLAGS:
        key = flag.replace("-", "_")
        if getattr(args, key) is not None:
            changes[f"launch.{key}"] = getattr(args, key)
    for line in apply_overrides(args.params, changes, select=selected if args.select else None):
        print(line)
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from nexus import logs
    from nexus.merge import adapter_dirs, merge_adapters, merged_capabilities, write_nothing_merged
    from nexus.methods import load_params

    logs.setup("merge")
    params = load_params(args.params)
    adapters = adapter_dirs(merged_capabilities(params, args.models), args.models)
    m = params.merge
    if not adapters and not m.capabilities:
        write_nothing_merged(args.out, list(params.capabilities))
        return 0
    merge_adapters(params.base.model, adapters, args.out, m.combination, m.weights, m.density)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from nexus import logs
    from nexus.methods import load_params
    from nexus.report import run_report

    logs.setup("report")
    run_report(load_params(args.params), args.out, models_dir=args.models, merged_dir=args.merged,
               prepared_dir=args.prepared, eval_dir=args.eval_reports, train_dir=args.train_reports)
    return 0


def _cmd_serving(args: argparse.Namespace) -> int:
    """``nexus chat|serve``: parsed and run by :func:`nexus.serving.cli.run`, imported here only, so
    that no other verb (the train stage's included) loads the REPL or the HTTP server."""
    from nexus.serving.cli import run

    return run([args.command, *args.arguments], prog="nexus", parents=[args.common_options])


def _cmd_scores(args: argparse.Namespace) -> int:
    import json

    from nexus import paths

    selected, _ = registry.resolve(args.caps)
    for name in selected:
        report = paths.eval_report_dir(name) / "metrics.json"
        if not report.is_file():
            print(f"{name}: not evaluated yet (run make train CAPS={name})")
            continue
        metrics = json.loads(report.read_text(encoding="utf-8"))
        for key, trained in metrics["trained"].items():
            base = metrics["base"].get(key, float("nan"))
            print(f"{name} {key}: base {base:.3f} -> trained {trained:.3f} (n={metrics['n']} held out)")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from nexus.compare import compare

    return compare(args.cap, args.methods, args.params, quick=args.quick)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from nexus import logs
    from nexus.benchmarks import BenchmarkError, format_table, parse_names, run_benchmarks
    from nexus.loading import ModelSourceError, model_source

    try:  # usage errors (exit 2) are found before torch is imported
        names = parse_names(args.tasks)
        model_source(args.model)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModelSourceError:
        print(f"error: --model {args.model}: not a model; give an HF folder with config.json, a .gguf file "
              "or an adapter folder (e.g. models/base, made by `make train` or `nexus prepare-base`)",
              file=sys.stderr)
        return 2
    logs.setup("benchmark")
    results = run_benchmarks(args.model, names, args.limit, args.out, backend=args.backend,
                             batch_size=args.batch_size, num_fewshot=args.num_fewshot,
                             max_new_tokens=args.max_new_tokens)
    print(format_table(results))
    return 0


def _path(value: str):
    from pathlib import Path

    return Path(value)


def build_parser() -> argparse.ArgumentParser:
    """The ``nexus`` argument parser (one sub-command per verb)."""
    parser = argparse.ArgumentParser(prog="nexus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", parents=[common], help="print the stage plan without training (no torch import)")
    _caps_arg(p)
    p.add_argument("--quick", action="store_true", help="show the plan for QUICK=1")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("organize", parents=[common], help="detect data files' formats and route them to capabilities")
    p.add_argument("--out", default="data/organized", help="output folder (default: data/organized)")
    p.add_argument("--move", action="store_true",
                   help="MOVE files from data/raw into per-capability folders (the seed's behaviour)")
    p.add_argument("--preview", action="store_true",
                   help="also show two formatted examples per capability with the loss mask, and drop counts")
    p.set_defaults(func=_cmd_organize)

    p = sub.add_parser("detect", parents=[common], help="print a model's modalities (reads config/GGUF metadata only)")
    p.add_argument("model", nargs="?", help="HF model folder or .gguf file (default: base.model)")
    p.add_argument("--out", help="also write the report to this JSON file")
    p.set_defaults(func=_cmd_detect)

    add_media_commands(sub, common)  # podcast, generate-image, generate-video, explain (nexus.cli_media)

    p = sub.add_parser("prepare-base", parents=[common],
                       help="convert the embedded SmolLM2 GGUF (or --source) to an HF folder")
    p.add_argument("--out", default="models/base")
    p.add_argument("--source", help="a .gguf file or HF folder (default: the embedded SmolLM2)")
    p.set_defaults(func=_cmd_prepare_base)

    p = sub.add_parser("encoders", parents=[common],
                       help="convert the encoders the selected capabilities name (configs/encoders.yaml)")
    p.add_argument("--config", default="configs/encoders.yaml", help="the encoders file (default: %(default)s)")
    p.add_argument("--out", default="models/encoders", help="root of the converted encoders (default: %(default)s)")
    p.set_defaults(func=_cmd_encoders)

    run_options = argparse.ArgumentParser(add_help=False)  # prepare, and train/eval without --prepared
    run_options.add_argument("--capability", help="e.g. cot (default under DVC: the stage's, from $DVC_STAGE)")
    run_options.add_argument("--data", default="data/organized", help="organizer output folder")
    run_options.add_argument("--quick", action="store_true",
                             help="quick mode for this run: 10 steps, batch 1, 5 eval records (params: quick: true)")
    run_options.add_argument("--long-context", type=int, metavar="TOKENS",
                             help="train at this context length by RoPE scaling (params: long_context)")
    prepared = argparse.ArgumentParser(add_help=False)
    prepared.add_argument("--prepared", metavar="DIR", nargs="?", const="",
                          help="the prepare stage's folder (bare --prepared: data/prepared/<cap>); without "
                               "it the split is built in memory from params.yaml")

    p = sub.add_parser("prepare", parents=[common, run_options],
                       help="format and split one capability's records (what `dvc repro prepare@<cap>` runs)")
    p.add_argument("--out", help="output folder (default: data/prepared/<cap>)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", parents=[common, run_options, prepared],
                       help="train one capability (what `dvc repro train@<cap>` runs)")
    p.add_argument("--out", help="output folder (default: $NEXUS_OUTPUT_DIR/<cap> or models/capabilities/<cap>)")
    p.add_argument("--modality", default="data/modality.json", help="modality report of the base model")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", parents=[common, run_options, prepared],
                       help="score base and trained model on the held-out split")
    p.add_argument("--model", help="trained model folder (default: models/capabilities/<cap>)")
    p.add_argument("--out", help="report folder (default: reports/eval/<cap>)")
    p.set_defaults(func=_cmd_eval)

    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--models", type=Path, default=Path("models/capabilities"),
                        help="folder of the trained capability models (default: models/capabilities)")

    p = sub.add_parser("merge", parents=[common, models], help="merge capability adapters into one model")
    p.add_argument("--out", default="models/merged")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("report", parents=[common, models],
                       help="scorecard: base, each capability model and the merged model")
    p.add_argument("--out", default="reports/scorecard")
    p.add_argument("--merged", type=Path, default=Path("models/merged"), help="merged model (default: models/merged)")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="prepare stages' folder")
    p.add_argument("--eval-reports", type=Path, default=Path("reports/eval"), help="eval stages' folder")
    p.add_argument("--train-reports", type=Path, default=Path("reports/train"), help="train stages' dvclive folder")
    p.set_defaults(func=_cmd_report)

    for verb, summary in SERVING_VERBS.items():  # every word after the verb goes to _cmd_serving
        p = sub.add_parser(verb, help=summary, add_help=False, prefix_chars="\0")
        p.add_argument("arguments", nargs="*")
        p.set_defaults(func=_cmd_serving, common_options=common)

    p = sub.add_parser("compare", parents=[common],
                       help="method bake-off: one dvc experiment per method, then a table (make compare)")
    p.add_argument("--cap", required=True, help="one capability, e.g. cot")
    p.add_argument("--methods", required=True, help="comma-separated methods, e.g. sft,dpo,orpo")
    p.add_argument("--quick", action="store_true", help="quick experiments: 10 steps, 5 eval records (QUICK=1)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("scores", parents=[common], help="print base vs trained scores of evaluated capabilities")
    _caps_arg(p)
    p.set_defaults(func=_cmd_scores)

    p = sub.add_parser("benchmark", parents=[common], help="GSM8K / MMLU scores of any model (docs/benchmarks.md)")
    p.add_argument("--model", required=True, help="HF model folder, .gguf file, or adapter folder (e.g. models/base)")
    p.add_argument("--tasks", default="gsm8k,mmlu", help="comma-separated benchmarks, or all (valid: gsm8k, mmlu)")
    p.add_argument("--limit", type=int, help="examples per benchmark, per subject for mmlu "
                   "(default: gsm8k 50, mmlu 20; 0: the whole test set)")
    p.add_argument("--out", default="reports/benchmarks", help="folder of <task>.json (default: reports/benchmarks)")
    p.add_argument("--backend", choices=("native", "lm-eval"), default="native",
                   help="native scorers (default) or lm-evaluation-harness, if installed")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default: 8)")
    p.add_argument("--num-fewshot", type=int, help="shots per prompt (default: 5)")
    p.add_argument("--max-new-tokens", type=int, help="gsm8k generation cap (default: 256)")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("set-params", parents=[common],
                       help="write Make-style overrides into params.yaml (DVC tracks them)")
    _caps_arg(p)
    p.add_argument("--method")
    p.add_argument("--sample-size", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--quick", choices=("0", "1"))
    for flag, kind in LAUNCH_FLAGS.items():
        p.add_argument(f"--{flag}", type=kind, help=f"launch.{flag.replace('-', '_')} (docs/distributed.md)")
    p.add_argument("--select", action="store_true",
                   help="make capabilities: hold exactly --caps (and what they chain from); park the others")
    p.set_defaults(func=_cmd_set_params)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; known errors become one ``error:`` line and exit code 1."""
    from nexus.logs import quiet_known_upstream_noise

    quiet_known_upstream_noise()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a multi-process train stage starts its ranks with the same words
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except (ValueError, OSError, KeyError) as err:
        logging.getLogger("nexus").debug("failed", exc_info=True)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if "LOCAL_RANK" not in os.environ:
        sys.exit(main())
    # A rank of a multi-process train stage (nexus/launch.py): once its run has ended (done, or its
    # SIGTERM checkpoint marked), it leaves at once, so the launcher never kills a rank in teardown.
    try:
        code = main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    from nexus.logs import exit_now

    exit_now(code)
