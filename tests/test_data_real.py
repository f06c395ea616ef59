"""The pipelines on real images: CIFAR-10 JPEGs and full-size ImageNet photographs (../shared/data).

The tarballs are extracted once per session (a subset of CIFAR-10) into a temporary folder.
"""

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from inception_jax import data
from inception_jax.data import preprocessing, samples

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_TAR = SHARED / "cifar10-jpeg.tar.gz"
IMAGENET_TAR = SHARED / "imagenet-sample-500.tar"
CIFAR_PER_CLASS = 20


def _require(path: Path) -> None:
  if not path.exists():
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"shared test data missing: {path}")
    pytest.skip(f"shared test data missing: {path}")


@functools.cache
def _session_dir() -> Path:
  path = Path(tempfile.mkdtemp(prefix="inception_jax_data_"))
  import atexit

  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


@pytest.fixture(scope="session")
def cifar() -> str:
  _require(CIFAR_TAR)
  root = _session_dir() / "cifar10"
  if not root.exists():
    samples.extract_cifar10(CIFAR_TAR, root, per_class=CIFAR_PER_CLASS)
  return f"folder:{root}"


@pytest.fixture(scope="session")
def imagenet() -> str:
  _require(IMAGENET_TAR)
  root = _session_dir() / "imagenet"
  if not root.exists():
    samples.extract_imagenet_sample(IMAGENET_TAR, root, limit=48)
  return f"folder:{root}"


def test_cifar10_folder(cifar):
  info = data.get_info(cifar)
  assert info.class_names == (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
  )
  assert info.splits == {"test": 10 * CIFAR_PER_CLASS, "train": 10 * CIFAR_PER_CLASS}
  batch = next(data.create_train_iterator(cifar, global_batch_size=32, image_size=32))
  assert batch["image"].shape == (32, 32, 32, 3) and -1 <= batch["image"].min()
  assert len(set(batch["label"].tolist())) > 3
  ev = data.create_eval_iterator(
    cifar,
    split="test",
    global_batch_size=64,
    image_size=32,
    crops=10,
    process_index=1,
    process_count=2,
  )
  batches = list(ev)
  assert sum(int(b["mask"].sum()) for b in batches) == 5 * CIFAR_PER_CLASS  # host 1's half
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, np.repeat(np.arange(5, 10), CIFAR_PER_CLASS))


def test_imagenet_photographs_crop_statistics(imagenet):
  """Crop windows drawn on the real photographs' shapes stay in range; decoding the window works."""
  root = Path(imagenet[len("folder:") :])
  files = sorted(root.glob("train/*/*"))
  config = preprocessing.make_config({"distort_on": "host"})
  areas, aspects = [], []
  for i, f in enumerate(files[:16]):
    encoded = tf.constant(f.read_bytes())
    h, w, _ = tf.io.extract_jpeg_shape(encoded).numpy()
    for seed in range(25):
      y, x, ch, cw = (
        int(v) for v in preprocessing.random_crop_window(h, w, tf.constant([i, seed]), config)
      )
      assert 0 <= y and y + ch <= h and 0 <= x and x + cw <= w
      areas.append(ch * cw / (h * w))
      aspects.append(cw / ch)
    out = preprocessing.train_image(encoded, tf.constant([i, 0]), 224, config).numpy()
    assert out.shape == (224, 224, 3) and -1 <= out.min() and out.max() <= 1
    assert out.std() > 0.05  # a photograph, not a blank
  areas, aspects = np.array(areas), np.array(aspects)
  assert 0.08 - 0.01 <= areas.min() and areas.max() <= 1
  assert 0.75 * 0.98 <= aspects.min() and aspects.max() <= 4 / 3 * 1.02
  assert 0.3 < areas.mean() < 0.8


def test_imagenet_labels_are_sorted_wordnet_ids(imagenet):
  info = data.get_info(imagenet)
  assert list(info.class_names) == sorted(info.class_names)
  assert all(n.startswith("n") and len(n) == 9 for n in info.class_names)
  assert info.splits == {"train": 48}


def test_imagenet_train_and_144_crop_eval(imagenet):
  it = data.create_train_iterator(imagenet, global_batch_size=8, image_size=224, seed=0)
  batch = next(it)
  assert batch["image"].shape == (8, 224, 224, 3)
  ev = data.create_eval_iterator(
    imagenet, split="train", global_batch_size=2, image_size=112, crops=144
  )
  batch = next(ev)
  assert batch["image"].shape == (2, 144, 112, 112, 3) and batch["mask"].all()
  images = batch["image"][0]
  np.testing.assert_array_equal(images[72:], images[:72, :, ::-1])
  assert len(ev) == 24


def test_benchmark_input_subcommand(imagenet, capsys):
  """The default pipeline (uint8 crops, distortions timed on the device) and --all_on_host."""
  from experiments import benchmark

  results = {}
  for mode in ([], ["--all_on_host"]):
    benchmark.main(
      [
        "bench",
        "input",
        f"--dataset={imagenet}",
        "--split=train",
        "--image_size=64",
        "--batches=2",
        "--batch_size=8",
        "--warmup=1",
        "--format=json",
        *mode,
      ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 16 and result["images_per_sec"] > 0
    assert result["cpus"] >= 1 and result["dataset"] == imagenet
    assert result["host_cpu_ms_per_image"] == result["cpu_ms_per_image"] > 0
    results[result["distort_on"]] = result
  device, host = results["device"], results["host"]
  assert device["bytes_per_image"] == 64 * 64 * 3 and host["bytes_per_image"] == 4 * 64 * 64 * 3
  assert device["device_ms_per_image"] > 0 and host["device_ms_per_image"] is None
  assert host["preprocess"] == {"distort_on": "host"}
