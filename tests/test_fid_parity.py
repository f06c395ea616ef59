"""inception_jax.fid against pytorch-fid 0.3.0 itself, without its weight download.

The peer is pytorch-fid's FID network assembled as `pytorch_fid.inception.fid_inception_v3` does
(torchvision Inception3 with 1008 classes and no aux head, its Mixed_5b..7c replaced by
pytorch-fid's FIDInceptionA/C/E_1/E_2 modules), randomly initialised, its BatchNorm statistics
measured on real photographs (../shared/data/imagenet-sample-500.tar) and then perturbed. Its
state dict, saved to a file, is what `fid.from_pytorch_fid` converts; `fid_inception_v3` is
monkeypatched to return the peer so that pytorch-fid's own InceptionV3 wrapper and
calculate_fid_given_paths run on it. Under CI=true a missing torch / torchvision / pytorch-fid /
shared data fails instead of skipping.
"""

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from test_convert import require

from inception_jax import fid

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_TAR = SHARED / "imagenet-sample-500.tar"
RTOL_ACTIVATIONS = 1e-4  # of the largest activation
RTOL_DISTANCE = 1e-6
RTOL_FID = 1e-3
N_PER_FOLDER = 40


def photographs(n, offset=0):
  """n real photographs as uint8 RGB arrays of their own sizes (PIL)."""
  if not IMAGENET_TAR.exists():
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"shared test data missing: {IMAGENET_TAR}")
    pytest.skip(f"shared test data missing: {IMAGENET_TAR}")
  from PIL import Image

  out = []
  with tarfile.open(IMAGENET_TAR) as tar:
    members = sorted(
      (m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith((".jpeg", ".jpg"))),
      key=lambda m: m.name,
    )
    for m in members[offset : offset + n]:
      with Image.open(io.BytesIO(tar.extractfile(m).read())) as img:
        out.append(np.asarray(img.convert("RGB")))
  return out


def center_crop(img, h, w):
  """A crop of h x w (the photo scaled up first with PIL if it is smaller)."""
  from PIL import Image

  H, W = img.shape[:2]
  if H < h or W < w:
    s = max(h / H, w / W)
    img = np.asarray(Image.fromarray(img).resize((int(np.ceil(W * s)), int(np.ceil(H * s)))))
    H, W = img.shape[:2]
  top, left = (H - h) // 2, (W - w) // 2
  return img[top : top + h, left : left + w]


def shrink(img, h, w):
  from PIL import Image

  return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def torch_input(batch_uint8):
  """NHWC uint8 -> NCHW float in [0, 1], as torchvision's ToTensor."""
  torch = require("torch")
  return torch.from_numpy(batch_uint8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
  """(torch FID net, path of its state dict, our model, our variables)."""
  torch = require("torch")
  torchvision = require("torchvision")
  pfi = require("pytorch_fid.inception")
  torch.manual_seed(0)
  net = torchvision.models.inception_v3(
    weights=None, num_classes=1008, aux_logits=False, init_weights=True
  )
  # Exactly fid_inception_v3's patches (pytorch_fid/inception.py), without load_state_dict.
  net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = pfi.FIDInceptionE_1(1280)
  net.Mixed_7c = pfi.FIDInceptionE_2(2048)
  # BN statistics of real photographs (one cumulative batch), then perturbed.
  g = torch.Generator().manual_seed(1)
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  calib = np.stack([center_crop(p, 299, 299) for p in photographs(12, offset=300)])
  with torch.no_grad():
    for bn in bns:
      bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
      bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=g))
      bn.reset_running_stats()
      bn.momentum = None
    net.train()
    net(2 * torch_input(calib) - 1)
    for bn in bns:
      bn.running_mean.add_(0.2 * bn.running_var.sqrt() * torch.randn(bn.num_features, generator=g))
      bn.running_var.mul_(torch.exp(0.3 * torch.randn(bn.num_features, generator=g)))
      bn.momentum = 0.1
  net.eval()
  path = tmp_path_factory.mktemp("fid_peer") / "pt_inception-random.pth"
  torch.save(net.state_dict(), path)
  model, variables = fid.from_pytorch_fid(str(path))
  return net, path, model, variables


@pytest.fixture
def pytorch_fid_on_peer(peer, monkeypatch):
  """pytorch-fid's modules with fid_inception_v3 returning the peer (nothing downloads)."""
  pfi = require("pytorch_fid.inception")
  monkeypatch.setattr(pfi, "fid_inception_v3", lambda: peer[0])
  monkeypatch.setattr(pfi, "load_state_dict_from_url", _no_download)
  return pfi


def _no_download(*args, **kwargs):
  raise AssertionError("pytorch-fid tried to download its weights")


def test_converted_network_is_the_fid_variant(peer):
  _, _, model, variables = peer
  assert (model.num_classes, model.aux_logits, model.transform_input) == (1008, False, False)
  assert (model.pool_count_include_pad, model.mixed_7c_pool) == (False, "max")
  assert variables["params"]["Logits"]["kernel"].shape == (2048, 1008)


@pytest.mark.parametrize("size", [(341, 397), (150, 200)], ids=["downsample", "upsample"])
def test_pool3_and_logits_match_pytorch_fid(peer, pytorch_fid_on_peer, size):
  torch = require("torch")
  net, _, model, variables = peer
  offset = 0 if size[0] > 299 else 8
  photos = photographs(6, offset)
  batch = np.stack([center_crop(p, *size) if size[0] > 299 else shrink(p, *size) for p in photos])
  wrapper = pytorch_fid_on_peer.InceptionV3([3]).eval()
  assert wrapper.blocks[2][0] is net.Mixed_5b  # the wrapper really runs the peer
  x = torch_input(batch)
  with torch.no_grad():
    theirs = wrapper(x)[0].squeeze(3).squeeze(2).numpy()
    resized = torch.nn.functional.interpolate(
      x, size=(299, 299), mode="bilinear", align_corners=False
    )
    their_logits = net(2 * resized - 1).numpy()
  # uint8 input, and the batch split 4 + 2 (a padded, masked last batch).
  out = fid.features(batch, model, variables, batch_size=4)
  for what, ours, ref in (
    ("pool3", out["pool3"], theirs),
    ("logits", out["logits"], their_logits),
    ("logits without bias", out["logits_unbiased"], their_logits - net.fc.bias.detach().numpy()),
  ):
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    scale = np.abs(ref).max()
    err = np.abs(ours - ref).max() / scale
    print(f"{size} {what}: max |ours - pytorch-fid| / max = {err:.2e} (max {scale:.3g})")
    assert err <= RTOL_ACTIVATIONS, (what, err)
  assert np.abs(theirs[0] - theirs[1]).max() > 1e-2 * np.abs(theirs).max()  # looks at the image
  # float input in [0, 1] gives the same features as the uint8 it came from.
  np.testing.assert_allclose(
    fid.activations(batch.astype(np.float32) / 255, model, variables, batch_size=6),
    out["pool3"],
    rtol=0,
    atol=1e-5 * scale,
  )


def test_antialiased_resize_option_matches_torch_antialias():
  """resize="bilinear_antialias" is torch's F.interpolate(antialias=True) (an explicit option;
  pytorch-fid itself does not antialias)."""
  torch = require("torch")
  import jax.numpy as jnp

  photo = center_crop(photographs(1, 20)[0], 341, 397)[None].astype(np.float32) / 255
  with torch.no_grad():
    ref = (
      torch.nn.functional.interpolate(
        torch.from_numpy(photo.transpose(0, 3, 1, 2)),
        size=(299, 299),
        mode="bilinear",
        align_corners=False,
        antialias=True,
      )
      .numpy()
      .transpose(0, 2, 3, 1)
    )
    plain = (
      torch.nn.functional.interpolate(
        torch.from_numpy(photo.transpose(0, 3, 1, 2)),
        size=(299, 299),
        mode="bilinear",
        align_corners=False,
      )
      .numpy()
      .transpose(0, 2, 3, 1)
    )
  ours = np.asarray(fid.resize(jnp.asarray(photo), "bilinear_antialias"))
  ours_plain = np.asarray(fid.resize(jnp.asarray(photo), "bilinear"))
  print("antialias max err", np.abs(ours - ref).max(), "plain", np.abs(ours_plain - plain).max())
  np.testing.assert_allclose(ours_plain, plain, rtol=0, atol=1e-5)
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
  assert np.abs(ref - plain).max() > 1e-2  # the two resizes differ on this photograph


def test_frechet_distance_matches_pytorch_fid():
  fs = require("pytorch_fid.fid_score")
  rng = np.random.default_rng(0)
  d = 64
  stats = []
  for shift in (0.0, 0.3):
    a = rng.standard_normal((4 * d, d)) @ (np.eye(d) + 0.02 * rng.standard_normal((d, d))) + shift
    stats += list(fid.statistics(a))
  for s in stats[1::2]:
    assert np.linalg.cond(s) < 100  # well conditioned
  ours = fid.frechet_distance(*stats)
  theirs = float(fs.calculate_frechet_distance(*stats))
  print(f"frechet_distance: ours {ours!r}, pytorch-fid {theirs!r}")
  assert abs(ours - theirs) <= RTOL_DISTANCE * abs(theirs)
  assert theirs > 1.0


def test_whole_fid_of_two_folders_matches_calculate_fid_given_paths(
  peer, pytorch_fid_on_peer, tmp_path, capsys
):
  fs = require("pytorch_fid.fid_score")
  from PIL import Image

  photos = photographs(2 * N_PER_FOLDER, offset=100)
  a, b = tmp_path / "a", tmp_path / "b"
  a.mkdir()
  b.mkdir()
  for i, p in enumerate(photos[:N_PER_FOLDER]):  # 320x360: downsampled to 299
    Image.fromarray(center_crop(p, 320, 360)).save(a / f"{i:03d}.png")
  for i, p in enumerate(photos[N_PER_FOLDER:]):  # 160x140: upsampled
    Image.fromarray(shrink(p, 160, 140)).save(b / f"{i:03d}.png")
  from pytorch_fid.inception import InceptionV3

  # calculate_fid_given_paths, step by step: its statistics of each folder, then its distance.
  model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to("cpu")
  their_stats = []
  for folder in (a, b):
    their_stats += fs.compute_statistics_of_path(str(folder), model, N_PER_FOLDER, 2048, "cpu", 0)
  try:
    theirs = float(fs.calculate_frechet_distance(*their_stats))
  except ValueError as e:
    # With 40 images the covariances have rank 39 and scipy's sqrtm of their product is
    # inaccurate; on some CPUs pytorch-fid then raises ("Imaginary component 0.0146" on an AMD EPYC,
    # 2026-12-02) where ours first retries with 1e-6 on the diagonals (fid.frechet_distance). The
    # folder pipeline is then compared through its statistics: our distance of theirs.
    assert "Imaginary component" in str(e), e
    theirs = fid.frechet_distance(*their_stats)
  card_path = tmp_path / "card.json"
  card = fid.run([str(a), str(b)], str(peer[1]), batch_size=16, card_path=str(card_path))
  ours = card["fid"]
  print(
    f"FID of two folders of {N_PER_FOLDER}: ours {ours!r}, pytorch-fid {theirs!r}, "
    f"relative {abs(ours - theirs) / theirs:.2e}"
  )
  assert abs(ours - theirs) <= RTOL_FID * abs(theirs)
  # The card: what the score depends on.
  saved = json.loads(card_path.read_text())
  assert saved["fid"] == ours
  assert saved["weights"]["sha256"] == fid.file_sha256(peer[1])
  assert saved["preprocessing"]["resize"] == "bilinear" and not saved["preprocessing"]["antialias"]
  assert [s["n"] for s in saved["sides"]] == [N_PER_FOLDER, N_PER_FOLDER]
  assert saved["sides"][0]["image_sizes_hxw"]["most_common"] == {"320x360": N_PER_FOLDER}
  assert saved["sides"][1]["image_sizes_hxw"]["most_common"] == {"160x140": N_PER_FOLDER}
  assert all(len(s["mu_sha256"]) == 64 for s in saved["sides"])
  assert {"jax", "numpy", "scipy", "python"} <= set(saved["software"])
  # N = 40 < 2048: both sides are flagged as biased.
  assert len(saved["warnings"]) == 2 and all("biased" in w for w in saved["warnings"])
