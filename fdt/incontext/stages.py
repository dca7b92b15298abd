"""The in-context stages as plain functions (the workflow's scripts call them; tests too).

Each checks its inputs before any work, writes its outputs atomically, and leaves
resumable state (per-task history files, the training checkpoint) outside its declared outputs,
so a killed job's rerun continues instead of starting over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fdt.incontext.environments import InContextInputError, TaskSplit, load_split
from fdt.incontext.evaluation import EvalParams, evaluate
from fdt.incontext.histories import generate, import_local, read_history
from fdt.incontext.learner import PPOParams
from fdt.incontext.lm import FrozenLM
from fdt.incontext.model import ModelParams
from fdt.incontext.report import LABELS, curves, plot, table
from fdt.incontext.sequences import Embedder, Memory, build_memory, build_stream
from fdt.incontext.training import TrainParams, load_model, model_params, train
from fdt.io import atomic_path, read_json, write_json
from fdt.retrieval.retrieve import RetrievalParams
from fdt.settings import params_from


def task_range(count: int | None, available: int, what: str, where: str) -> list[int]:
    if count is None:
        return list(range(available))
    if count > available:
        raise InContextInputError(f"{where}: incontext.{what} is {count}, but the task list has "
                                  f"{available}")
    return list(range(count))


def split_for(c: Mapping[str, Any], env: str) -> TaskSplit:
    return load_split(env, c["goals"] or None)


def run_histories(c: Mapping[str, Any], env: str, manifest: str | Path,
                  progress: Any = None) -> dict[str, Any]:
    split = split_for(c, env)
    tasks = task_range(c["train_tasks"], len(split.train), "train_tasks", split.source)
    task_range(c["eval_tasks"], len(split.evaluation), "eval_tasks", split.source)
    folder = Path(manifest).parent
    if c["source"] == "generated":
        paths = generate(split, tasks, c["steps_per_task"], params_from(PPOParams, c["ppo"]),
                         c["generation_seed"], folder, progress)
    else:
        if not c["local_path"]:
            raise InContextInputError("incontext.local_path: source local needs the folder "
                                      "holding the anchor's dataset files")
        paths = import_local(split, tasks, c["local_path"], folder)
    returns = []
    for index, path in zip(tasks, paths):
        frame = read_history(path, split.size)
        per_episode = frame.groupby("episode")["reward"].sum().to_numpy()
        returns.append({"task": index, "goal": list(split.train[index].goal),
                        "file": path.name, "steps": len(frame),
                        "first_return": float(per_episode[0]),
                        "last_return": float(per_episode[-1])})
    info = {"env": env, "split": split.source, "size": split.size, "tasks": returns}
    write_json(manifest, info)
    return info


def _stream(manifest: str | Path, size: int):  # type: ignore[no-untyped-def]
    info = read_json(manifest)
    if info["size"] != size:
        raise InContextInputError(f"{manifest}: histories of a {info['size']}x{info['size']} "
                                  f"grid, the environment is {size}x{size}")
    folder = Path(manifest).parent
    return build_stream([read_history(folder / t["file"], size) for t in info["tasks"]])


def retrieval_params(c: Mapping[str, Any]) -> RetrievalParams:
    m = c["memory"]
    return RetrievalParams(top_k=m["top_k"], reweight_top_k=m["reweight_top_k"],
                           sim_cutoff=m["sim_cutoff"], eval_top_k=m["top_k"],
                           return_weight=0.0, eval_return_weight=1.0, eval_sim_cutoff=None)


def embedder(c: Mapping[str, Any], method: str, size: int,
             dt_model: str | Path | None) -> Embedder | None:
    """RA-DT's embedder: the pretrained DT (radt) or the frozen LM (radt_lm)."""
    if method == "radt_lm":
        return FrozenLM(c["lm_path"], size)
    if method == "radt":
        if dt_model is None:
            raise ValueError("radt needs the trained DT as its embedder")
        dt = load_model(dt_model, "auto")
        return lambda batch: dt.embed(batch).numpy()
    return None


def base_params(c: Mapping[str, Any], split: TaskSplit) -> ModelParams:
    return params_from(ModelParams, c["model"], size=split.size,
                       max_episode_steps=split.max_episode_steps)


def run_train(c: Mapping[str, Any], env: str, method: str, seed: int, manifest: str | Path,
              out_dir: str | Path, dt_model: str | Path | None = None,
              tracker: Any = None) -> dict[str, Any]:
    split = split_for(c, env)
    embed = embedder(c, method, split.size, dt_model)  # refuses a missing LM before any work
    stream = _stream(manifest, split.size)
    mp = model_params(method, base_params(c, split))
    memory: Memory | None = None
    if embed is not None:
        m = c["memory"]
        memory = build_memory(stream, embed, m["length"], m["stride"], retrieval_params(c))
        mp = replace(mp, context=m["length"])
    params = params_from(TrainParams, c["train"], method=method, seed=seed)
    log = None
    if tracker is not None:
        tracker.start()
        tracker.log_params({"method": method, "env": env, **c["train"]})
        log = lambda step, metrics: tracker.log_metrics(metrics, step)  # noqa: E731
    metrics = train(stream, mp, params, out_dir, memory, log)
    if memory is not None:
        metrics["memory_items"] = int(len(memory.starts))
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def run_evaluate(c: Mapping[str, Any], env: str, method: str, seed: int, model_path: str | Path,
                 manifest: str | Path, out_episodes: str | Path, out_summary: str | Path,
                 dt_model: str | Path | None = None) -> dict[str, Any]:
    split = split_for(c, env)
    tasks = task_range(c["eval_tasks"], len(split.evaluation), "eval_tasks", split.source)
    embed = embedder(c, method, split.size, dt_model)
    model = load_model(model_path, "auto")
    key_width = None
    if embed is not None:  # the key width: one blank window through the embedder
        length = c["memory"]["length"]
        blank = {k: torch.zeros(1, length, dtype=torch.long) for k in ("row", "col", "t",
                                                                        "prev_action")}
        blank.update(prev_reward=torch.zeros(1, length), rtg=torch.zeros(1, length),
                     mask=torch.ones(1, length, dtype=torch.bool))
        key_width = int(embed(blank).shape[1])
    params = params_from(EvalParams, c["evaluation"], seed=seed)
    frame, timing = evaluate(model, method, split, tasks, params, embed,
                             c["memory"]["length"], retrieval_params(c), key_width)
    frame.insert(0, "method", method)
    frame.insert(0, "env", env)
    frame["seed"] = seed
    frame["goal"] = frame["goal"].map(lambda g: f"[{g[0]},{g[1]}]")
    with atomic_path(out_episodes) as tmp:
        frame.to_parquet(tmp, index=False)
    per_episode = frame.groupby("episode")["return"].mean()
    summary = {"first_episode": float(per_episode.iloc[0]),
               "last_episode": float(per_episode.iloc[-1]), **timing}
    write_json(out_summary, summary)
    return summary


def run_report(episodes: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    out = Path(out_dir)
    frame = pd.concat([pd.read_parquet(p) for p in episodes], ignore_index=True)
    curve = curves(frame)
    tab = table(curve)
    with atomic_path(out / "curves.csv") as tmp:
        curve.to_csv(tmp, index=False)
    with atomic_path(out / "table.csv") as tmp:
        tab.to_csv(tmp, index=False)
    plot(curve, out / "returns_per_episode.png")
    last = int(curve["episode"].max())
    best = curve[curve["episode"] == last].sort_values("mean", ascending=False)
    order = ", ".join(f"{LABELS.get(r.method, r.method)} {r.mean:.1f}" for r in best.itertuples())
    section = {
        "title": "In-context RL on grid-worlds: RA-DT, AD and DT on unseen goals",
        "summary": (f"Mean return per in-context episode on unseen goals ({frame['goal'].nunique()}"
                    f" goals x {frame['seed'].nunique()} seeds), 95% bootstrap intervals. At "
                    f"episode {last}: {order}. The paper reports RA-DT above AD and DT."),
        "tables": [{"title": "Return at in-context episodes 1, 10 and 40", "csv": "table.csv"},
                   {"title": "Return per episode", "csv": "curves.csv"}],
        "figures": [{"title": "Return vs in-context episode", "png": "returns_per_episode.png",
                     "caption": "Each method in each unseen goal for consecutive episodes, its "
                                "context (AD) or evaluation memory (RA-DT) carried across them; "
                                "mean over goals and seeds, shaded 95% bootstrap interval."}],
    }
    write_json(out / "section.json", section)
    return section


def first_last(frame: pd.DataFrame) -> tuple[float, float]:
    means = frame.groupby("episode")["return"].mean().to_numpy()
    return float(means[0]), float(np.asarray(means)[-1])
