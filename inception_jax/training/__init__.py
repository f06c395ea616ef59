"""Training: `loop.train_and_evaluate(config, workdir)` and its pieces.

| module | what |
|---|---|
| `recipe` | a training config checked before anything is compiled; values derived from it |
| `state` | the train state, the model a config describes, checkpoint metadata |
| `step` | loss and gradients, the data-parallel train step, `compile_step` (every jit of a model) |
| `metrics` | metrics.jsonl, TensorBoard events, the console line, the non-finite loss check |
| `loop` | `train_and_evaluate`: resume, initial weights, the loop |
| `checkpoint` | Orbax checkpoints: saves, resumption, `tree_differences`, converted weights |
| `optim`, `losses` | the papers' optimizers, schedules, parameter averages, losses |
| `transfer` | fine-tuning: initial weights from a checkpoint, frozen layers, features |
| `parallel` | the device mesh, sharding, multi-host setup |
"""
