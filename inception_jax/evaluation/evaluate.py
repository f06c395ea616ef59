"""Multi-crop and ensemble evaluation (GoogLeNet, Section 7 and Table 3).

Softmax probabilities are averaged over the crops of each image and over the models of an
ensemble, then top-1 and top-5 are counted. Eval batches come from `data.create_eval_iterator`:
images [batch, crops, size, size, 3] with a mask marking padding examples.

`evaluate` serves both training (raw and averaged parameters, reported separately) and
`experiments/evaluate.py` (one checkpoint or an ensemble of workdirs, 1, 10 or 144 crops).
"""

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from inception_jax import conversion, data
from inception_jax.training import checkpoint, losses, parallel, recipe, transfer
from inception_jax.training import state as state_lib
from inception_jax.training.step import compile_step

Variables = Mapping[str, Any]


def crop_averaged_probabilities(
  model: nn.Module, variables: Variables, images: jax.Array
) -> jax.Array:
  """images [batch, crops, S, S, 3] -> softmax probabilities averaged over crops [batch, K].

  Crops go through the network one at a time (lax.map), so memory does not grow with 144 crops.
  """

  def probabilities(crop):  # [batch, S, S, 3]
    logits = model.apply(variables, crop, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  return jnp.mean(jax.lax.map(probabilities, jnp.swapaxes(images, 0, 1)), axis=0)


def metric_sums(probs: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Sums over the unmasked examples: loss (-log p[label]), top-1 and top-5 hits, count."""
  mask = mask.astype(jnp.float32)
  p_label = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
  return {
    "loss": jnp.sum(-jnp.log(jnp.maximum(p_label, 1e-12)) * mask),
    "top1": jnp.sum(losses.topk_correct(probs, labels, 1) * mask),
    "top5": jnp.sum(losses.topk_correct(probs, labels, 5) * mask),
    "count": jnp.sum(mask),
  }


class Evaluator:
  """Jitted crop-averaged prediction and metric sums over a mesh, compiled once per model."""

  def __init__(self, model: nn.Module, mesh: Mesh):
    self.mesh = mesh
    self._predict = compile_step(
      lambda v, x: crop_averaged_probabilities(model, v, x),
      model,
      out_shardings=parallel.batch_sharded(mesh),
    )
    self._sums = jax.jit(metric_sums, out_shardings=parallel.replicated(mesh))
    # Per-example outputs gathered onto every process (multi-host too).
    self._gather = jax.jit(lambda *x: x, out_shardings=parallel.replicated(mesh))

  def evaluate(
    self,
    members: Mapping[str, Sequence[Variables]],
    batches: Iterable[dict],
    num_steps: int = -1,
    keep_probabilities: bool = False,
  ) -> dict[str, dict[str, Any]]:
    """For each name, the probabilities of its models (one, or an ensemble) are averaged.

    Returns {name: {"loss", "top1", "top5", "count"}} with loss and accuracies per example, and
    with `keep_probabilities` also "probabilities" [count, K], "labels" [count] and "index"
    [count] (numpy, padding removed, in the split's order when the batches carry each example's
    `index`, as `data.create_eval_iterator`'s do, whatever the batch size and process count): the
    per-example predictions that paired tests and ensembles of separately evaluated models need.
    """
    totals = {name: {} for name in members}
    kept = {name: [] for name in members}
    pending = []

    def add(sums_by_name):
      for name, sums, outputs in sums_by_name:
        for k, v in parallel.fetch(sums).items():
          totals[name][k] = totals[name].get(k, 0.0) + float(v)
        if outputs is not None:
          probs, labels, mask, index = parallel.fetch(outputs)
          keep = np.asarray(mask, bool)
          kept[name].append(
            (np.asarray(probs, np.float32)[keep], np.asarray(labels)[keep], np.asarray(index)[keep])
          )

    start = time.time()
    for i, batch in enumerate(batches):
      if 0 <= num_steps <= i:
        break
      batch = parallel.shard_batch(batch, self.mesh)
      previous, pending = pending, []
      for name, variables_list in members.items():
        probs = sum(self._predict(v, batch["image"]) for v in variables_list)
        probs = probs / len(variables_list)
        sums = self._sums(probs, batch["label"], batch["mask"])
        outputs = None
        if keep_probabilities:
          index = batch.get("index")
          if index is None:  # batches without an index keep their order
            index = jnp.cumsum(jnp.ones_like(batch["label"])) + i * batch["label"].shape[0]
          outputs = self._gather(probs, batch["label"], batch["mask"], index)
        pending.append((name, sums, outputs))
      # The previous batch's sums are fetched once this batch is queued: the device never waits
      # for the host, and at most two batches are in flight.
      add(previous)
    add(pending)
    logging.info("evaluated %s in %.1fs", list(members), time.time() - start)
    results = {}
    for name, t in totals.items():
      count = max(t.get("count", 0.0), 1.0)
      results[name] = {
        "loss": t.get("loss", 0.0) / count,
        "top1": t.get("top1", 0.0) / count,
        "top5": t.get("top5", 0.0) / count,
        "count": t.get("count", 0.0),
      }
      if keep_probabilities:
        index = np.concatenate([x for _, _, x in kept[name]])
        order = np.argsort(index, kind="stable")
        results[name]["probabilities"] = np.concatenate([p for p, _, _ in kept[name]])[order]
        results[name]["labels"] = np.concatenate([y for _, y, _ in kept[name]])[order]
        results[name]["index"] = index[order]
    return results


def eval_batches(
  config, batch_size: int, crops: int, preprocess: Mapping[str, Any] | None = None
) -> Iterable[dict]:
  """The config's evaluation split, padded and masked so each example counts once, with the
  recipe's input convention (`preprocess` overrides single options of it)."""
  return data.create_eval_iterator(
    config.dataset,
    split=config.eval_split,
    data_dir=config.data_dir,
    global_batch_size=batch_size,
    image_size=config.image_size,
    crops=crops,
    preprocess={**recipe.preprocess_options(config), **(preprocess or {})},
    on_corrupt=config.get("on_corrupt", "fail"),
  )


def load_workdirs(
  config, workdirs: Sequence[str], mesh: Mesh, use_ema: bool = True
) -> tuple[nn.Module, list[Variables]]:
  """The config's model and the latest checkpoint's variables of each workdir. Converted weights
  (a directory written by `python -m inception_jax.conversion`) bring their own model, with the
  conventions recorded in their convert_meta.json."""
  info = data.get_info(config.dataset, config.data_dir)
  if all(checkpoint.read_init_meta(w) for w in workdirs):
    loaded = [conversion.load(w) for w in workdirs]
    if any(m != loaded[0][0] for m, _ in loaded):
      raise ValueError("an ensemble of converted checkpoints must share one architecture")
    if loaded[0][0].num_classes != info.num_classes:
      raise ValueError(
        f"{workdirs[0]} has {loaded[0][0].num_classes} classes, {config.dataset} "
        f"{info.num_classes}: labels would be misaligned (tf-slim's 1001 include "
        "the background class 0; convert with it dropped for imagenet2012)"
      )
    return loaded[0][0], [v for _, v in loaded]
  if any(checkpoint.read_init_meta(w) for w in workdirs):
    raise ValueError("evaluate converted weights and training workdirs separately")
  model = state_lib.create_model(config, info.num_classes)
  return model, [
    state_lib.load_eval_variables(config, w, model, mesh, info.num_classes, use_ema)
    for w in workdirs
  ]


def input_preprocess(workdirs: Sequence[str]) -> dict[str, Any]:
  """Preprocessing overrides that give converted weights their source's input convention."""
  sources = {
    transfer.input_convention(str(checkpoint.read_init_meta(w).get("source", ""))) for w in workdirs
  }
  if sources == {"torchvision"}:
    return {"mean": transfer.TORCHVISION_MEAN, "std": transfer.TORCHVISION_STD}
  return {}


def evaluate_workdirs(
  config,
  workdirs: Sequence[str],
  crops: int = 1,
  batch_size: int | None = None,
  use_ema: bool = True,
) -> dict[str, Any]:
  """Evaluates the latest checkpoint of each workdir, and their ensemble when there are several.

  Prints and returns top-1 / top-5 in the shape of GoogLeNet's Table 3.
  """
  mesh = parallel.make_mesh()
  batch_size = batch_size or config.eval_batch_size
  recipe.validate_config(config, mesh, eval_batch_size=batch_size)
  data.check_dataset(
    config.dataset,
    [config.eval_split],
    config.data_dir,
    allow_empty_classes=config.get("allow_empty_classes", False),
  )
  model, variables = load_workdirs(config, workdirs, mesh, use_ema)
  members = {f"model_{i}": [v] for i, v in enumerate(variables)}
  if len(variables) > 1:
    members["ensemble"] = variables
  batches = eval_batches(config, batch_size, crops, input_preprocess(workdirs))
  results = Evaluator(model, mesh).evaluate(members, batches)
  print(format_table(results, workdirs, crops, use_ema))
  return results


def format_table(
  results: Mapping[str, Mapping[str, float]], workdirs: Sequence[str], crops: int, use_ema: bool
) -> str:
  """Rows like GoogLeNet's Table 3: models, crops, top-1 and top-5 error."""
  params = "averaged" if use_ema else "raw"
  lines = [
    "| models | crops | params | top-1 acc | top-5 acc | top-5 error | examples |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, r in results.items():
    who = (
      f"{len(workdirs)} (ensemble)"
      if name == "ensemble"
      else f"1 ({workdirs[int(name.split('_')[1])]})"
    )
    lines.append(
      f"| {who} | {crops} | {params} | {100 * r['top1']:.2f}% | {100 * r['top5']:.2f}% "
      f"| {100 * (1 - r['top5']):.2f}% | {int(r['count'])} |"
    )
  return "\n".join(lines)
