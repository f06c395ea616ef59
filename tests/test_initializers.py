"""Initial weights: every network starts as its reference implementation does (docs/FIDELITY.md).

Each network is initialised for real (at a reduced width and input: the formulas depend on each
kernel's own fan-in) and the statistics of every kernel are compared with the reference's formula:
standard deviation, bounds, and the bias constants.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import initializers, models

TRUNC_STD = 0.87962566  # std of a normal truncated at +-2 standard deviations, in stddev units
SLIM_HE = math.sqrt(1.3) * TRUNC_STD  # slim: stddev sqrt(1.3 * 2 / n) before truncation


@functools.cache
def _params(name, initializer, size):
  model = models.create(name, num_classes=1000, width_multiplier=0.5, initializer=initializer)
  variables = model.init(
    {"params": jax.random.key(0), "dropout": jax.random.key(1)},
    jnp.zeros((1, size, size, 3)),
    train=False,
  )
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {"/".join(k.key for k in path): np.asarray(leaf) for path, leaf in flat}


def params(name, initializer):
  # Small inputs keep every layer kind (the aux heads' pools shrink to the grid, as slim's do).
  return _params(name, initializer, 96 if name.startswith(("googlenet", "bn_inception")) else 75)


def kernels(p, predicate):
  out = {k: v for k, v in p.items() if k.endswith("/kernel") and predicate(k)}
  assert out, "no kernel matched"
  return out


def fan_in(kernel):
  return int(np.prod(kernel.shape[:-1]))


def assert_std(kernel, expected, path, rel=0.1):
  """Sample std within `rel` of `expected` (kernels with at least 2,000 entries), mean ~0."""
  if kernel.size < 2000:
    return
  std = kernel.std()
  assert abs(std / expected - 1) < rel, (path, std, expected)
  assert abs(kernel.mean()) < 4 * expected / math.sqrt(kernel.size), path


def check(p, predicate, std_of_fan, bound_of_fan=None):
  n = 0
  for path, k in kernels(p, predicate).items():
    assert_std(k, std_of_fan(fan_in(k)), path)
    if bound_of_fan is not None:
      assert np.abs(k).max() <= bound_of_fan(fan_in(k)) * (1 + 1e-6), path
    n += 1
  return n


def biases(p, predicate):
  return {k: v for k, v in p.items() if k.endswith("/bias") and "/bn/" not in k and predicate(k)}


def is_aux(path):
  return path.startswith("AuxLogits")


def trunk_conv(path):
  return path.endswith("conv/kernel") and not is_aux(path)


# ---- BVLC GoogLeNet: the paper's network --------------------------------------------------------


def test_googlenet_is_bvlc_xavier_with_bias_0_2():
  p = params("googlenet", "bvlc")
  # Caffe's xavier: uniform(+-sqrt(3 / fan_in)), std sqrt(1 / fan_in); every layer.
  xavier_std, xavier_bound = (lambda n: math.sqrt(1 / n)), (lambda n: math.sqrt(3 / n))
  assert check(p, lambda k: True, xavier_std, xavier_bound) == 57 + 2 * 3 + 1
  # A uniform: its max is close to the bound (a normal of that std would exceed it).
  conv2 = p["Conv2d_2c_3x3/conv/kernel"]
  assert np.abs(conv2).max() > 0.99 * xavier_bound(fan_in(conv2))
  # bias 0.2 on every conv and on the aux heads' hidden fully connected layer, 0 on classifiers.
  for path, b in biases(p, lambda k: True).items():
    classifier = path == "Logits/bias" or path.endswith("fc2/bias")
    np.testing.assert_array_equal(b, np.float32(0.0 if classifier else 0.2), err_msg=path)
  assert len(biases(p, lambda k: True)) == 57 + 2 * 3 + 1


# ---- tf-slim ------------------------------------------------------------------------------------


def test_googlenet_bn_is_slim_inception_v1():
  p = params("googlenet_bn", "slim")
  # inception_v1_base: trunc_normal(0.01) on every conv and fully connected layer...
  assert check(p, lambda k: k != "Logits/kernel", lambda n: 0.01 * TRUNC_STD, lambda n: 0.02) > 50
  # ...the logits sit outside that scope: the arg scope's He (variance scaling, factor 2).
  check(
    p,
    lambda k: k == "Logits/kernel",
    lambda n: math.sqrt(2 / n) * SLIM_HE,
    lambda n: 2 * math.sqrt(2.6 / n),
  )
  assert all((b == 0).all() for b in biases(p, lambda k: True).values())


@pytest.mark.parametrize("name", ["inception_v3", "inception_v2"])
def test_inception_v3_and_v2_are_slim_inception_v3(name):
  p = params(name, "slim")
  he_std = lambda n: math.sqrt(1.3 * 2 / n) * TRUNC_STD  # noqa: E731
  he_bound = lambda n: 2 * math.sqrt(1.3 * 2 / n)  # noqa: E731
  assert check(p, trunk_conv, he_std, he_bound) > 90
  check(p, lambda k: k == "Logits/kernel", he_std, he_bound)
  check(p, lambda k: k == "AuxLogits/conv0/conv/kernel", he_std, he_bound)
  # The aux head's 5x5 conv: trunc_normal(0.01); the aux logits: trunc_normal(0.001).
  check(p, lambda k: k == "AuxLogits/conv1/conv/kernel", lambda n: 0.01 * TRUNC_STD, lambda n: 0.02)
  check(p, lambda k: k == "AuxLogits/fc/kernel", lambda n: 0.001 * TRUNC_STD, lambda n: 0.002)
  assert all((b == 0).all() for b in biases(p, lambda k: True).values())
  if name == "inception_v2":  # the aux head's conv1 has a bias (no BN-auxiliary): zero
    assert "AuxLogits/conv1/conv/bias" in p


def test_he_std_is_sqrt_2_over_fan_in():
  # slim's 1.3 compensates the truncation: the samples' std is within 0.3% of He's sqrt(2 / n).
  assert abs(SLIM_HE - 1) < 0.003
  k = params("inception_v3", "slim")["Mixed_6b/branch7x7_2/conv/kernel"]  # 1x7, 64 -> 64
  assert abs(k.std() / math.sqrt(2 / fan_in(k)) - 1) < 0.02


# ---- torchvision and flax -----------------------------------------------------------------------


@pytest.mark.parametrize("name,std", [("inception_v3", 0.1), ("googlenet_bn", 0.01)])
def test_torchvision(name, std):
  p = params(name, "torchvision")
  aux_fc = "AuxLogits/fc/kernel"
  # trunc_normal_(std, a=-2, b=2): the bounds are 20+ stds away, a plain normal of that std.
  check(p, lambda k: k != aux_fc, lambda n: std)
  if name == "inception_v3":
    check(p, lambda k: k == aux_fc, lambda n: 0.001)
    # conv1.stddev = 0.01 is set on the BasicConv2d wrapper, which the init loop never reads.
    check(p, lambda k: k == "AuxLogits/conv1/conv/kernel", lambda n: 0.1)
  # Linear biases: PyTorch's default uniform(+-1 / sqrt(fan_in)).
  b = p["Logits/bias"]
  n = p["Logits/kernel"].shape[0]
  assert np.abs(b).max() <= 1 / math.sqrt(n) and np.abs(b).max() > 0.9 / math.sqrt(n)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_flax_defaults(name):
  p = params(name, "flax")
  check(p, lambda k: True, lambda n: math.sqrt(1 / n), lambda n: 2 * math.sqrt(1 / n) / TRUNC_STD)
  assert all((b == 0).all() for b in biases(p, lambda k: True).values())


# ---- slim inception_v2.py: BN-Inception ----------------------------------------------------------


def test_bn_inception_is_slims_inception_v2():
  p = params("bn_inception", "slim")
  he = lambda n: SLIM_HE * math.sqrt(2 / n)  # noqa: E731
  reduce = lambda k: k.endswith(("branch3x3_1/conv/kernel", "branch3x3dbl_1/conv/kernel"))  # noqa: E731
  proj = lambda k: k.endswith("branch_pool/conv/kernel") or k.startswith("Conv2d_2b_1x1")  # noqa: E731
  stem = lambda k: k.startswith("Conv2d_1a_7x7")  # noqa: E731
  other = lambda k: not (reduce(k) or proj(k) or stem(k))  # noqa: E731
  assert check(p, reduce, lambda n: 0.09 * TRUNC_STD, lambda n: 0.18) == 20
  assert check(p, proj, lambda n: 0.1 * TRUNC_STD, lambda n: 0.2) == 9
  assert check(p, stem, lambda n: TRUNC_STD, lambda n: 2.0) == 2  # depthwise and pointwise
  assert check(p, other, he) > 20  # the 3x3s, the 1x1 branches, Conv2d_2c_3x3, the logits
  assert all((b == 0).all() for b in biases(p, lambda k: True).values())
  with pytest.raises(ValueError, match="torchvision has no BN-Inception"):
    models.create("bn_inception", initializer="torchvision")


# ---- Defaults and errors ------------------------------------------------------------------------


def test_each_network_defaults_to_its_reference():
  # Other test modules register a stand-in "tiny" network in this process: only the real ones.
  defaults = {name: models.create(name).initializer for name in models.NAMES if name != "tiny"}
  assert defaults["googlenet"] == "bvlc"
  assert all(
    defaults[n] == "slim" for n in ("googlenet_bn", "bn_inception", "inception_v2", "inception_v3")
  )
  # The default differs from Flax's: the first conv of v3 is He-scaled, not lecun.
  ref, flax_ = params("inception_v3", "slim"), params("inception_v3", "flax")
  k = "Conv2d_2b_3x3/conv/kernel"
  assert abs(ref[k].std() / flax_[k].std() - math.sqrt(2)) < 0.1


def test_invalid_initializer():
  with pytest.raises(ValueError, match="initializer must be one of"):
    models.create("inception_v3", initializer="xavier")
  with pytest.raises(ValueError, match="bvlc.*googlenet only"):
    models.create("inception_v3", initializer="bvlc")
  with pytest.raises(ValueError, match="unknown network family"):
    initializers.scheme("slim", "resnet")
