"""Iterators: digits, folders, sharding, determinism, resumption, padding, bad inputs."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inception_jax import data
from inception_jax.data import datasets

# Solid images whose grey level identifies them survive any crop, resize and flip.
IDENTIFY = {"color_distortion": False, "input_range": (0.0, 255.0)}
STEP = 4  # grey level = STEP * example id


def write_image(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt)
  path.write_bytes(buf.getvalue())


def make_id_folder(root: Path, n: int, classes: int = 3, split: str = "train") -> Path:
  """n solid images; image i has grey level STEP * i, class i % classes; any sizes."""
  for i in range(n):
    shape = (10 + i % 7, 12 + (3 * i) % 11)
    write_image(
      root / split / f"class_{i % classes}" / f"{i:04d}.png",
      np.full((*shape, 3), STEP * i, np.uint8),
    )
  return root


def ids(images: np.ndarray) -> np.ndarray:
  """Example ids of [N, ..., 3] solid images."""
  axes = tuple(range(1, images.ndim))
  return np.round(images.mean(axis=axes) / STEP).astype(int)


@pytest.fixture(scope="module")
def id_folder(tmp_path_factory) -> str:
  return "folder:" + str(make_id_folder(tmp_path_factory.mktemp("ids"), 50))


# ----------------------------------------------------------------------------- digits


def test_digits_info_and_batches():
  info = data.get_info("digits")
  assert info.num_classes == 10 and info.splits == {"train": 1500, "test": 297}
  it = data.create_train_iterator(
    "digits", global_batch_size=16, image_size=24, seed=0, preprocess={"distort_on": "host"}
  )
  batch = next(it)
  assert batch["image"].shape == (16, 24, 24, 3) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
  assert -1 <= batch["image"].min() < batch["image"].max() <= 1
  assert set(batch) == {"image", "label"} and it.step == 1
  # The default (distort_on="device"): uint8 crops, the same examples in the same order.
  crops = next(data.create_train_iterator("digits", global_batch_size=16, image_size=24, seed=0))
  assert crops["image"].shape == (16, 24, 24, 3) and crops["image"].dtype == np.uint8
  assert crops["image"].min() < crops["image"].max()
  np.testing.assert_array_equal(crops["label"], batch["label"])


def test_digits_eval_counts_every_example_once_with_padding():
  ev = data.create_eval_iterator("digits", split="test", global_batch_size=64, image_size=16)
  batches = list(ev)
  assert len(batches) == len(ev) == 5  # ceil(297 / 64)
  masks = np.concatenate([b["mask"] for b in batches])
  assert masks.sum() == 297 and masks[:297].all() and not masks[297:].any()
  assert batches[-1]["image"].shape == (64, 1, 16, 16, 3)
  labels = np.concatenate([b["label"] for b in batches])[:297]
  images, targets = __import__("inception_jax.data.digits", fromlist=["x"]).digit_images()
  assert sorted(labels.tolist()) == sorted(targets[1500:].tolist())


# ----------------------------------------------------------------------------- order


def take(it, k):
  return [next(it) for _ in range(k)]


def test_training_order_is_deterministic_for_a_seed(id_folder):
  kwargs = dict(global_batch_size=10, image_size=8, preprocess=IDENTIFY)
  a = take(data.create_train_iterator(id_folder, seed=1, **kwargs), 6)
  b = take(data.create_train_iterator(id_folder, seed=1, **kwargs), 6)
  c = take(data.create_train_iterator(id_folder, seed=2, **kwargs), 6)
  for x, y in zip(a, b, strict=False):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not all(np.array_equal(x["label"], y["label"]) for x, y in zip(a, c, strict=False))
  # each epoch (5 batches of 10) is a permutation of the 50 examples, reshuffled per epoch
  epoch0 = np.concatenate([ids(x["image"]) for x in a[:5]])
  assert sorted(epoch0) == list(range(50))
  assert not np.array_equal(epoch0[:10], ids(a[5]["image"]))
  labels = np.concatenate([x["label"] for x in a[:5]])
  np.testing.assert_array_equal(labels, epoch0 % 3)


@pytest.mark.parametrize("in_memory_max_bytes", [datasets.DEFAULT_IN_MEMORY_MAX_BYTES, 0])
def test_resumption_at_step_k_sees_the_same_batches(in_memory_max_bytes):
  # digits train: 1500 examples, 64 per batch: steps 22..24 cross the first epoch's end.
  kwargs = dict(global_batch_size=64, image_size=8, seed=3, in_memory_max_bytes=in_memory_max_bytes)
  full = take(data.create_train_iterator("digits", **kwargs), 25)
  for k in (1, 22):
    resumed = data.create_train_iterator("digits", start_step=k, **kwargs)
    assert resumed.step == k
    for expected in full[k : k + 3]:
      got = next(resumed)
      np.testing.assert_array_equal(got["label"], expected["label"])
      np.testing.assert_array_equal(got["image"], expected["image"])


# ----------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("count", [2, 3])
def test_global_batches_do_not_depend_on_the_process_count(id_folder, count):
  """Each host prepares its rows of the global batch: the hosts' batches, in process order, are
  the single-process batches (crops, flips and all), also when resuming at a later step."""
  kwargs = dict(global_batch_size=12, image_size=8, seed=5, preprocess=IDENTIFY)
  single = take(
    data.create_train_iterator(id_folder, process_index=0, process_count=1, **kwargs), 6
  )
  for start_step in (0, 4):
    hosts = [
      data.create_train_iterator(
        id_folder, process_index=i, process_count=count, start_step=start_step, **kwargs
      )
      for i in range(count)
    ]
    assert all(it.order == "global" for it in hosts)
    for k in range(start_step, 6):
      parts = [next(it) for it in hosts]
      assert all(len(p["label"]) == 12 // count for p in parts)
      for key in ("image", "label"):
        np.testing.assert_array_equal(
          np.concatenate([p[key] for p in parts]), single[k][key], err_msg=f"step {k}"
        )
  # and the single-process order is still a permutation of the split per epoch (50 = 4 x 12 + 2)
  first = np.concatenate([ids(b["image"]) for b in single[:4]])
  assert len(set(first.tolist())) == 48


def test_streamed_splits_keep_per_host_slices():
  """A split too large to hold in memory is streamed: each host reads its own contiguous slice."""
  per_host = []
  for index in range(2):
    it = data.create_train_iterator(
      "digits",
      global_batch_size=8,
      image_size=8,
      process_index=index,
      process_count=2,
      in_memory_max_bytes=0,
    )
    assert it.order == "per_host"
    per_host.append(next(it)["label"])
  assert all(len(labels) == 4 for labels in per_host)


@pytest.mark.parametrize("count,batch", [(1, 16), (3, 12), (4, 8)])
def test_padded_evaluation_counts_each_example_once(id_folder, count, batch):
  seen, lengths = [], set()
  for index in range(count):
    ev = data.create_eval_iterator(
      id_folder,
      split="train",
      global_batch_size=batch,
      image_size=8,
      preprocess=IDENTIFY,
      process_index=index,
      process_count=count,
    )
    batches = list(ev)
    lengths.add(len(batches))
    for b in batches:
      assert b["image"].shape == (batch // count, 1, 8, 8, 3)
      seen.extend(ids(b["image"][b["mask"]]).tolist())
      assert (b["label"][~b["mask"]] == 0).all() and (b["image"][~b["mask"]] == 0).all()
  assert sorted(seen) == list(range(50))
  assert len(lengths) == 1  # every host runs the same number of eval steps


def test_host_slice_arithmetic():
  for n in (0, 1, 7, 50, 1281167):
    for count in (1, 2, 3, 8):
      slices = [datasets.host_slice(n, i, count) for i in range(count)]
      assert slices[0][0] == 0 and slices[-1][1] == n
      assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
      assert max(b - a for a, b in slices) - min(b - a for a, b in slices) <= 1
  with pytest.raises(ValueError):
    datasets.host_slice(10, 2, 2)
  with pytest.raises(ValueError, match="multiple"):
    data.create_train_iterator("digits", global_batch_size=10, process_index=0, process_count=3)


# ----------------------------------------------------------------------------- folders


def test_folder_classes_sorted_and_shared_between_splits(tmp_path):
  for split, classes in [("train", ["zebra", "ant", "cat"]), ("validation", ["cat", "bee"])]:
    for c in classes:
      write_image(tmp_path / split / c / "a.jpg", np.zeros((8, 8, 3), np.uint8), "JPEG")
  (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
  info = data.get_info(f"folder:{tmp_path}")
  assert info.class_names == ("ant", "bee", "cat", "zebra") and info.num_classes == 4
  assert info.splits == {"train": 3, "validation": 2}
  ev = data.create_eval_iterator(
    f"folder:{tmp_path}", split="validation", global_batch_size=2, image_size=8
  )
  assert sorted(next(ev)["label"].tolist()) == [1, 2]


# ----------------------------------------------------------------------------- bad inputs


@pytest.fixture()
def corrupt_folder(tmp_path):
  make_id_folder(tmp_path, 20)
  good = io.BytesIO()
  Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(good, "JPEG")
  bad = {
    "class_0/random.jpg": np.random.default_rng(0).bytes(500),
    "class_1/empty.png": b"",
    "class_2/truncated.jpg": good.getvalue()[:60],
  }
  for name, content in bad.items():
    (tmp_path / "train" / name).write_bytes(content)
  return tmp_path, [str(tmp_path / "train" / n) for n in bad]


def test_corrupt_image_fails_naming_the_file(corrupt_folder):
  root, bad = corrupt_folder
  it = data.create_train_iterator(f"folder:{root}", global_batch_size=23, image_size=8)
  with pytest.raises(data.CorruptImageError) as err:
    next(it)
  assert any(b in str(err.value) for b in bad)
  ev = data.create_eval_iterator(f"folder:{root}", split="train", global_batch_size=8, image_size=8)
  with pytest.raises(data.CorruptImageError, match="cannot read or decode image"):
    list(ev)


def test_corrupt_images_skipped_and_counted(corrupt_folder):
  root, bad = corrupt_folder
  it = data.create_train_iterator(
    f"folder:{root}", global_batch_size=23, image_size=8, on_corrupt="skip"
  )
  batches = take(it, 3)  # 3 * 23 = 69 draws from 3 epochs of 23 examples
  assert all(b["image"].shape == (23, 8, 8, 3) for b in batches)
  assert it.num_skipped >= 3 and set(bad) == set(it.skipped)
  ev = data.create_eval_iterator(
    f"folder:{root}", split="train", global_batch_size=8, image_size=8, on_corrupt="skip"
  )
  masks = np.concatenate([b["mask"] for b in ev])
  assert len(masks) == 24 and masks.sum() == 20
  assert ev.num_skipped == 3 and sorted(ev.skipped) == sorted(bad)


def test_labels_outside_the_class_range_are_an_error(id_folder, monkeypatch):
  original = datasets.FolderSource.table

  def shifted(self, split, start, stop):
    table = original(self, split, start, stop)
    return datasets.ExampleTable(table.labels + 2, paths=table.paths)

  monkeypatch.setattr(datasets.FolderSource, "table", shifted)
  with pytest.raises(ValueError, match="outside the class range"):
    next(data.create_train_iterator(id_folder, global_batch_size=50, image_size=8))
  with pytest.raises(ValueError, match="outside the class range"):
    list(data.create_eval_iterator(id_folder, split="train", global_batch_size=50, image_size=8))


def test_missing_folder_says_what_to_put_where(tmp_path):
  with pytest.raises(data.DatasetNotFoundError, match=r"<split>/<class name>/<image>"):
    data.get_info(f"folder:{tmp_path / 'nope'}")
  (tmp_path / "train").mkdir()
  with pytest.raises(data.DatasetNotFoundError, match="no class folders"):
    data.get_info(f"folder:{tmp_path}")
  (tmp_path / "train" / "cat").mkdir()
  with pytest.raises(data.DatasetNotFoundError, match="no images"):
    data.get_info(f"folder:{tmp_path}")


def test_missing_split_lists_the_splits(id_folder):
  with pytest.raises(ValueError, match=r"no split 'test'.*\['train'\]"):
    data.create_eval_iterator(id_folder, split="test", global_batch_size=8, image_size=8)


def test_missing_tfds_datasets_say_what_to_put_where(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as err:
    data.get_info("imagenet2012", data_dir=str(tmp_path))
  message = str(err.value)
  assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
  assert str(tmp_path / "downloads" / "manual") in message
  assert f"tfds build imagenet2012 --data_dir={tmp_path}" in message
  with pytest.raises(data.DatasetNotFoundError, match="tfds build cifar10"):
    data.get_info("cifar10", data_dir=str(tmp_path))
  with pytest.raises(data.DatasetNotFoundError, match="unknown dataset"):
    data.get_info("no_such_dataset_xyz", data_dir=str(tmp_path))
