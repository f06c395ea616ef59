"""tf-slim's own networks (PyPI tf-slim 1.1.0: nets/inception_v1.py, inception_v2.py,
inception_v3.py) against `conversion.from_slim`: Google's code, not a re-implementation of it.

Each graph is built in tf.compat.v1 graph mode with slim's initialisers, random BN offsets and
biases, and BN moving statistics measured on a calibration batch of real photographs (batch
statistics of slim's own training-mode graph, so that ~100 layers neither vanish nor explode) and
then perturbed. The graph is saved as a TF checkpoint, converted, and both networks classify other
real photographs (../shared/data/imagenet-sample-500.tar): max|ours - slim| <= 1e-4 max|slim|,
with the same argmax. TensorFlow only, no torch, in this module (the two in one process can
segfault). Under CI=true a missing tf-slim / tf_keras or missing photographs fail instead of
skipping.
"""

import functools
import json
import os
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from test_convert import require  # the one parity-dependency helper (skip, or fail under CI)

from inception_jax import conversion, speed
from inception_jax.conversion import __main__ as conversion_cli
from inception_jax.data import samples

RTOL = 1e-4
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_TAR = SHARED / "imagenet-sample-500.tar"
PHOTOS = 4  # per batch: one calibration batch, one test batch
# slim net -> (our model, input size, slim's scope)
NETS = {
  "inception_v1": ("googlenet_bn", 224),
  "inception_v2": ("bn_inception", 224),
  "inception_v3": ("inception_v3", 299),
}


def _ci() -> bool:
  return os.environ.get("CI", "").lower() == "true"


def slim_nets():
  """tf_slim.nets, importable under TF 2.21 once tf_keras's legacy layers are aliased."""
  require("tensorflow")
  require("tf_keras")
  for sub in ("", ".base", ".core", ".convolutional", ".normalization", ".pooling"):
    name = "tf_keras.legacy_tf_layers" + sub
    if name not in sys.modules:
      sys.modules[name] = require("tf_keras.src.legacy_tf_layers" + sub)
  require("tf_slim")
  return require("tf_slim.nets")


# ---- Real photographs ----------------------------------------------------------------------------
@functools.cache
def photographs(size: int) -> np.ndarray:
  """2 * PHOTOS ImageNet photographs: central square crop, bilinear resize, scaled to [-1, 1]."""
  if not IMAGENET_TAR.exists():
    (pytest.fail if _ci() else pytest.skip)(f"shared test data missing: {IMAGENET_TAR}")
  from PIL import Image

  root = Path(tempfile.mkdtemp(prefix="inception_jax_slim_"))
  samples.extract_imagenet_sample(IMAGENET_TAR, root, limit=2 * PHOTOS)
  out = []
  for path in sorted(root.glob("train/*/*"))[: 2 * PHOTOS]:
    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    out.append(np.asarray(img, np.float32) / 127.5 - 1.0)
  assert len(out) == 2 * PHOTOS, f"expected {2 * PHOTOS} photographs in {IMAGENET_TAR}"
  return np.stack(out)


# ---- slim's graphs -------------------------------------------------------------------------------
class SlimPeer:
  """A slim network in its own tf.Graph, with weights, calibrated BN statistics and a checkpoint."""

  def __init__(self, net: str, workdir: Path, seed: int = 0):
    tf = require("tensorflow")
    nets = slim_nets()
    slim = require("tf_slim")
    module = getattr(nets, net)
    fn, arg_scope = getattr(module, net), getattr(module, f"{net}_arg_scope")
    self.net, (self.model_name, self.size) = net, NETS[net]
    rng = np.random.default_rng(seed)
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      v1.set_random_seed(seed)
      self.x = v1.placeholder(tf.float32, (None, self.size, self.size, 3))
      with slim.arg_scope(arg_scope()):
        train_logits, _ = fn(self.x, num_classes=1001, is_training=True)
        self.logits, self.end_points = fn(self.x, num_classes=1001, is_training=False, reuse=True)
      self.session = v1.Session(graph=self.graph)
      self.session.run(v1.global_variables_initializer())
      variables = {v.op.name: v for v in v1.global_variables()}
      # Offsets and biases are zero-initialised by slim: make them random so they are exercised.
      for name, var in variables.items():
        if name.endswith(("BatchNorm/beta", "biases")):
          var.load(0.2 * rng.standard_normal(var.shape).astype(np.float32), self.session)
      # Calibration: the batch statistics of slim's training-mode graph become the moving ones.
      bns = [
        op
        for op in self.graph.get_operations()
        if op.type.startswith("FusedBatchNorm") and op.get_attr("is_training")
      ]
      assert bns, "no BatchNorm found in slim's training graph"
      pre_bn = self.session.run(
        [op.inputs[0] for op in bns], {self.x: photographs(self.size)[PHOTOS:]}
      )
      for op, act in zip(bns, pre_bn, strict=False):
        prefix = _variable_name(op.inputs[2]).removesuffix("/beta")  # the offset reads beta
        mean, var = act.mean(axis=(0, 1, 2)), act.var(axis=(0, 1, 2))
        mean = mean + 0.2 * np.sqrt(var) * rng.standard_normal(mean.shape)
        var = var * np.exp(0.3 * rng.standard_normal(var.shape))
        variables[f"{prefix}/moving_mean"].load(mean.astype(np.float32), self.session)
        variables[f"{prefix}/moving_variance"].load(var.astype(np.float32), self.session)
      self.calibrated = len(bns)
      self.trainable = sum(int(np.prod(v.shape)) for v in v1.trainable_variables())
      (workdir / net).mkdir(parents=True, exist_ok=True)
      self.prefix = str(workdir / net / f"{net}.ckpt")  # its own folder: `checkpoint` names it
      v1.train.Saver(v1.global_variables()).save(self.session, self.prefix)
    del train_logits

  @property
  def scope(self) -> str:
    return {
      "inception_v1": "InceptionV1",
      "inception_v2": "InceptionV2",
      "inception_v3": "InceptionV3",
    }[self.net]

  def run(self, tensor, images):
    return self.session.run(tensor, {self.x: images})


def _variable_name(tensor) -> str:
  """The variable a tensor reads (through Identity / ReadVariableOp)."""
  while tensor.op.type in ("Identity", "ReadVariableOp"):
    tensor = tensor.op.inputs[0]
  return tensor.op.name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tmp_path_factory.mktemp("slim")


@functools.cache
def _peer(net: str, workdir: Path) -> SlimPeer:
  return SlimPeer(net, workdir)


@pytest.fixture(scope="module", params=list(NETS))
def peer(request, workdir):
  return _peer(request.param, workdir)


def assert_parity(ours, theirs, what):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
  scale = np.abs(theirs).max()
  err = np.abs(ours - theirs).max() / scale
  print(f"{what}: max relative error {err:.2e} (largest logit {scale:.3g})")
  assert err <= RTOL, f"{what}: max|diff| / max|logit| = {err:.3e} > {RTOL}"
  np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1), err_msg=f"{what}: argmax")
  # slim's network must look at its input: different photographs, different logits.
  assert np.abs(theirs[0] - theirs[1]).max() > 1e-2 * scale, f"{what}: slim ignores its input"
  return err


# ---- Parity --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_slim_logits_on_real_photographs(peer):
  model, variables = conversion.from_slim(peer.prefix, peer.model_name)
  assert model.num_classes == 1001 and model.bn_scale is False and model.transform_input is False
  x = photographs(peer.size)[:PHOTOS]
  ours = speed.make_eval_step(model)(variables, x)
  assert_parity(ours, peer.run(peer.logits, x), f"slim {peer.net} -> {peer.model_name}")


@pytest.mark.slow
def test_parameter_counts_equal_slims(peer):
  """slim's trainable variables, counted by TF, equal our params (1001 classes, no BN scale)."""
  model, variables = conversion.from_slim(peer.prefix, peer.model_name)
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
  assert ours == peer.trainable
  assert (
    peer.trainable
    == {"inception_v1": 6_618_649, "inception_v2": 11_179_361, "inception_v3": 27_145_970}[peer.net]
  )  # docs/PAPERS.md, measured with slim


@pytest.mark.slow
def test_conventions(peer):
  """What each slim network needs of ours, read from the checkpoint."""
  model, _ = conversion.from_slim(peer.prefix, peer.model_name)
  if peer.net == "inception_v1":
    assert model.padding == "same" and not model.aux_logits and model.pool5_window == 2
    assert model.branch3_kernel == 3
  elif peer.net == "inception_v2":
    assert model.stem == "separable"
  else:
    assert model.aux_logits and not model.pool_count_include_pad


@pytest.mark.slow
def test_inception_v3_aux_head_matches_slim(workdir):
  """slim's AuxLogits (eval mode, on Mixed_6e) against our aux head on the same features."""
  p = _peer("inception_v3", workdir)
  model, variables = conversion.from_slim(p.prefix, "inception_v3")
  x = photographs(p.size)[:2]
  theirs = p.run(p.end_points["AuxLogits"], x)
  feats = model.clone(return_features=True).apply(variables, x, train=False)
  from inception_jax.blocks import InceptionV3AuxHead
  from inception_jax.layers import ConvBN

  head = InceptionV3AuxHead(1001, conv=functools.partial(ConvBN, bn_scale=False))
  ours = head.apply(
    {k: variables[k]["AuxLogits"] for k in ("params", "batch_stats")},
    feats["Mixed_6e"],
    train=False,
  )
  assert_parity(ours, theirs, "slim inception_v3 AuxLogits")


@pytest.mark.slow
def test_drop_background_is_the_kept_logits_minus_column_0(workdir):
  p = _peer("inception_v2", workdir)
  kept_model, kept = conversion.from_slim(p.prefix, "bn_inception")
  model, dropped = conversion.from_slim(p.prefix, "bn_inception", drop_background=True)
  assert model.num_classes == 1000
  x = photographs(p.size)[:2]
  full = np.asarray(speed.make_eval_step(kept_model)(kept, x))
  # Equal up to the float rounding of a 1000- instead of a 1001-wide matrix product...
  got = np.asarray(speed.make_eval_step(model)(dropped, x))
  np.testing.assert_allclose(got, full[:, 1:], rtol=0, atol=1e-6 * np.abs(full).max())
  # ...because the classifier is the kept one without its row for class 0, and nothing else changed.
  k, d = kept["params"]["Logits"], dropped["params"]["Logits"]
  np.testing.assert_array_equal(d["kernel"], np.asarray(k["kernel"])[:, 1:])
  np.testing.assert_array_equal(d["bias"], np.asarray(k["bias"])[1:])
  same = lambda tree: {k: v for k, v in tree.items() if k != "Logits"}  # noqa: E731
  jax.tree.map(np.testing.assert_array_equal, same(dropped["params"]), same(kept["params"]))
  jax.tree.map(np.testing.assert_array_equal, dropped["batch_stats"], kept["batch_stats"])


@pytest.mark.slow
def test_checkpoint_directory_and_command_line(workdir, tmp_path):
  p = _peer("inception_v1", workdir)
  _, variables = conversion.from_slim(Path(p.prefix).parent, "googlenet_bn")  # the directory
  out = tmp_path / "converted"
  assert (
    conversion_cli.main(
      [
        "convert",
        "--from=slim",
        "--model=googlenet_bn",
        f"--input={p.prefix}",
        f"--output={out}",
        "--drop_background",
      ]
    )
    == 0
  )
  meta = json.loads((out / conversion.META_FILE).read_text())
  assert meta["num_classes"] == 1000 and meta["model_overrides"]["padding"] == "same"
  loaded_model, loaded = conversion.load(out)
  assert loaded_model.padding == "same" and loaded_model.num_classes == 1000
  np.testing.assert_array_equal(
    np.asarray(loaded["params"]["Logits"]["kernel"]),
    np.asarray(variables["params"]["Logits"]["kernel"])[:, 1:],
  )


# ---- Bad input -----------------------------------------------------------------------------------
def write_checkpoint(tensors: dict, prefix: Path) -> str:
  """A TF1 checkpoint holding exactly `tensors` (name -> array)."""
  tf = require("tensorflow")
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    variables = [v1.Variable(value, name=name) for name, value in tensors.items()]
    with v1.Session() as session:
      session.run(v1.global_variables_initializer())
      return v1.train.Saver(variables).save(session, str(prefix))


def _checkpoint_tensors(prefix: str) -> dict:
  tf = require("tensorflow")
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_missing_and_misshaped_tensors_are_named(workdir, tmp_path):
  p = _peer("inception_v2", workdir)
  tensors = _checkpoint_tensors(p.prefix)
  extra = dict(
    tensors,
    **{
      "global_step": np.int64(5),
      "InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/weights/RMSProp": tensors[
        "InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/weights"
      ],
    },
  )
  model, _ = conversion.from_slim(write_checkpoint(extra, tmp_path / "extra.ckpt"), "bn_inception")
  assert model.num_classes == 1001  # optimizer slots and the step counter are not the network
  missing = dict(tensors)
  del missing["InceptionV2/Mixed_4c/Branch_2/Conv2d_0b_3x3/weights"]
  with pytest.raises(
    conversion.ConversionError,
    match=r"'Mixed_4c/Branch_2/Conv2d_0b_3x3/weights' is missing \(expected shape "
    r"\(3, 3, 96, 128\)\)",
  ):
    conversion.from_slim(write_checkpoint(missing, tmp_path / "missing.ckpt"), "bn_inception")
  wrong = dict(tensors)
  wrong["InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/weights"] = np.zeros(
    (1, 1, 192, 65), np.float32
  )
  with pytest.raises(
    conversion.ConversionError,
    match=r"'Mixed_3b/Branch_0/Conv2d_0a_1x1/weights' has shape \(1, 1, 192, 65\), "
    r"expected \(1, 1, 192, 64\)",
  ):
    conversion.from_slim(write_checkpoint(wrong, tmp_path / "wrong.ckpt"), "bn_inception")
  unexpected = dict(
    tensors,
    **{
      "InceptionV2/Mixed_6a/Branch_0/Conv2d_0a_1x1/weights": np.zeros((1, 1, 1024, 8), np.float32)
    },
  )
  with pytest.raises(
    conversion.ConversionError,
    match=r"'Mixed_6a/Branch_0/Conv2d_0a_1x1/weights' \(1, 1, 1024, 8\) is not a "
    r"tensor of this architecture",
  ):
    conversion.from_slim(write_checkpoint(unexpected, tmp_path / "unexpected.ckpt"), "bn_inception")


@pytest.mark.slow
def test_truncated_checkpoint_is_refused(workdir, tmp_path):
  p = _peer("inception_v2", workdir)
  prefix = write_checkpoint(_checkpoint_tensors(p.prefix), tmp_path / "copy.ckpt")
  data = next(tmp_path.glob("copy.ckpt.data-*"))
  data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
  with pytest.raises(conversion.ConversionError, match="cannot be read|truncated"):
    conversion.from_slim(prefix, "bn_inception")


@pytest.mark.slow
def test_another_architecture_is_refused_by_name(workdir):
  p = _peer("inception_v3", workdir)
  with pytest.raises(
    conversion.ConversionError, match="holds slim's inception_v3: use 'inception_v3'"
  ):
    conversion.from_slim(p.prefix, "bn_inception")


def test_bad_paths_and_names(tmp_path):
  require("tensorflow")
  with pytest.raises(conversion.ConversionError, match="does not exist"):
    conversion.from_slim(tmp_path / "nothing.ckpt", "inception_v3")
  with pytest.raises(conversion.ConversionError, match="slim's inception_v2 is our 'bn_inception'"):
    conversion.from_slim(tmp_path / "nothing.ckpt", "inception_v2")
  prefix = write_checkpoint(
    {"InceptionV3/Logits/Conv2d_1c_1x1/biases": np.zeros(3, np.float32)}, tmp_path / "tiny.ckpt"
  )
  with pytest.raises(conversion.ConversionError, match="pass the checkpoint prefix"):
    conversion.from_slim(prefix + ".index", "inception_v3")
  with pytest.raises(conversion.ConversionError, match="'Conv2d_1a_3x3/weights' is missing"):
    conversion.from_slim(prefix, "inception_v3")  # a checkpoint holding one tensor
  garbage = tmp_path / "garbage.ckpt"
  (tmp_path / "garbage.ckpt.index").write_bytes(os.urandom(64))
  with pytest.raises(conversion.ConversionError, match="cannot be read as a TF checkpoint"):
    conversion.from_slim(garbage, "inception_v3")
  with pytest.raises(conversion.ConversionError, match="needs slim's 1001 classes"):
    conversion.from_slim(prefix, "inception_v3", drop_background=True)
