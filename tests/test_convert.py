"""Weight import reproduces torchvision's and Keras's logits; converted checkpoints round-trip and
anything else (another architecture, a file that is not a checkpoint) is refused by name.

The peers are randomly initialised (no downloads). Their BatchNorm layers get random gamma/beta,
running statistics measured on a calibration batch (so activations neither vanish nor explode
through ~100 layers) and then perturbed, so that eval-mode BN (eps 0.001, running mean/var,
scale/no scale) is exercised rather than being close to the identity. Parity is asserted as
max|ours - theirs| <= 1e-4 * max|theirs| on a batch of two random images, and the two images'
logits must differ, so an input-independent network cannot pass.

Under CI=true a missing torch / torchvision / keras fails instead of skipping.
"""

import copy
import functools
import importlib
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from inception_jax import conversion, speed
from inception_jax.blocks import InceptionV3AuxHead
from inception_jax.conversion import __main__ as conversion_cli
from inception_jax.layers import ConvBN

RTOL = 1e-4


def require(module):
  """The module, or skip; under CI=true a missing parity dependency is a failure."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"{module} is required for the parity tests under CI=true: {e}")
    pytest.skip(f"{module} is not installed")


def test_missing_parity_dependency_fails_under_ci(monkeypatch):
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="required for the parity tests under CI=true"):
    require("no_such_module_for_inception_jax")
  monkeypatch.delenv("CI")
  with pytest.raises(pytest.skip.Exception):
    require("no_such_module_for_inception_jax")


def assert_parity(ours, theirs, what):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
  scale = np.abs(theirs).max()
  err = np.abs(ours - theirs).max() / scale
  print(f"{what}: max relative error {err:.2e} (largest logit {scale:.3g})")
  assert err <= RTOL, f"{what}: max|diff| / max|logit| = {err:.3e} > {RTOL}"
  if theirs.shape[0] > 1:  # The peer must actually look at the image.
    assert np.abs(theirs[0] - theirs[1]).max() > 1e-2 * scale, f"{what}: peer ignores its input"
  return err


def images(size, layout, seed=0):
  x = np.random.default_rng(seed).standard_normal((2, size, size, 3)).astype(np.float32)
  return x.transpose(0, 3, 1, 2).copy() if layout == "NCHW" else x


# ---- torchvision peers --------------------------------------------------------------------------
def randomize_torch_bn(net, size, seed=0):
  torch = require("torch")
  g = torch.Generator().manual_seed(seed)
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for bn in bns:
      bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
      bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=g))
      bn.reset_running_stats()
      bn.momentum = None  # cumulative average: one batch sets the running stats to its own
    net.train()
    net(torch.randn(4, 3, size, size, generator=g))
    for bn in bns:
      bn.running_mean.add_(0.2 * bn.running_var.sqrt() * torch.randn(bn.num_features, generator=g))
      bn.running_var.mul_(torch.exp(0.3 * torch.randn(bn.num_features, generator=g)))
      bn.momentum = 0.1
  return net.eval()


class Peer:
  def __init__(self, net, name, model, variables):
    self.net, self.name, self.model, self.variables = net, name, model, variables
    # The eval step users run (with the CPU fast path's compiler options); compiled once per size.
    self.apply = speed.make_eval_step(model)

  def torch_logits(self, x_nchw):
    torch = require("torch")
    with torch.no_grad():
      return self.net(torch.from_numpy(x_nchw)).numpy()


def torchvision_peer(builder: str, model_name: str, image_size: int) -> Peer:
  """A randomly initialised torchvision network (aux heads, transform_input) with randomised BN
  statistics, and our conversion of it."""
  require("torch")
  torchvision = require("torchvision")
  net = getattr(torchvision.models, builder)(
    weights=None, aux_logits=True, transform_input=True, init_weights=True
  )
  randomize_torch_bn(net, image_size)
  return Peer(net, model_name, *conversion.from_torchvision(net, model_name))


@pytest.fixture(scope="module")
def googlenet_peer():
  return torchvision_peer("googlenet", "googlenet_bn", 224)


@pytest.fixture(scope="module")
def inception_v3_peer():
  return torchvision_peer("inception_v3", "inception_v3", 299)


@pytest.mark.parametrize("size", [224, 231])  # 231: ceil-mode pools leave a partial last window
def test_googlenet_matches_torchvision(googlenet_peer, size):
  p = googlenet_peer
  assert p.model.transform_input and p.model.aux_logits and p.model.num_classes == 1000
  x = images(size, "NCHW")
  assert_parity(
    p.apply(p.variables, x.transpose(0, 2, 3, 1)), p.torch_logits(x), f"googlenet_bn {size}x{size}"
  )


def test_inception_v3_matches_torchvision(inception_v3_peer):
  p = inception_v3_peer
  assert p.model.pool_count_include_pad and p.model.transform_input and p.model.aux_logits
  x = images(299, "NCHW")
  assert_parity(
    p.apply(p.variables, x.transpose(0, 2, 3, 1)), p.torch_logits(x), "inception_v3 299x299"
  )


def test_googlenet_aux_heads_match_torchvision_in_training_mode(googlenet_peer):
  """Batch statistics, dropout off: both aux heads, incl. fc1's (C, H, W) -> (H, W, C)
  permutation."""
  torch = require("torch")
  p = googlenet_peer
  net = copy.deepcopy(
    p.net
  ).train()  # train mode updates running stats: keep the shared peer intact
  for m in net.modules():
    if isinstance(m, torch.nn.Dropout):
      m.p = 0.0
  x = images(224, "NCHW", seed=1)
  with torch.no_grad():
    out = net(torch.from_numpy(x))
  model = p.model.clone(dropout_rate=0.0, aux_dropout_rate=0.0)
  (logits, aux), _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
    p.variables, x.transpose(0, 2, 3, 1)
  )
  assert len(aux) == 2
  for what, ours, ref in (
    ("logits", logits, out.logits),
    ("aux1 (Mixed_4b)", aux[0], out.aux_logits1),
    ("aux2 (Mixed_4e)", aux[1], out.aux_logits2),
  ):
    assert_parity(ours, ref.numpy(), f"googlenet_bn train-mode {what}")


def test_inception_v3_aux_head_matches_torchvision(inception_v3_peer):
  """Eval mode on a 17x17x768 map. (In training mode its 1x1 conv1 output would be normalised
  over two samples only, which is too ill-conditioned for a 1e-4 comparison.)"""
  torch = require("torch")
  p = inception_v3_peer
  head = InceptionV3AuxHead(p.model.num_classes, conv=functools.partial(ConvBN, bn_scale=True))
  variables = {c: p.variables[c]["AuxLogits"] for c in ("params", "batch_stats")}
  x = np.abs(np.random.default_rng(4).standard_normal((2, 17, 17, 768)).astype(np.float32))
  with torch.no_grad():
    ref = p.net.AuxLogits(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  assert_parity(head.apply(variables, x, train=False), ref, "inception_v3 AuxLogits head")


def test_state_dict_file_and_module_convert_alike(googlenet_peer, tmp_path):
  torch = require("torch")
  path = tmp_path / "googlenet.pth"
  torch.save(googlenet_peer.net.state_dict(), path)
  for source in (path, str(path), googlenet_peer.net.state_dict()):
    model, variables = conversion.from_torchvision(
      source, "googlenet_bn"
    )  # state_dicts: transform on
    assert model == googlenet_peer.model
    jax.tree.map(np.testing.assert_array_equal, variables, googlenet_peer.variables)
  model, _ = conversion.from_torchvision(path, "googlenet_bn", transform_input=False)
  assert not model.transform_input


def test_torchvision_num_classes_and_no_aux_are_inferred():
  require("torch")
  torchvision = require("torchvision")
  net = torchvision.models.googlenet(
    weights=None, aux_logits=False, num_classes=10, init_weights=True
  )
  model, variables = conversion.from_torchvision(
    net.state_dict(), "googlenet_bn", transform_input=False
  )
  assert model.num_classes == 10 and not model.aux_logits and not model.transform_input
  assert variables["params"]["Logits"]["kernel"].shape == (1024, 10)
  assert not any(k.startswith("AuxLogits") for k in variables["params"])


def test_wrong_architecture_names_first_mismatching_tensor(googlenet_peer):
  sd = googlenet_peer.net.state_dict()
  with pytest.raises(
    ValueError,
    match=r"first mismatching tensor 'Conv2d_1a_3x3\.conv\.weight' is "
    r"missing \(expected shape \(32, 3, 3, 3\)\).*'conv1\.conv\.weight' \(64, 3, 7, 7\)",
  ):
    conversion.from_torchvision(sd, "inception_v3")


def test_misshaped_missing_and_unexpected_tensors_are_named(googlenet_peer):
  torch = require("torch")
  sd = dict(googlenet_peer.net.state_dict())
  bad = dict(sd, **{"inception4a.branch2.1.conv.weight": torch.zeros(208, 96, 5, 5)})
  with pytest.raises(
    conversion.ConversionError,
    match=re.escape(
      "'inception4a.branch2.1.conv.weight' has shape (208, 96, 5, 5), expected (208, 96, 3, 3)"
    ),
  ):
    conversion.from_torchvision(bad, "googlenet_bn")
  missing = {k: v for k, v in sd.items() if k != "inception5b.branch3.0.bn.running_var"}
  with pytest.raises(ValueError, match=r"'inception5b\.branch3\.0\.bn\.running_var' is missing"):
    conversion.from_torchvision(missing, "googlenet_bn")
  extra = dict(sd, **{"head.weight": torch.zeros(3, 3)})
  with pytest.raises(
    ValueError, match=r"'head\.weight' \(3, 3\) is not a tensor of this architecture"
  ):
    conversion.from_torchvision(extra, "googlenet_bn")


def test_garbage_torch_file_is_refused(tmp_path):
  require("torch")
  path = tmp_path / "weights.pth"
  path.write_bytes(b"this is not a checkpoint" * 10)
  with pytest.raises(conversion.ConversionError, match="is not a PyTorch state_dict file"):
    conversion.from_torchvision(path, "inception_v3")
  with pytest.raises(conversion.ConversionError, match="does not exist"):
    conversion.from_torchvision(tmp_path / "absent.pth", "inception_v3")


# ---- Keras ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_peer():
  keras = require("keras")
  net = keras.applications.InceptionV3(weights=None, classifier_activation=None)
  rng = np.random.default_rng(0)
  bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
  for bn in bns:  # Keras's BN has no gamma here (scale=False): randomise beta and the statistics.
    bn.beta.assign(0.2 * rng.standard_normal(bn.beta.shape).astype(np.float32))
    bn.momentum = 0.0  # one training-mode batch sets the moving statistics to its own
  net(rng.uniform(-1, 1, (4, 299, 299, 3)).astype(np.float32), training=True)
  for bn in bns:
    var = bn.moving_variance.numpy()
    n = var.shape[0]
    bn.moving_mean.assign(
      bn.moving_mean.numpy() + 0.2 * np.sqrt(var) * rng.standard_normal(n).astype(np.float32)
    )
    bn.moving_variance.assign(var * np.exp(0.3 * rng.standard_normal(n)).astype(np.float32))
    bn.momentum = 0.99
  model, variables = conversion.from_keras(net, "inception_v3")
  return net, model, variables, speed.make_eval_step(model)


def test_inception_v3_matches_keras(keras_peer):
  keras = require("keras")
  net, model, variables, apply = keras_peer
  assert not model.bn_scale and not model.aux_logits and not model.pool_count_include_pad
  x = np.random.default_rng(2).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)  # [-1, 1] input
  assert_parity(
    apply(variables, x),
    keras.ops.convert_to_numpy(net(x, training=False)),
    "keras inception_v3 299x299",
  )


def test_keras_layers_are_taken_in_creation_order(keras_peer):
  """The graph walk yields conv2d, conv2d_1, ... (auto names count creations); model.layers
  does not."""
  keras = require("keras")
  net = keras_peer[0]
  convs = [
    layer.name
    for layer in conversion.keras_creation_order(net)
    if isinstance(layer, keras.layers.Conv2D)
  ]
  index = lambda n: int(re.fullmatch(r"conv2d(?:_(\d+))?", n).group(1) or 0)  # noqa: E731
  assert len(convs) == 94 and convs == sorted(convs, key=index)
  by_depth = [layer.name for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
  assert by_depth != convs  # relying on model.layers would silently swap same-shaped branches


# Keras's own saving code calls np.array(variable), which numpy 2 flags on every variable.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_keras_weight_files_convert_alike(keras_peer, tmp_path):
  net, model, variables, _ = keras_peer
  for path in (tmp_path / "inception_v3.weights.h5", tmp_path / "inception_v3.keras"):
    if path.name.endswith(".weights.h5"):
      net.save_weights(path)
    else:
      net.save(path)
    got_model, got = conversion.from_keras(path, "inception_v3")
    assert got_model == model
    jax.tree.map(np.testing.assert_array_equal, got, variables)


def test_keras_other_models_are_refused(tmp_path):
  keras = require("keras")
  inputs = keras.Input((32, 32, 3))
  x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
  x = keras.layers.BatchNormalization(scale=False)(x)
  outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
  with pytest.raises(
    conversion.ConversionError, match="has 1 Conv2D, 1 BatchNormalization and 1 Dense"
  ):
    conversion.from_keras(keras.Model(inputs, outputs))
  path = tmp_path / "junk.h5"
  path.write_bytes(b"\x00garbage" * 64)
  with pytest.raises(conversion.ConversionError, match="is not an HDF5 file"):
    conversion.from_keras(path)


# ---- Orbax checkpoints and the command line ------------------------------------------------------
def test_command_line_round_trip(googlenet_peer, tmp_path):
  torch = require("torch")
  src, out = tmp_path / "googlenet.pth", tmp_path / "converted"
  torch.save(googlenet_peer.net.state_dict(), src)
  cmd = [
    sys.executable,
    "-m",
    "inception_jax.conversion",
    "--from=torchvision",
    "--model=googlenet_bn",
    f"--input={src}",
    f"--output={out}",
  ]
  done = subprocess.run(
    cmd,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  assert done.returncode == 0, done.stderr
  assert (out / conversion.STATE_DIR).is_dir()
  meta = json.loads((out / conversion.META_FILE).read_text())
  assert meta["model"] == "googlenet_bn" and meta["num_classes"] == 1000
  assert meta["model_overrides"] == {"transform_input": True, "bn_scale": True, "aux_logits": True}

  model, variables = conversion.load(out)
  assert model == googlenet_peer.model
  jax.tree.map(np.testing.assert_array_equal, variables, googlenet_peer.variables)
  x = images(224, "NHWC", seed=3)
  np.testing.assert_array_equal(
    np.asarray(speed.make_eval_step(model)(variables, x)),
    np.asarray(googlenet_peer.apply(googlenet_peer.variables, x)),
  )


def test_command_line_reports_bad_input(tmp_path, capsys):
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not torch")
  require("torch")
  code = conversion_cli.main(
    [
      "convert",
      "--from=torchvision",
      "--model=inception_v3",
      f"--input={garbage}",
      f"--output={tmp_path / 'out'}",
    ]
  )
  assert code == 2 and "is not a PyTorch state_dict file" in capsys.readouterr().err


def test_load_refuses_files_that_are_not_checkpoints(tmp_path):
  garbage = tmp_path / "garbage.bin"
  garbage.write_bytes(os.urandom(256))
  with pytest.raises(conversion.ConversionError, match="is a file, not a converted checkpoint"):
    conversion.load(garbage)
  with pytest.raises(conversion.ConversionError, match="does not exist"):
    conversion.load(tmp_path / "absent")
  fake = tmp_path / "fake"
  (fake / conversion.STATE_DIR).mkdir(parents=True)
  (fake / conversion.STATE_DIR / "data").write_bytes(os.urandom(64))
  (fake / conversion.META_FILE).write_text(
    json.dumps({"model": "googlenet_bn", "num_classes": 1000})
  )
  with pytest.raises(conversion.ConversionError, match="cannot be read as an Orbax checkpoint"):
    conversion.load(fake)
  (fake / conversion.META_FILE).write_text("{not json")
  with pytest.raises(conversion.ConversionError, match="is not valid convert metadata"):
    conversion.load(fake)


def test_load_refuses_a_checkpoint_of_another_architecture(googlenet_peer, tmp_path):
  p = googlenet_peer
  out = conversion.save(tmp_path / "g", "googlenet_bn", p.model, p.variables, source="test")
  with pytest.raises(
    conversion.ConversionError,
    match=r"\(its metadata says 'googlenet_bn'\) does not match inception_v3: first "
    r"mismatching tensor 'params/AuxLogits/conv0/bn/bias' is missing",
  ):
    conversion.load(out, "inception_v3")
  meta = json.loads((out / conversion.META_FILE).read_text())
  (out / conversion.META_FILE).write_text(json.dumps(dict(meta, model="inception_v3")))
  with pytest.raises(
    conversion.ConversionError, match="does not match inception_v3: first mismatching tensor"
  ):
    conversion.load(out)
  (out / conversion.META_FILE).write_text(json.dumps(dict(meta, num_classes=10)))
  with pytest.raises(
    conversion.ConversionError,
    match=re.escape("'params/AuxLogits_Mixed_4b/fc2/bias' has shape (1000,), expected (10,)"),
  ):
    conversion.load(out)
  with pytest.raises(FileExistsError):
    conversion.save(out, "googlenet_bn", p.model, p.variables)
