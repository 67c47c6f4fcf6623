"""run_sim.py: the one command line over the launch simulator.

    python run_sim.py validate scenarios/*.yaml
    python run_sim.py simulate --scenario food_coffee_bundle --policy bundle_first
    python run_sim.py bench --json bench.json

It parses arguments and calls package functions; user errors print one line each and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from launchsim.errors import LaunchSimError, PredictorError

EXIT_USER_ERROR = 2


def cmd_validate(args: argparse.Namespace) -> int:
    from launchsim.scenarios import load_scenario

    failed = 0
    for path in args.paths:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                s = load_scenario(path)
        except LaunchSimError as err:
            failed += 1
            for line in str(err).splitlines():
                print(f"error: {line}", file=sys.stderr)
            continue
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        print(f"ok: {path} ({s.name}: {s.category}, {s.horizon_weeks} weeks, {len(s.products)} product(s))")
    return EXIT_USER_ERROR if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from launchsim.agents.evaluation.simulate import simulate
    from launchsim.scenarios import load_scenario

    scenario = load_scenario(args.scenario)
    market = None
    if args.market == "learned":
        from launchsim.models.learned_market import load_predictor

        market = load_predictor(args.predictor, device=args.device)
    elif args.predictor:
        raise PredictorError("--predictor needs --market learned")
    weekly, summary = simulate(
        scenario, args.policy, product=args.product, seed=args.seed, episodes=args.episodes, outcomes=args.outcomes,
        response_model=market,
    )  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"{scenario.name} · policy {args.policy} · seed {args.seed} · {args.market} market")
    columns = {
        "week": "{:.0f}", "launched": "{}", "price": "{:.2f}", "bundle_partner": "{}", "ad_spend": "{:,.0f}",
        "impressions": "{:,.0f}", "clicks": "{:,.0f}", "demand": "{:,.0f}", "units_sold": "{:,.0f}",
        "stock_left": "{:,.0f}", "profit": "{:,.0f}", "cumulative_profit": "{:,.0f}",
    }  # fmt: skip
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right", no_wrap=True)
    for _, row in weekly.iterrows():
        table.add_row(*(fmt.format(row[col]) for col, fmt in columns.items()))
    console.print(table)
    total = summary["profit"]
    console.print(f"total profit (episode 1): {weekly['profit'].sum():,.2f}")
    if args.episodes > 1:
        console.print(f"mean profit over {args.episodes} episodes: {total.mean():,.2f} (sd {total.std(ddof=1):,.2f})")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        weekly.to_csv(args.csv, index=False)
        console.print(f"weekly table written to {args.csv}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from launchsim.envs.benchmark import run_benchmarks, run_vec_benchmarks

    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    result: dict = {}
    if args.only != "vec":
        result = run_benchmarks(n_steps=args.steps, repeats=args.repeats, progress=progress)
        for name, r in result["single_env"].items():
            print(f"{name:<40} {r['steps_per_s']:>12,.0f} steps/s  (min {r['min']:,.0f}, max {r['max']:,.0f})")
        print(f"launch market / CartPole-v1 (raw): structural {result['ratio_launch_market_to_cartpole_raw']:.2f}, learned {result['ratio_learned_market_to_cartpole_raw']:.2f}")
    if args.only != "single":
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise LaunchSimError("--device cuda: torch sees no CUDA device here")
        sizes = args.sizes or ([4096, 65536, 1048576] if device == "cuda" else [64, 1024, 4096])
        vec = run_vec_benchmarks(sizes, device=device, dummy_max=4096, repeats=min(args.repeats, 3), texts=args.texts, progress=progress)
        result["vec"] = vec
        for r in vec["vec_env"]:
            graph = " (CUDA graph)" if r.get("cuda_graph") else ""
            refill = f", {r['steps_per_s_with_refill']:,.0f} with the uniforms' refill" if "steps_per_s_with_refill" in r else ""
            if r.get("device_step_steps_per_s"):
                refill += f"; the graph alone {r['device_step_steps_per_s']:,.0f}"
            print(f"{r['env']:<12} {r['market']:<10} head {r['head']:<16} N={r['n']:>9,} {r['steps_per_s']:>14,.0f} steps/s{graph}{refill}")
        for r in vec["ppo"]:
            print(f"PPO {r['phase']:<8} {r['env']:<8} N={r['n']:>6,} {r['steps_per_s']:>10,.0f} steps/s")
        enc = vec["encoder"]
        print(
            f"encoder ({enc['dtype']}, batch {enc['batch']}): {enc['texts_per_s']:,.0f} texts/s end to end, tokenizer alone "
            f"{enc['tokenizer_texts_per_s']:,.0f}, forward alone {enc['forward_texts_per_s']:,.0f}; peak memory {vec['memory']}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"written to {args.json}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from launchsim.envs.log_generator import generate_logs, write_logs

    logs = generate_logs(
        args.train, args.heldout, args.paraphrase, seed=args.seed, heterogeneity=args.heterogeneity, reference=args.reference,
    )
    path = write_logs(logs, args.out)
    counts = logs.groupby("split")["product_id"].nunique().to_dict()
    print(f"{len(logs):,} product-weeks of {sum(counts.values()):,} products ({counts}) written to {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from launchsim.models.finetune import FinetuneConfig, finetune
    from launchsim.models.predictor_eval import with_splits
    from launchsim.models.user_logs import read_logs

    logs = with_splits(read_logs(args.logs, zero_fill=not args.no_zero_fill))
    train = logs[logs["split"] == "train"].reset_index(drop=True)
    held = logs["product_id"][logs["split"] != "train"].nunique()
    print(f"training on {train['product_id'].nunique():,} products ({len(train):,} rows); {held:,} products held out")
    cfg = FinetuneConfig(
        encoder=args.encoder, mode=args.mode, lora_rank=args.lora_rank, head_epochs=args.head_epochs,
        encoder_epochs=args.encoder_epochs, polish_epochs=args.polish_epochs, hidden=args.hidden, seed=args.seed,
        device=args.device,
    )  # fmt: skip
    predictor = finetune(train, cfg, source=str(args.logs))
    out = predictor.save(args.out)
    card = predictor.card
    print(f"predictor written to {out} (identity {predictor.identity}); trained heads: {', '.join(card['targets_trained'])}")
    return 0


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
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    for split, models in result["splits"].items():
        print(f"{split} ({result['rows'][split]['products']} products):")
        for name, m in models.items():
            r2 = m.get("demand_r2", m["demand_r2_vs_observed"])
            ctr = m.get("ctr_r2", m.get("ctr_r2_vs_observed"))
            ctr_text = "    n/a" if ctr is None else f"{ctr:7.4f}"
            level = m.get("demand_level_log_sd")
            level_text = "" if level is None else f"  product level log-sd {level:.3f}"
            print(f"  {name:<18} demand R² {r2:7.4f}  CTR R² {ctr_text}  deviance explained {m['demand_deviance_explained']:7.4f}{level_text}")
    print(f"written to {args.json} and {png}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from launchsim.agents.run_folder import DEFAULT_TRAINING_OUTCOMES, TrainConfig, default_run_dir, hyperparams_from_file
    from launchsim.agents.training.runs import (
        resume,
        summary_lines,
        train,
    )

    out = args.resume or args.out or default_run_dir(args.scenario, args.algo, args.seed)
    try:
        if args.resume:
            run_dir = resume(args.resume)
        else:
            config = TrainConfig(
                scenarios=args.scenario, algo=args.algo, steps=args.steps, market=args.market, predictor=args.predictor,
                n_envs=args.n_envs, seed=args.seed, demand_spread=args.demand_spread,
                outcomes=args.outcomes or DEFAULT_TRAINING_OUTCOMES, out=out,
                checkpoint_every=args.checkpoint_every,
                hyperparams=hyperparams_from_file(args.hyperparams, args.algo) if args.hyperparams else None,
                eval_episodes=args.eval_episodes, evaluation=args.evaluation, device=args.device, vec_kind=args.vec_kind,
            )  # fmt: skip
            run_dir = train(config)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python run_sim.py train --resume {out}", file=sys.stderr)
        return 130
    print("\n".join(summary_lines(json.loads((Path(run_dir) / "evaluation.json").read_text()))))
    print(f"run folder: {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from launchsim.agents.evaluation.evaluate import evaluate, report_rows, write_report
    from launchsim.agents.policies.source import check_policy_spec
    from launchsim.scenarios import load_scenario
    from launchsim.scenarios.overrides import apply_overrides

    scenario = load_scenario(args.scenario)
    apply_overrides(scenario, args.set)  # fail fast on a bad --set (evaluate applies them once)
    check_policy_spec(args.policy)  # and on a bad policy, before loading a predictor
    predictor = None
    if not args.no_learned:
        from launchsim.models.learned_market import load_predictor

        predictor = load_predictor(args.predictor, device=args.device)
    elif args.predictor:
        raise PredictorError("--predictor needs the learned market (drop --no-learned)")
    result = evaluate(
        scenario, args.policy, episodes=args.episodes, seed=args.seed, product=args.product, predictor=predictor,
        learned=not args.no_learned, progress=lambda message: print(message, file=sys.stderr), overrides=args.set,
    )  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"{result['scenario']} · {result['product_name']} · {args.episodes} episodes from seed {args.seed}")
    for col in ("policy", "profit (mean)", "95% CI", "ratio to oracle"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)
    oracle_profit = result["oracle"]["profit_mean"]
    for label, s in report_rows(result):
        low, high = s["profit_ci95"]
        ratio = f"{s['profit_mean'] / oracle_profit:.3f}" if oracle_profit else "n/a"
        table.add_row(label, f"{s['profit_mean']:,.0f}", f"[{low:,.0f}, {high:,.0f}]", ratio)
    console.print(table)
    line = f"ratio_to_oracle {result['ratio_to_oracle']:.3f}"
    if result.get("sim_to_real_gap") is not None:
        line += f"; sim_to_real_gap {result['sim_to_real_gap']:.3f}"
    console.print(line + f"; best heuristic {result['best_heuristic']['name']}")
    console.print(f"written to {args.json}")
    if args.report:
        paths = write_report(result, args.report)
        console.print(f"report: {paths['markdown']} and {paths['png']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console

    from launchsim.agents.evaluation.replay import replay, summary_table, write_replay
    from launchsim.scenarios import load_scenario
    from launchsim.scenarios.overrides import apply_overrides

    scenario = load_scenario(args.scenario)
    apply_overrides(scenario, args.set)  # fail fast on a bad --set, before loading a predictor
    predictor = _markets_predictor(args)
    result = replay(
        scenario, args.policy, overrides=args.set, versus=args.versus, episodes=args.episodes, seed=args.seed,
        product=args.product, markets=args.markets, predictor=predictor, actions=args.actions,
        rebuild_policy=args.rebuild_policy, outcomes=args.outcomes, progress=sys.stderr.isatty(),
    )  # fmt: skip
    paths = write_replay(result, args.out)
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(summary_table(result.summary))
    console.print(f"written to {paths['weekly_csv']}, {paths['weekly_parquet'].name}, {paths['summary'].name}, {paths['plot'].name}")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from rich.console import Console

    from launchsim.agents.policies.source import build_policy
    from launchsim.agents.evaluation.sensitivity import (
        LEVER_LABELS,
        console_table,
        plan_sensitivity,
        sensitivity_table,
        write_sensitivity,
    )
    from launchsim.scenarios import load_scenario, product_index

    scenario = load_scenario(args.scenario)
    index = product_index(scenario, args.product)
    predictor = _markets_predictor(args)
    policy = build_policy(args.policy, scenario, index, seed=args.seed, predictor=predictor, actions=args.actions)
    plan, rows = plan_sensitivity(
        scenario, policy, index, lever=args.lever, markets=args.markets, predictor=predictor, seed=args.seed
    )
    paths = write_sensitivity(plan, rows, args.out)
    spec = f"actions:{args.actions}" if args.actions else args.policy
    title = f"{scenario.name} · {spec} · change in episode profit from one week's {LEVER_LABELS[args.lever]} one level down / up (expected outcomes)"
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(console_table(sensitivity_table(rows), title))
    console.print(f"written to {paths['rows']}, {paths['plan'].name}, {paths['plot'].name}")
    return 0


def _markets_predictor(args: argparse.Namespace) -> Any:
    """The learned market's predictor when ``--markets`` includes it, else None (and ``--predictor`` is an error)."""
    if "learned" in args.markets:
        from launchsim.models.learned_market import load_predictor

        return load_predictor(args.predictor, device=args.device)
    if args.predictor:
        raise PredictorError("--predictor needs --markets learned")
    return None


def cmd_export_table(args: argparse.Namespace) -> int:
    from launchsim.agents.policies.source import build_policy
    from launchsim.agents.policies.table import TableGrid, read_table
    from launchsim.agents.tables import export_table
    from launchsim.scenarios import load_scenario, product_index

    scenario = load_scenario(args.scenario)
    index = product_index(scenario, args.product)
    policy = build_policy(args.policy, scenario, index, seed=args.seed, actions=args.actions)
    path = export_table(
        policy, scenario, index, grid=TableGrid.parse(args.bins), out=args.out,
        policy_spec=args.policy if args.actions is None else f"actions:{args.actions}", seed=args.seed,
        context_episodes=args.context_episodes, fidelity_episodes=args.fidelity_episodes,
    )  # fmt: skip
    _, meta = read_table(path)
    print(f"{meta['rows']:,} rows written to {path}")
    fid = meta.get("fidelity")
    if fid:
        ratio = "n/a (source profit ≤ 0)" if fid["profit_ratio"] is None else f"{100 * fid['profit_ratio']:.2f}%"
        ci = fid["delta_ci95"]
        print(
            f"fidelity in the ground-truth market over {fid['episodes']} episodes (seeds {fid['seeds'][0]}..{fid['seeds'][1]}): "
            f"table {fid['table_profit_mean']:,.2f} vs source {fid['source_profit_mean']:,.2f} profit ({ratio}; "
            f"delta {fid['delta_mean']:,.2f}" + ("" if ci is None else f", 95% CI [{ci[0]:,.2f}, {ci[1]:,.2f}]") + "); "
            f"actions agree in {100 * fid['agreement']:.2f}% of {fid['states']} visited states "
            f"(levers in effect; all five levers: {100 * fid['raw_agreement']:.2f}%)"
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from launchsim.agents.sweep.config import load_sweep
    from launchsim.agents.sweep.run import require_ray, run_sweep, summary_lines

    config, path = load_sweep(args.config)
    require_ray()
    out = Path(args.out) if args.out else Path("runs/sweeps") / config.name
    result = run_sweep(config, out, address=args.address, max_concurrent=args.max_concurrent, base_dir=path.parent)
    print("\n".join(summary_lines(result)))
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    from launchsim.agents.policies.heuristics import HEURISTICS
    from launchsim.scenarios import DEFAULT_SCENARIO

    parser = argparse.ArgumentParser(prog="run_sim.py", description="Launch-strategy simulator.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check scenario files; exit 2 if any is invalid")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="run a heuristic policy in a market, print the weekly table")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="a scenario file or a shipped scenario name")
    p.add_argument("--policy", default="list_price", help=f"one of: {', '.join(HEURISTICS)}")
    p.add_argument("--product", default="0", help="which product of the scenario to launch (index or name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=_positive_int, default=1, help="episodes to average (seeds seed, seed+1, ...)")
    p.add_argument("--outcomes", choices=["sampled", "expected"], default="sampled", help="sampled or noise-free")
    p.add_argument("--csv", help="also write the weekly table of the first episode to this CSV file")
    p.add_argument("--market", choices=["structural", "learned"], default="structural", help="ground truth or the BERT predictor")
    p.add_argument("--predictor", help="predictor or ensemble folder for --market learned (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--device", help="cpu or cuda for the predictor (default: cuda when present)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("logs", help="generate historical launch logs from the structural market")
    p.add_argument("--out", required=True, help="a .parquet or .csv file")
    p.add_argument("--train", type=_positive_int, default=2000, help="training products")
    p.add_argument("--heldout", type=int, default=300, help="held-out products (same wording)")
    p.add_argument("--paraphrase", type=int, default=300, help="held-out products in wording never seen in training")
    p.add_argument("--heterogeneity", type=float, default=0.05, help="per-product noise the text does not carry")
    p.add_argument(
        "--reference", action="store_true",
        help="add expected_demand_known_except_scale to the held-out rows: what the estimate's noise alone costs (predictors-eval reports it)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("finetune", help="fine-tune a BERT predictor on logs (generated, or your own CSV/Parquet)")
    p.add_argument("--logs", required=True, help="logs file; schema in docs/PREDICTORS.md")
    p.add_argument("--out", required=True, help="the predictor folder to write")
    p.add_argument("--encoder", help="a local BERT-family folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--mode", choices=["frozen", "lora", "full"], default="lora")
    p.add_argument("--lora-rank", type=_positive_int, default=16)
    p.add_argument("--head-epochs", type=int, default=150)
    p.add_argument("--encoder-epochs", type=int, default=3)
    p.add_argument("--polish-epochs", type=int, default=40)
    p.add_argument("--hidden", type=_positive_int, default=256)
    p.add_argument("--no-zero-fill", action="store_true", help="do not count a product's missing weeks as zero units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("ensemble", help="combine predictor folders into one learned market (the mean of their responses)")
    p.add_argument("--members", nargs="+", required=True, metavar="DIR", help="two or more predictor folders")
    p.add_argument("--out", required=True, help="the ensemble folder to write (it stores the members' paths relative to it)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("predictors-eval", help="R², deviance and calibration on held-out products vs two baselines")
    p.add_argument("--predictor", help="a predictor or ensemble folder (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--logs", required=True)
    p.add_argument("--json", required=True, help="metrics file to write")
    p.add_argument("--png", help="plot file (default: next to --json)")
    p.add_argument("--no-zero-fill", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.set_defaults(func=cmd_predictors_eval)

    p = sub.add_parser("train", help="train an SB3 agent in the learned (or structural) market; evaluate it in the ground truth")
    p.add_argument("--scenario", nargs="+", default=[DEFAULT_SCENARIO.stem], help="one or more scenario files or names (several: one policy for all)")
    p.add_argument("--algo", default="ppo", help="ppo, a2c, dqn, sac, td3 or maskable_ppo")
    p.add_argument("--steps", type=_positive_int, help="environment steps (default: the algorithm's n_timesteps in agents/hyperparams.yaml)")
    p.add_argument("--market", choices=["learned", "structural"], default="learned", help="the market trained in")
    p.add_argument("--predictor", help="predictor or ensemble folder for the learned market (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--n-envs", type=_positive_int, default=8)
    p.add_argument("--vec-kind", choices=["batched", "dummy"], help="VecEnv kind (default: batched on a GPU or from 64 envs, else SB3's DummyVecEnv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--demand-spread", type=_spread, metavar="SIGMA", help="domain randomisation: each training episode's demand times exp(N(0, SIGMA^2)) (default: 0.34, the shipped market's demand-level error, in the learned market; 0 in the structural; 0 turns it off)")
    p.add_argument("--outcomes", choices=["sampled", "expected"], default=None, help="the training market's weekly outcomes: their expectations, without sampling noise (default), or sampled counts; evaluation always samples")
    p.add_argument("--out", help="the run folder (default: runs/ALGO_SCENARIO_seedK)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from its last checkpoint (its own settings apply)")
    p.add_argument("--hyperparams", metavar="FILE.yaml", help="hyperparameters keyed by algorithm, over agents/hyperparams.yaml")
    p.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints (default: a tenth of the run)")
    p.add_argument("--eval-episodes", type=_positive_int, default=20, help="episodes per market of the final evaluation")
    p.add_argument("--evaluation", choices=["full", "quick"], default="full", help="full: ground truth, learned market, oracle and heuristics; quick: the training market only")
    p.add_argument("--device", help="cpu or cuda for the predictor (default: cuda when present); the agent runs on the CPU")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="judge a policy in the ground-truth market next to the oracle and heuristics, and in the learned market")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="a scenario file or a shipped scenario name")
    p.add_argument("--policy", required=True, help="heuristic name, oracle, run folder or lookup table (.csv/.parquet/.json)")
    p.add_argument("--episodes", type=_positive_int, default=20, help="episodes per policy and market (seeds seed, seed+1, ...)")
    p.add_argument("--json", required=True, help="the evaluation file to write")
    p.add_argument("--product", default="0", help="which product of the scenario to launch (index or name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--predictor", help="predictor or ensemble folder for the learned market (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--no-learned", action="store_true", help="skip the learned market (no sim_to_real_gap)")
    p.add_argument("--device", help="cpu or cuda for the predictor (default: cuda when present)")
    p.add_argument("--report", metavar="DIR", help="also write report.md and trajectories.png into this folder")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="judge on a changed scenario, e.g. products.0.market_estimate=9000 (repeatable; as in replay)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="steps/s: single envs vs CartPole, DummyVecEnv vs the batched VecEnv, PPO, encoder")
    p.add_argument("--steps", type=_positive_int, default=50_000, help="steps per single-env timing")
    p.add_argument("--repeats", type=_positive_int, default=5)
    p.add_argument("--sizes", type=_positive_int, nargs="+", help="VecEnv sizes (default 64 1024 4096 on CPU; 4096 65536 1048576 on CUDA)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="device of the batched VecEnv (default: cuda when present)")
    p.add_argument("--only", choices=["single", "vec"], help="run one part only")
    p.add_argument("--texts", type=_positive_int, default=512, help="generated descriptions for the encoder timing (at least 65,536 on CUDA, in batches of 4,096)")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("replay", help="what-if replay: baseline vs --set overrides and/or --versus policy, same seeds")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="a scenario file or a shipped scenario name")
    p.add_argument("--policy", default="list_price", help="heuristic, oracle, run folder or lookup table (.csv/.parquet/.json)")
    p.add_argument("--actions", help="play a recorded plan instead: a CSV with one row per week (see agents/recorded_plan.py)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="scenario override, e.g. ads.budget=*0.5, competitor.events.0.week=-3 (repeatable)")
    p.add_argument("--versus", help="A/B form: this policy acts in the override arm")
    p.add_argument("--rebuild-policy", action="store_true", help="build the policy again for the changed scenario (default: the baseline's policy acts unchanged)")
    p.add_argument("--episodes", type=_positive_int, default=20, help="paired episodes (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--product", default="0", help="which product of the scenario to launch (index or name)")
    p.add_argument("--markets", nargs="+", choices=["structural", "learned"], default=["structural", "learned"])
    p.add_argument("--predictor", help="predictor or ensemble folder for the learned market (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--device", help="cpu or cuda for the predictor (default: cuda when present)")
    p.add_argument("--outcomes", choices=["sampled", "expected"], default="sampled", help="sampled or noise-free")
    p.add_argument("--out", required=True, help="folder for weekly.csv/.parquet, episodes.csv, summary.json, trajectories.png")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("sensitivity", help="which one-week price or ad-share change would pay: a plan's profit change per week and market")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="a scenario file or a shipped scenario name")
    p.add_argument("--policy", default="list_price", help="heuristic, oracle, run folder or lookup table whose plan is probed")
    p.add_argument("--actions", help="probe a recorded plan instead: a CSV with one row per week (see agents/recorded_plan.py)")
    p.add_argument("--lever", choices=["price", "ads"], default="price", help="move the price among pricing.levels, or the week's share of the ad budget left among ads.spend_levels")
    p.add_argument("--product", default="0", help="which product of the scenario (index or name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markets", nargs="+", choices=["structural", "learned"], default=["structural", "learned"], help="the plan is the policy's decisions in the first")
    p.add_argument("--predictor", help="predictor or ensemble folder for the learned market (default: the shipped ensemble, models/default_ensemble)")
    p.add_argument("--device", help="cpu or cuda for the predictor (default: cuda when present)")
    p.add_argument("--out", required=True, help="folder for sensitivity.csv, plan.csv and sensitivity.png")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("export-table", help="write a policy's decisions on a state grid as a lookup table (CSV/Parquet/JSON)")
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="a scenario file or a shipped scenario name")
    p.add_argument("--policy", default="list_price", help="heuristic, oracle, run folder or lookup table")
    p.add_argument("--actions", help="export a recorded plan (CSV, one row per week) instead")
    p.add_argument("--product", default="0", help="which product of the scenario (index or name)")
    p.add_argument("--out", required=True, help="the table file: .csv (with a .meta.json sidecar), .parquet or .json")
    p.add_argument("--bins", action="append", default=[], metavar="AXIS=E0,E1,...", help="bin edges (shares) for adoption, stock or budget_left, e.g. stock=0,0.1,0.5,1")
    p.add_argument("--fidelity-episodes", type=int, default=20, help="ground-truth episodes comparing table and source (0: skip)")
    p.add_argument("--context-episodes", type=int, default=8, help="source episodes whose visited states fill the off-grid observation fields")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_export_table)

    p = sub.add_parser("sweep", help="train and evaluate a grid of scenarios x algorithms x seeds on Ray (local or a cluster)")
    p.add_argument("--config", required=True, help="a sweep YAML file (example: agents/sweeps/example.yaml)")
    p.add_argument("--address", help="join this Ray cluster (ray://HOST:10001, or HOST:6379 on a cluster node); default: start Ray here")
    p.add_argument("--max-concurrent", type=_positive_int, help="at most this many trials at once (default: as resources allow)")
    p.add_argument("--out", help="the sweep folder (default: runs/sweeps/NAME); re-running skips completed trials")
    p.set_defaults(func=cmd_sweep)
    return parser


def _number_from(low: float, high: float) -> Any:
    """An argparse type: a float from ``low`` to ``high`` (nan is rejected too)."""

    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also rejects nan
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, found {text}")
        return value

    parse.__name__ = "number"  # argparse names it in "invalid number value: 'abc'"
    return parse


_spread = _number_from(0.0, 2.0)  # a demand spread (sigma of a log-normal multiplier)
_share = _number_from(0.0, 1.0)  # a chance


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LaunchSimError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
