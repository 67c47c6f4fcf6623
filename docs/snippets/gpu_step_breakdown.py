"""Where a CUDA-graphed step of the batched learned market spends its time (run on a GPU machine).

Each part of ``step_wait`` is timed alone with the device synchronised around it: the actions' copy
to the device, the graph replay, the observation's and the rewards' copies back, the infos list;
then the graph replayed back to back, and the observation's copy into pinned memory for comparison.
The predictor is fine-tuned in a few seconds from a 2-layer BERT built here with the default
predictor's head sizes (hidden 256, latent 12): a step's cost does not depend on the encoder.

    PYTHONPATH=. python docs/snippets/gpu_step_breakdown.py   # writes $OUT/probe_d.json (or /tmp/out)
"""
import json
import os
import statistics
import time

import numpy as np
import torch

from envs.batched_market import BatchedMarketVecEnv
from models.log_generator import generate_logs
from scenarios import DEFAULT_SCENARIO, load_scenario

DEV = "cuda"
scenario = load_scenario(DEFAULT_SCENARIO)


def tiny_predictor():
    """Fine-tuned in seconds from a 2-layer BERT, with the default predictor's head sizes."""
    import tempfile
    from pathlib import Path

    from models.finetune import FinetuneConfig, finetune
    from tests.conftest import build_tiny_bert

    logs = generate_logs(n_train=24, n_heldout=6, n_paraphrase=6, seed=3, progress=False)
    texts = [str(t) for col in ("description", "creative_text", "partner_text") for t in logs[col]]
    folder = build_tiny_bert(Path(tempfile.mkdtemp()), texts)
    cfg = FinetuneConfig(encoder=str(folder), mode="lora", lora_rank=2, head_epochs=3, encoder_epochs=1, polish_epochs=1, device=DEV)
    return finetune(logs[logs["split"] == "train"], cfg)


pred = tiny_predictor()
OUT = os.environ.get("OUT", "/tmp/out")
res = {}

for n in (65536, 262144):
    venv = BatchedMarketVecEnv([(scenario, 0)] * n, market="learned", predictor=pred, device="cuda", head_dtype=torch.bfloat16)
    venv.seed(0); venv.reset()
    rng = np.random.default_rng(0)
    acts = [rng.integers(0, venv.action_space.nvec, size=(n, 5)) for _ in range(8)]
    for a in acts[:3]:
        venv.step(a)
    seg = {k: [] for k in ("actions_h2d", "replay", "unconverged", "obs_d2h", "reward_done_d2h", "infos", "whole_step")}
    x = venv.x
    for i in range(30):
        a = acts[i % 8]
        torch.cuda.synchronize(); t0 = time.perf_counter()
        venv._static_actions.copy_(torch.as_tensor(a, dtype=venv._static_actions.dtype)); torch.cuda.synchronize(); t1 = time.perf_counter()
        venv._graph.replay(); torch.cuda.synchronize(); t2 = time.perf_counter()
        out = venv._graph_out
        int(out[6]); t3 = time.perf_counter()
        obs = x.host(out[0]); t4 = time.perf_counter()
        r, d = x.host(out[1]), x.host(out[2]); t5 = time.perf_counter()
        infos = [None] * n; np.flatnonzero(d); t6 = time.perf_counter()
        for k, v in zip(seg, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            seg[k].append(v * 1e3)
        # episodes must not run past their end: step properly every other iteration
        torch.cuda.synchronize(); s0 = time.perf_counter(); venv.step(a); torch.cuda.synchronize(); seg["whole_step"].append((time.perf_counter() - s0) * 1e3)
    res[n] = {k: statistics.median(v) for k, v in seg.items()}
    # graph replay alone, many times back to back (the device time of a step)
    g = venv._graph
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(50):
        g.replay()
    torch.cuda.synchronize(); res[n]["replay_x50_ms_each"] = (time.perf_counter() - t) / 50 * 1e3
    # pinned vs pageable D2H of the observation
    pinned = torch.empty(out[0].shape, dtype=out[0].dtype, pin_memory=True)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20):
        pinned.copy_(out[0]); torch.cuda.synchronize()
    res[n]["obs_d2h_pinned_ms"] = (time.perf_counter() - t) / 20 * 1e3
    print(n, json.dumps(res[n]), flush=True)
    del venv
os.makedirs(OUT, exist_ok=True)
with open(f"{OUT}/probe_d.json", "w") as fh:
    json.dump(res, fh, indent=1)
