"""Commands on the learned market's predictors: ``logs``, ``finetune``, ``ensemble``, ``predictors-eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from launchsim.cli import render
from launchsim.cli.options import command_adder, count, number_from, output_file, output_folder, path_ending, positive_int
from launchsim.errors import LogsError
from launchsim.files import atomic_write, write_json


def register(sub: Any, shared: dict[str, argparse.ArgumentParser]) -> None:
    add = command_adder(sub)
    p = add("logs", "generate historical launch logs from the structural market", [shared["seed"]])
    p.add_argument("--out", required=True, type=path_ending(".parquet", ".csv"), help="a .parquet or .csv file")
    p.add_argument("--train", type=positive_int, default=2000, help="training products")
    p.add_argument("--heldout", type=count, default=300, help="held-out products (same wording)")
    p.add_argument("--paraphrase", type=count, default=300, help="held-out products in wording never seen in training")
    p.add_argument("--heterogeneity", type=float, default=0.05, help="per-product noise the text does not carry")
    p.add_argument("--reference", action="store_true", help="add the demand of a model that knows everything but the market size to the held-out rows")
    p.set_defaults(func=cmd_logs)

    p = add("finetune", "fine-tune a BERT predictor on logs (generated, or your own CSV/Parquet)", [shared["seed"], shared["device"]])
    p.add_argument("--logs", required=True, help="a logs file; its schema in docs/PREDICTORS.md")
    p.add_argument("--out", required=True, type=output_folder, help="the predictor folder to write")
    p.add_argument("--encoder", help="a local BERT-family folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--mode", choices=["frozen", "lora", "full"], default="lora", help="how the encoder trains")
    p.add_argument("--lora-rank", type=positive_int, default=16, help="rank of the LoRA adapters (--mode lora)")
    p.add_argument("--head-epochs", type=positive_int, default=150, help="epochs of the heads on the frozen encoder's embeddings")
    p.add_argument("--encoder-epochs", type=count, default=3, help="epochs of the encoder with the heads (lora, full)")
    p.add_argument("--polish-epochs", type=count, default=40, help="epochs of the heads on the fine-tuned embeddings")
    p.add_argument("--hidden", type=positive_int, default=256, help="width of the demand head")
    p.add_argument(
        "--closed-loop-from", type=number_from(0.0, 1.0), default=1.0, metavar="SHARE",
        help="from this share of the heads' epochs on, train demand on buyers so far as the env computes them for a new product (its own predictions) rather than as observed; 1 = observed only",
    )  # fmt: skip
    p.add_argument("--no-zero-fill", action="store_true", help="do not count a product's missing weeks as zero units")
    p.add_argument("--members", type=positive_int, default=1, help="fits at seeds --seed, --seed + 1, ...; more than one writes an ensemble of them (each in a seed_K folder inside --out)")
    p.set_defaults(func=cmd_finetune)

    p = add("backtest", "score a predictor on logs as the env uses it (closed loop) and with observed history (open loop), next to baselines", [shared["predictor"], shared["seed"], shared["device"]])
    p.add_argument("--logs", required=True, help="the logs to score, every product from its first week")
    p.add_argument("--train-logs", help="the logs the predictor was trained on: the baselines are fitted on them")
    p.add_argument("--heldout-only", action="store_true", help="score only the products finetune holds out of --logs (one in five by a hash of the id); the rest train the baselines unless --train-logs")
    p.add_argument("--json", required=True, type=output_file, help="the metrics file to write")
    p.add_argument("--report", type=output_folder, metavar="DIR", help="also write report.md and backtest.png into this folder")
    p.add_argument("--no-zero-fill", action="store_true", help="do not count a product's missing weeks as zero units")
    p.set_defaults(func=cmd_backtest)

    p = add("coverage", "how often the learned market's 90% model interval holds the true expected profit (generated and shipped products, fixed plans)", [shared["predictor"], shared["device"]])
    p.add_argument("--products", type=count, default=200, help="generated products the predictor never saw")
    p.add_argument("--generator-seed", type=int, default=777, help="seed of the generated products")
    p.add_argument("--json", required=True, type=output_file, help="the summary file to write (and a .csv of every case beside it)")
    p.set_defaults(func=cmd_coverage)

    p = add("ensemble", "combine predictor folders into one learned market (the mean of their responses)", [])
    p.add_argument("--members", nargs="+", required=True, metavar="DIR", help="two or more predictor folders")
    p.add_argument("--out", required=True, type=output_folder, help="the ensemble folder to write (it stores the members' paths relative to it)")
    p.set_defaults(func=cmd_ensemble)

    p = add("predictors-eval", "R², deviance and calibration on held-out products next to text baselines", [shared["predictor"], shared["seed"], shared["device"]])
    p.add_argument("--logs", required=True, help="a logs file")
    p.add_argument("--json", required=True, type=output_file, help="the metrics file to write")
    p.add_argument("--png", help="the plot file (default: next to --json)")
    p.add_argument("--no-zero-fill", action="store_true", help="do not count a product's missing weeks as zero units")
    p.set_defaults(func=cmd_predictors_eval)


def cmd_backtest(args: argparse.Namespace) -> int:
    from launchsim.models.backtest import backtest, plot_backtest, report_markdown, strip_predictions
    from launchsim.models.learned_market import DEFAULT_MARKET_DIR, load_predictor
    from launchsim.models.predictor_eval import is_heldout_product
    from launchsim.models.user_logs import read_logs

    logs = read_logs(args.logs, zero_fill=not args.no_zero_fill)
    train = read_logs(args.train_logs, zero_fill=not args.no_zero_fill) if args.train_logs else None
    if args.heldout_only:
        held = is_heldout_product(logs["product_id"]).to_numpy()
        if train is None:
            train = logs[~held].reset_index(drop=True)
        logs = logs[held].reset_index(drop=True)
    predictor = load_predictor(args.predictor, device=args.device)
    print(f"backtesting on {logs['product_id'].nunique():,} products ({len(logs):,} product-weeks)")
    report = backtest(predictor, logs, train, seed=args.seed)
    result = {
        "predictor": str(args.predictor or DEFAULT_MARKET_DIR), "identity": predictor.identity, "logs": str(args.logs),
        "train_logs": str(args.train_logs) if args.train_logs else ("the rest of --logs" if args.heldout_only else None),
        "heldout_only": args.heldout_only, **strip_predictions(report),
    }  # fmt: skip
    write_json(args.json, result)
    print("\n".join(render.backtest_lines(result)))
    written = [str(args.json)]
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        written.append(str(plot_backtest(report, logs, out / "backtest.png")))
        atomic_write(out / "report.md", report_markdown(result) + "\n")
        written.append(str(out / "report.md"))
    print(f"written to {', '.join(written)}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from launchsim.envs.log_generator import generate_logs, write_logs

    logs = generate_logs(args.train, args.heldout, args.paraphrase, seed=args.seed, heterogeneity=args.heterogeneity, reference=args.reference)
    path = write_logs(logs, args.out)
    counts = logs.groupby("split")["product_id"].nunique().to_dict()
    print(f"{len(logs):,} product-weeks of {sum(counts.values()):,} products ({counts}) written to {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from launchsim.models.ensemble import PredictorEnsemble, check_ensemble_folder
    from launchsim.models.finetune import FinetuneConfig, finetune
    from launchsim.models.predictor_eval import with_splits
    from launchsim.models.user_logs import read_logs

    out = Path(args.out)
    if args.members > 1:
        check_ensemble_folder(out)  # before the fits, not after them
    logs = with_splits(read_logs(args.logs, zero_fill=not args.no_zero_fill))
    train = logs[logs["split"] == "train"].reset_index(drop=True)
    heldout = logs[logs["split"] != "train"].reset_index(drop=True)
    held = heldout["product_id"].nunique()
    if train.empty:
        raise LogsError(f"{args.logs}: all {held:,} products fall in the hold-out (one in five by a hash of the product id, and every held-out or paraphrase row of generated logs); there is nothing to train on")
    print(f"training on {train['product_id'].nunique():,} products ({len(train):,} rows); {held:,} products held out")
    cfg = FinetuneConfig(
        encoder=args.encoder, mode=args.mode, lora_rank=args.lora_rank, head_epochs=args.head_epochs,
        encoder_epochs=args.encoder_epochs, polish_epochs=args.polish_epochs, hidden=args.hidden,
        closed_loop_from=args.closed_loop_from, seed=args.seed, device=args.device,
    )  # fmt: skip
    if args.members == 1:
        predictor = finetune(train, cfg, source=str(args.logs))
        _measure_level_error(predictor, predictor.card, heldout)
        predictor.save(out)
        print(f"predictor written to {out} (identity {predictor.identity}); trained heads: {', '.join(predictor.card['targets_trained'])}")
        return 0
    members, folders = [], []
    for seed in range(args.seed, args.seed + args.members):
        print(f"member {len(members) + 1} of {args.members} (seed {seed})")
        members.append(finetune(train, replace(cfg, seed=seed), source=str(args.logs)))
        _measure_level_error(members[-1], members[-1].card, heldout)
        folders.append(members[-1].save(out / f"seed_{seed}"))
    ensemble, measured = PredictorEnsemble(members), {}
    _measure_level_error(ensemble, measured, heldout)
    PredictorEnsemble.write(out, folders, measured)
    print(f"ensemble of {len(members)} predictors written to {out} (identity {ensemble.identity}); trained heads: {', '.join(members[0].card['targets_trained'])}")
    return 0


def _measure_level_error(predictor: Any, card: dict[str, Any], heldout: Any) -> None:
    """Record on ``card`` the predictor's closed-loop demand-level error on the held-out products: the
    width of its model draws."""
    if heldout["product_id"].nunique() > 1:
        from launchsim.models.backtest import closed_loop_level_log_sd

        card["demand_level_log_sd"] = closed_loop_level_log_sd(predictor, heldout)
        card["demand_level_log_sd_products"] = int(heldout["product_id"].nunique())
        print(f"demand-level error on {card['demand_level_log_sd_products']:,} held-out products (closed loop): log-sd {card['demand_level_log_sd']:.3f}")


def cmd_ensemble(args: argparse.Namespace) -> int:
    from launchsim.models.ensemble import PredictorEnsemble

    out = PredictorEnsemble.write(args.out, args.members)
    ensemble = PredictorEnsemble.load(out, device="cpu")  # loads every member: a broken one fails here, not in a run
    print(f"ensemble of {len(ensemble.members)} predictors written to {out} (identity {ensemble.identity})")
    return 0


def cmd_predictors_eval(args: argparse.Namespace) -> int:
    from launchsim.models.learned_market import DEFAULT_MARKET_DIR, load_predictor
    from launchsim.models.predictor_eval import evaluate, plot_report, strip_predictions
    from launchsim.models.user_logs import read_logs

    predictor = load_predictor(args.predictor, device=args.device)
    logs = read_logs(args.logs, zero_fill=not args.no_zero_fill)
    report = evaluate(predictor, logs, seed=args.seed)
    png = plot_report(report, logs, args.png or Path(args.json).with_suffix(".png"))
    result = {"predictor": str(args.predictor or DEFAULT_MARKET_DIR), "identity": predictor.identity, "logs": str(args.logs), **strip_predictions(report)}
    write_json(args.json, result)
    print("\n".join(render.predictor_eval_lines(result)))
    print(f"written to {args.json} and {png}")
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    from launchsim.agents.evaluation.uncertainty import coverage
    from launchsim.files import write_frame
    from launchsim.models.learned_market import load_predictor

    summary, frame = coverage(load_predictor(args.predictor, device=args.device), products=args.products, seed=args.generator_seed, progress=True)
    write_json(args.json, summary)
    write_frame(Path(args.json).with_suffix(".csv"), frame)
    print("\n".join(render.coverage_lines(summary)))
    print(f"written to {args.json} and {Path(args.json).with_suffix('.csv').name}")
    return 0
