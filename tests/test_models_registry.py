"""`models.register`: a network added under its own name is created, sized and listed like the
built-in ones, without replacing any of the library's functions; and options are checked once,
from the networks' typed fields, whoever constructs them."""

import flax.linen as nn
import pytest
from helpers.training import TinyNet, register_tiny_model, tiny

from inception_jax import models
from inception_jax.models import common


def test_registered_model_is_created_by_name():
  create, min_image_size = models.create, models.min_image_size
  register_tiny_model()
  register_tiny_model()  # the same factory again: a no-op
  assert "tiny" in models.NAMES and models.NAMES[: len(models._PRESETS)] == tuple(models._PRESETS)
  assert models.create is create and models.min_image_size is min_image_size
  net = models.create("tiny", num_classes=3, width=4)
  assert isinstance(net, TinyNet) and (net.num_classes, net.width) == (3, 4)
  assert models.create("tiny").num_classes == 1000
  assert models.min_image_size("tiny") == models.default_image_size("tiny") == 8


def test_a_taken_name_is_refused():
  register_tiny_model()
  with pytest.raises(ValueError, match="'tiny' is already taken"):
    models.register("tiny", lambda **kw: tiny(**kw), min_image_size=8)
  with pytest.raises(ValueError, match="'googlenet' is already taken"):
    models.register("googlenet", tiny, min_image_size=8)


def test_options_are_checked_when_a_network_is_constructed():
  """Directly constructed networks are checked too, with the message models.create gives."""
  with pytest.raises(ValueError, match=r"GoogLeNet: norm must be one of \('lrn', 'bn'\)"):
    models.GoogLeNet(norm="layer")
  with pytest.raises(ValueError, match=r"InceptionV3: receptive_field must be one of"):
    models.InceptionV3(receptive_field=224)
  with pytest.raises(ValueError, match="BNInception: width_multiplier must be > 0"):
    models.BNInception(width_multiplier=0.0)
  with pytest.raises(ValueError, match="num_classes must be a positive int"):
    models.InceptionV3FID(num_classes=0)
  assert common.literal_fields(models.InceptionV3FID)["mixed_7c_pool"] == ("avg", "max")
  assert models.InceptionV3FID().mixed_7c_pool == "max"


def test_literal_fields_of_a_plain_module():
  class Plain(nn.Module):
    width: int = 4

  assert common.literal_fields(Plain) == {}
  common.check_options(Plain())
