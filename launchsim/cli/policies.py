"""Commands on policies: ``train``, ``evaluate``, ``replay``, ``sensitivity``, ``export-table``, ``sweep``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from launchsim.cli import render
from launchsim.cli.options import command_adder, count, output_file, output_folder, positive_int, spread
from launchsim.errors import PredictorError
from launchsim.files import write_json


def register(sub: Any, shared: dict[str, argparse.ArgumentParser]) -> None:
    add = command_adder(sub)
    p = add("train", "train an SB3 agent in the learned (or structural) market and judge it in the ground truth", [shared["seed"], shared["predictor"], shared["device"]])
    p.add_argument("--scenario", nargs="+", default=[shared["scenario"].get_default("scenario")], help="one or more scenario files or names (several: one policy for all)")
    p.add_argument("--algo", default="ppo", help="ppo, a2c, dqn, sac, td3 or maskable_ppo")
    p.add_argument("--steps", type=positive_int, help="environment steps (default: the algorithm's n_timesteps in agents/sb3/hyperparams.yaml)")
    p.add_argument("--market", choices=["learned", "structural"], default="learned", help="the market trained in")
    p.add_argument("--n-envs", type=positive_int, default=8, help="markets stepped together")
    p.add_argument("--vec-kind", choices=["batched", "dummy"], help="VecEnv kind (default: batched on a GPU or from 64 envs, else SB3's DummyVecEnv)")
    p.add_argument("--rollouts", choices=["device", "vecenv"], default="device", help="device: PPO, A2C and MaskablePPO on the batched env collect rollouts on its device, with no VecEnv round trip per step (the same numbers on a CPU); vecenv: SB3's VecEnv path")
    p.add_argument("--demand-spread", type=spread, metavar="SIGMA", help="each training episode's demand times exp(N(0, SIGMA^2)) (default: the predictor's demand-level error from its card, 0.34 for the shipped market, in the learned market; 0 in the structural; 0 turns it off)")
    p.add_argument("--outcomes", choices=["sampled", "expected"], help="the training market's weekly outcomes (default: expected); evaluation always samples")
    p.add_argument("--out", type=output_folder, help="the run folder (default: runs/ALGO_SCENARIO_seedK)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from its last checkpoint (its own settings apply)")
    p.add_argument("--hyperparams", metavar="FILE.yaml", help="hyperparameters keyed by algorithm, over the shipped ones")
    p.add_argument("--checkpoint-every", type=positive_int, help="steps between checkpoints (default: a tenth of the run)")
    p.add_argument("--eval-episodes", type=positive_int, default=20, help="episodes per market of the final evaluation")
    p.add_argument("--evaluation", choices=["full", "quick"], default="full", help="full: ground truth, learned market, oracle and heuristics; quick: the training market only")
    p.set_defaults(func=cmd_train)

    p = add("evaluate", "judge a policy in the ground truth next to the oracle and the heuristics, and in the learned market", [shared[k] for k in ("scenario", "product", "seed", "predictor", "device", "overrides")])
    p.add_argument("--policy", required=True, help="a heuristic, oracle, a run folder, an SB3 model .zip or a lookup table (.csv/.parquet/.json)")
    p.add_argument("--episodes", type=positive_int, default=20, help="episodes per policy and market (seeds seed, seed+1, ...)")
    p.add_argument("--json", required=True, type=output_file, help="the evaluation file to write")
    p.add_argument("--no-learned", action="store_true", help="skip the learned market (no sim-to-real gap)")
    p.add_argument("--learned-oracle", action="store_true", help="also plan on the learned market when the scenario has a truth block (always done without one; about a minute per product on 2 CPU cores)")
    p.add_argument("--report", type=output_folder, metavar="DIR", help="also write report.html (self-contained), report.md and trajectories.png into this folder")
    p.set_defaults(func=cmd_evaluate)

    p = add("replay", "what-if replay: the baseline against --set overrides and/or a --versus policy, on the same seeds", [shared[k] for k in ("scenario", "product", "policy", "seed", "markets", "predictor", "device", "outcomes", "overrides")])
    p.add_argument("--versus", help="A/B form: this policy acts in the override arm")
    p.add_argument("--rebuild-policy", action="store_true", help="build the policy again for the changed scenario (default: the baseline's policy acts unchanged)")
    p.add_argument("--episodes", type=positive_int, default=20, help="paired episodes (seeds seed, seed+1, ...)")
    p.add_argument("--out", type=output_folder, required=True, help="the folder for weekly.csv/.parquet, episodes.csv, summary.json and trajectories.png")
    p.set_defaults(func=cmd_replay)

    p = add("sensitivity", "which one-week price or ad-share change would pay: a plan's profit change per week and market", [shared[k] for k in ("scenario", "product", "policy", "seed", "markets", "predictor", "device")])
    p.add_argument("--lever", choices=["price", "ads"], default="price", help="move the price among pricing.levels, or the week's share of the ad budget left among ads.spend_levels")
    p.add_argument("--out", type=output_folder, required=True, help="the folder for sensitivity.csv, plan.csv and sensitivity.png")
    p.set_defaults(func=cmd_sensitivity)

    p = add("export-table", "write a policy's decisions on a grid of states as a lookup table (CSV/Parquet/JSON)", [shared[k] for k in ("scenario", "product", "policy", "seed", "predictor", "device")])
    p.add_argument("--out", required=True, type=output_file, help="the table file: .csv (with a .meta.json sidecar), .parquet or .json")
    p.add_argument("--bins", action="append", default=[], metavar="AXIS=E0,E1,...", help="bin edges (shares) for adoption, stock or budget_left, e.g. stock=0,0.1,0.5,1")
    p.add_argument("--fidelity-episodes", type=count, default=20, help="episodes comparing the table with its source (0: skip), in the ground truth, or in the learned market with --predictor or without a truth block")
    p.add_argument("--context-episodes", type=positive_int, default=8, help="source episodes whose visited states fill the observation fields off the grid")
    p.set_defaults(func=cmd_export_table)

    p = add("sweep", "train and evaluate scenarios x algorithms x seeds on Ray (here or on a cluster)", [])
    p.add_argument("--config", required=True, help="a sweep YAML file, or a shipped one: all_scenarios, example, scaling")
    p.add_argument("--address", help="join this Ray cluster (ray://HOST:10001, or HOST:6379 on a cluster node); default: start Ray here")
    p.add_argument("--max-concurrent", type=positive_int, help="at most this many trials at once (default: as resources allow)")
    p.add_argument("--out", type=output_folder, help="the sweep folder (default: runs/sweeps/NAME); re-running skips completed trials")
    p.set_defaults(func=cmd_sweep)


def cmd_train(args: argparse.Namespace) -> int:
    from launchsim.agents.run_folder import DEFAULT_TRAINING_OUTCOMES, TrainConfig, default_run_dir, hyperparams_from_file
    from launchsim.agents.training.runs import resume, train

    out = args.resume or args.out or default_run_dir(args.scenario, args.algo, args.seed)
    try:
        if args.resume:
            run_dir = resume(args.resume)
        else:
            config = TrainConfig(
                scenarios=args.scenario, algo=args.algo, steps=args.steps, market=args.market, predictor=args.predictor,
                n_envs=args.n_envs, seed=args.seed, demand_spread=args.demand_spread,
                outcomes=args.outcomes or DEFAULT_TRAINING_OUTCOMES, out=out, checkpoint_every=args.checkpoint_every,
                hyperparams=hyperparams_from_file(args.hyperparams, args.algo) if args.hyperparams else None,
                eval_episodes=args.eval_episodes, evaluation=args.evaluation, device=args.device, vec_kind=args.vec_kind,
                rollouts=args.rollouts,
            )  # fmt: skip
            run_dir = train(config)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {Path(sys.argv[0]).name} train --resume {out}", file=sys.stderr)
        return 130
    print("\n".join(render.training_lines(json.loads((Path(run_dir) / "evaluation.json").read_text()))))
    print(f"run folder: {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
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
        learned_oracle=True if args.learned_oracle else None,
    )  # fmt: skip
    write_json(args.json, result)
    console = render.console()
    console.print(render.evaluation_table(result, report_rows(result), args.episodes, args.seed))
    console.print(render.evaluation_line(result))
    console.print(f"written to {args.json}")
    if args.report:
        from launchsim.agents.run_folder import command_line

        paths = write_report(result, args.report, command=command_line())
        console.print(f"report: {paths['html']} (with {paths['markdown'].name} and {paths['png'].name})")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from launchsim.agents.evaluation.replay import replay, write_replay
    from launchsim.scenarios import load_scenario
    from launchsim.scenarios.overrides import apply_overrides

    scenario = load_scenario(args.scenario)
    apply_overrides(scenario, args.set)  # fail fast on a bad --set, before loading a predictor
    predictor = _markets_predictor(args, scenario)
    result = replay(
        scenario, args.policy, overrides=args.set, versus=args.versus, episodes=args.episodes, seed=args.seed,
        product=args.product, markets=args.markets, predictor=predictor, actions=args.actions,
        rebuild_policy=args.rebuild_policy, outcomes=args.outcomes, progress=sys.stderr.isatty(),
    )  # fmt: skip
    from launchsim.agents.run_folder import command_line

    paths = write_replay(result, args.out, command=command_line())
    console = render.console()
    console.print(render.replay_table(result.summary))
    console.print(f"written to {paths['weekly_csv']}, {paths['weekly_parquet'].name}, {paths['summary'].name}, {paths['plot'].name}, {paths['html'].name}")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from launchsim.agents.evaluation.sensitivity import LEVER_LABELS, plan_sensitivity, sensitivity_table, write_sensitivity
    from launchsim.agents.policies.source import build_policy
    from launchsim.scenarios import load_scenario, product_index

    scenario = load_scenario(args.scenario)
    index = product_index(scenario, args.product)
    predictor = _markets_predictor(args, scenario)
    policy = build_policy(args.policy, scenario, index, seed=args.seed, predictor=predictor, actions=args.actions)
    plan, rows = plan_sensitivity(scenario, policy, index, lever=args.lever, markets=args.markets, predictor=predictor, seed=args.seed)
    paths = write_sensitivity(plan, rows, args.out)
    spec = f"actions:{args.actions}" if args.actions else args.policy
    title = f"{scenario.name} · {spec} · change in episode profit from one week's {LEVER_LABELS[args.lever]} one level down / up (expected outcomes)"
    console = render.console()
    console.print(render.sensitivity_table(sensitivity_table(rows), title))
    console.print(f"written to {paths['rows']}, {paths['plan'].name}, {paths['plot'].name}")
    return 0


def _markets_predictor(args: argparse.Namespace, scenario: Any) -> Any:
    """The learned market's predictor when the markets played include it, else None (and ``--predictor`` is an
    error); ``args.markets`` becomes the markets played, and a market left out is said in one line."""
    from launchsim.agents.evaluation.replay import playable_markets

    args.markets, skipped = playable_markets(scenario, args.markets)
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
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
    market = None
    if args.predictor or scenario.truth is None:
        from launchsim.models.learned_market import load_predictor

        if scenario.truth is None:
            print(f"skipped: structural market: {scenario.source} has no truth block; the table is measured in the learned market", file=sys.stderr)
        market = load_predictor(args.predictor, device=args.device)
    policy = build_policy(args.policy, scenario, index, seed=args.seed, predictor=market, actions=args.actions)
    path = export_table(
        policy, scenario, index, grid=TableGrid.parse(args.bins), out=args.out,
        policy_spec=args.policy if args.actions is None else f"actions:{args.actions}", seed=args.seed,
        context_episodes=args.context_episodes, fidelity_episodes=args.fidelity_episodes, response_model=market,
    )  # fmt: skip
    _, meta = read_table(path)
    print(f"{meta['rows']:,} rows written to {path}")
    if meta.get("fidelity"):
        print(render.fidelity_line(meta["fidelity"]))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from launchsim.agents.sweep.config import load_sweep
    from launchsim.agents.sweep.run import require_ray, run_sweep

    config, path = load_sweep(args.config)
    require_ray()
    out = Path(args.out) if args.out else Path("runs/sweeps") / config.name
    result = run_sweep(config, out, address=args.address, max_concurrent=args.max_concurrent, base_dir=path.parent)
    print("\n".join(render.sweep_lines(result)))
    return 1 if result.failed else 0
