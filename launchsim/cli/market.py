"""Commands on scenarios and the market: ``validate``, ``simulate``, ``bench``."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from launchsim.cli import render
from launchsim.cli.options import EXIT_USER_ERROR, command_adder, device, output_file, positive_int
from launchsim.errors import LaunchSimError, PredictorError
from launchsim.files import atomic_write, write_json


def register(sub: Any, shared: dict[str, argparse.ArgumentParser]) -> None:
    add = command_adder(sub)
    p = add("validate", "check scenario files; exit 2 if any is invalid", [])
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)

    p = add("simulate", "play a policy in a market and print the weekly table", [shared[k] for k in ("scenario", "product", "policy", "seed", "outcomes", "predictor", "device")])
    p.add_argument("--episodes", type=positive_int, default=1, help="episodes to average (seeds seed, seed+1, ...)")
    p.add_argument("--market", choices=["structural", "learned"], help="the ground truth or the learned market (default: structural; learned for a scenario without a truth block)")
    p.add_argument("--csv", type=output_file, help="also write the weekly table of the first episode to this CSV file")
    p.set_defaults(func=cmd_simulate)

    p = add("bench", "steps/s: single envs vs CartPole, DummyVecEnv vs the batched VecEnv, PPO, the encoder", [])
    p.add_argument("--steps", type=positive_int, default=50_000, help="steps per single-env timing")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs per figure (the median is reported)")
    p.add_argument("--sizes", type=positive_int, nargs="+", help="VecEnv sizes (default 64 1024 4096 on a CPU; 4096 65536 1048576 on CUDA)")
    p.add_argument("--device", type=device, help="device of the batched VecEnv: cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--only", choices=["single", "vec", "training"], help="run one part only (training: PPO on the device path against the VecEnv path; not in the default run)")
    p.add_argument("--texts", type=positive_int, default=512, help="generated descriptions for the encoder timing")
    p.add_argument("--json", type=output_file, help="write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)


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
    from launchsim.agents.evaluation.simulate import simulate
    from launchsim.scenarios import load_scenario

    scenario = load_scenario(args.scenario)
    market = None
    if args.market is None:
        args.market = "structural" if scenario.truth is not None else "learned"
        if scenario.truth is None:
            print(f"skipped: structural market: {scenario.source} has no truth block; playing the learned market", file=sys.stderr)
    if args.market == "learned":
        from launchsim.models.learned_market import load_predictor

        market = load_predictor(args.predictor, device=args.device)
    elif args.predictor:
        raise PredictorError("--predictor needs --market learned")
    weekly, summary = simulate(
        scenario, args.policy, product=args.product, seed=args.seed, episodes=args.episodes, outcomes=args.outcomes,
        response_model=market, actions=args.actions,
    )  # fmt: skip
    console = render.console()
    spec = f"plan {args.actions}" if args.actions else f"policy {args.policy}"
    console.print(render.weekly_table(weekly, f"{scenario.name} · {spec} · seed {args.seed} · {args.market} market"))
    console.print(f"total profit (episode 1): {weekly['profit'].sum():,.2f}")
    if args.episodes > 1:
        total = summary["profit"]
        console.print(f"mean profit over {args.episodes} episodes: {total.mean():,.2f} (sd {total.std(ddof=1):,.2f})")
    if args.csv:
        atomic_write(args.csv, weekly.to_csv(index=False))
        console.print(f"weekly table written to {args.csv}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from launchsim.agents.training.benchmark import run_training_benchmarks
    from launchsim.envs.benchmark import run_benchmarks, run_vec_benchmarks

    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    result: dict = {}
    if args.only not in ("vec", "training"):
        result = run_benchmarks(n_steps=args.steps, repeats=args.repeats, progress=progress)
    on = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # --device is checked as it is parsed
    if args.only == "training":
        sizes = args.sizes or ([4096, 65536] if on.startswith("cuda") else [1024, 4096])
        result["training"] = run_training_benchmarks(sizes, device=on, repeats=min(args.repeats, 3), progress=progress)
    elif args.only != "single":
        sizes = args.sizes or ([4096, 65536, 1048576] if on.startswith("cuda") else [64, 1024, 4096])
        result["vec"] = run_vec_benchmarks(sizes, device=on, dummy_max=4096, repeats=min(args.repeats, 3), texts=args.texts, progress=progress)
    print("\n".join(render.bench_lines(result)))
    if args.json:
        write_json(args.json, result)
        print(f"written to {args.json}")
    return 0
