"""FID statistics of one folder: inception_jax.fid beside pytorch-fid, in images/s, same machine.

    python -m experiments.fid_throughput --folder=DIR --weights=FILE.pth [--batch_size=50]
        [--which=both|ours|pytorch_fid]

Each side runs in its own process, twice over the folder: the first pass includes building the
network (and, for us, compiling it), the second is the steady state. Reading and decoding the
images is included on both sides (pytorch-fid: its own ImagePathDataset with num_workers=0; ours:
PIL + the host resize). pytorch-fid's `fid_inception_v3` is patched to load FILE (a state dict of
its FID network) instead of downloading. Prints one JSON line per side.
"""

import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("folder", None, "Folder of images (all one size: pytorch-fid batches them).")
flags.DEFINE_string("weights", None, "State dict of pytorch-fid's FID network (.pth).")
flags.DEFINE_integer("batch_size", 50, "Batch size of both (pytorch-fid's default is 50).")
flags.DEFINE_enum("which", "both", ["both", "ours", "pytorch_fid"], "Which side(s) to run.")
flags.DEFINE_bool("child", False, "Internal: run one side in this process.")
FLAGS = flags.FLAGS


def _ours(folder, weights, batch_size):
  from inception_jax import fid

  times = []
  for _ in range(2):
    t0 = time.perf_counter()
    model, variables = fid.from_pytorch_fid(weights)
    ex = fid.FeatureExtractor(model, variables, batch_size=batch_size, resize="none")
    out, info = fid.folder_features(folder, ex)
    fid.statistics(out["pool3"])
    times.append(time.perf_counter() - t0)
  return info["n"], times


def _pytorch_fid(folder, weights, batch_size):
  import torch
  from pytorch_fid import fid_score, inception

  sd = torch.load(weights, weights_only=True)

  def fid_inception_v3():
    net = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = inception.FIDInceptionE_1(1280)
    net.Mixed_7c = inception.FIDInceptionE_2(2048)
    net.load_state_dict(sd)
    return net

  inception.fid_inception_v3 = fid_inception_v3
  fid_score.tqdm = lambda x: x
  times = []
  for _ in range(2):
    t0 = time.perf_counter()
    model = inception.InceptionV3([3]).to("cpu")
    files = sorted(
      f for ext in fid_score.IMAGE_EXTENSIONS for f in pathlib.Path(folder).glob(f"*.{ext}")
    )
    fid_score.calculate_activation_statistics(files, model, batch_size, 2048, "cpu", 0)
    times.append(time.perf_counter() - t0)
  return len(files), times


def main(argv):
  del argv
  if FLAGS.child:
    fn = _ours if FLAGS.which == "ours" else _pytorch_fid
    n, times = fn(FLAGS.folder, FLAGS.weights, FLAGS.batch_size)
    print(
      json.dumps(
        {
          "side": FLAGS.which,
          "images": n,
          "batch_size": FLAGS.batch_size,
          "first_pass_seconds": round(times[0], 2),
          "second_pass_seconds": round(times[1], 2),
          "first_pass_images_per_sec": round(n / times[0], 2),
          "steady_images_per_sec": round(n / times[1], 2),
        }
      ),
      flush=True,
    )
    return
  sides = ["ours", "pytorch_fid"] if FLAGS.which == "both" else [FLAGS.which]
  for side in sides:
    subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.fid_throughput",
        "--child",
        f"--which={side}",
        f"--folder={FLAGS.folder}",
        f"--weights={FLAGS.weights}",
        f"--batch_size={FLAGS.batch_size}",
      ],
      check=True,
    )


if __name__ == "__main__":
  flags.mark_flags_as_required(["folder", "weights"])
  app.run(main)
