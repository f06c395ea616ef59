"""inception_jax.fid without torch: the resize, the statistics, the distance and the score against
closed forms, the sharded features on 8 simulated devices against one device, the command line on
saved statistics, and bad input. (Parity with pytorch-fid itself: tests/test_fid_parity.py.)"""

import json
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from helpers.training import ROOT, subprocess_env

from inception_jax import fid, models


# ---- resize --------------------------------------------------------------------------------------
def test_resize_weights_are_torch_bilinear_without_antialiasing():
  # Upsampling 2 -> 4 (align_corners=False): [a, 3a/4 + b/4, a/4 + 3b/4, b] (edges clamp).
  np.testing.assert_allclose(
    fid.resize_weights(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], atol=1e-7
  )
  # Downsampling 4 -> 2 samples at 0.5 and 2.5: two-pixel averages, no wider (antialiased) filter.
  np.testing.assert_allclose(
    fid.resize_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], atol=1e-7
  )
  np.testing.assert_array_equal(fid.resize_weights(299, 299), np.eye(299, dtype=np.float32))
  for n in (17, 300, 512):
    np.testing.assert_allclose(fid.resize_weights(n).sum(axis=1), 1, atol=1e-6)


def test_host_resize_equals_the_in_graph_resize():
  x = np.random.default_rng(0).uniform(0, 1, (2, 40, 350, 3)).astype(np.float32)
  ours = np.asarray(fid.resize(jnp.asarray(x), "bilinear"))
  assert ours.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(np.stack([fid.resize_numpy(i) for i in x]), ours, atol=2e-6)
  with pytest.raises(ValueError, match="resize='none' needs 299x299"):
    fid.resize(jnp.asarray(x), "none")
  with pytest.raises(ValueError, match="resize must be one of"):
    fid.resize(jnp.asarray(x), "bicubic")


# ---- statistics, distance, score -----------------------------------------------------------------
def test_statistics_are_float64_mean_and_covariance():
  a = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32)
  mu, sigma = fid.statistics(a)
  assert mu.dtype == sigma.dtype == np.float64
  centred = a.astype(np.float64) - a.astype(np.float64).mean(0)
  np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-12)
  with pytest.raises(ValueError, match="at least 2"):
    fid.statistics(a[:1])
  with pytest.raises(ValueError, match=r"\[N, features\]"):
    fid.statistics(a[0])


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
  rng = np.random.default_rng(2)
  m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
  v1, v2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
  expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  d = fid.frechet_distance(m1, np.diag(v1), m2, np.diag(v2))
  assert d == pytest.approx(expected, rel=1e-10)
  assert abs(fid.frechet_distance(m1, np.diag(v1), m1, np.diag(v1))) < 1e-10


def test_frechet_distance_fallbacks(monkeypatch):
  """Non-finite root: retried with 1e-6 on the diagonals (pytorch-fid's fallback). Imaginary
  diagonal above 1e-3: pytorch-fid raises; here the same fallback is tried first, and a root that
  stays imaginary raises."""
  import scipy.linalg

  real_sqrtm = scipy.linalg.sqrtm
  sigma = np.diag([1.0, 4.0])
  calls = []

  def nan_first(a):
    calls.append(a.copy())
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(scipy.linalg, "sqrtm", nan_first)
  with pytest.warns(RuntimeWarning, match="singular product"):
    d = fid.frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma)
  np.testing.assert_allclose(calls[1], (sigma + 1e-6 * np.eye(2)) @ (sigma + 1e-6 * np.eye(2)))
  assert abs(d) < 1e-5

  def imaginary(extra):
    def sqrtm(a):
      return real_sqrtm(a) + 1j * extra(len(calls.append(0) or calls)) * np.eye(2)

    return sqrtm

  calls.clear()
  monkeypatch.setattr(scipy.linalg, "sqrtm", imaginary(lambda n: 1e-2 if n == 1 else 1e-4))
  with pytest.warns(RuntimeWarning, match="pytorch-fid raises here"):
    assert abs(fid.frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma)) < 1e-5
  calls.clear()
  monkeypatch.setattr(scipy.linalg, "sqrtm", imaginary(lambda n: 1e-2))
  with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="imaginary component"):
    fid.frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma)


def test_statistics_of_another_dimension_are_refused():
  with pytest.raises(ValueError, match="different dimensions: 768 and 2048"):
    fid.frechet_distance(np.zeros(768), np.eye(768), np.zeros(2048), np.eye(2048))
  with pytest.raises(ValueError, match="do not fit together"):
    fid.frechet_distance(np.zeros(4), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_closed_forms():
  # Each part: k confident predictions of k different classes -> IS = k exactly.
  k, splits = 7, 3
  logits = np.full((k * splits, 1008), -60.0)
  logits[np.arange(k * splits), np.tile(np.arange(k), splits)] = 60.0
  mean, std = fid.inception_score(logits, splits=splits)
  assert mean == pytest.approx(k, rel=1e-9) and std < 1e-9
  # Identical predictions carry no information: IS = 1.
  same = np.tile(np.random.default_rng(3).standard_normal(1008), (20, 1))
  assert fid.inception_score(same, splits=10)[0] == pytest.approx(1.0, abs=1e-9)
  # Parts are [i * N // splits, (i + 1) * N // splits): with N = 5, splits = 2, sizes 2 and 3.
  five = np.full((5, 4), -60.0)
  five[np.arange(5), [0, 1, 0, 1, 2]] = 60.0
  mean, std = fid.inception_score(five, splits=2)
  assert (mean, std) == pytest.approx((2.5, 0.5), rel=1e-9)
  with pytest.raises(ValueError, match="cannot be split in 10 parts"):
    fid.inception_score(logits[:5], splits=10)


# ---- bad input -----------------------------------------------------------------------------------
def test_image_arrays_are_checked_before_compiling():
  with pytest.raises(ValueError, match="grayscale: repeat the channel"):
    fid.check_images(np.zeros((2, 32, 32), np.uint8))
  with pytest.raises(ValueError, match="must lie in \\[0, 1\\].*divide 0..255 values by 255"):
    fid.check_images(np.full((1, 8, 8, 3), 255.0, np.float32))
  with pytest.raises(ValueError, match="uint8 .* or float"):
    fid.check_images(np.zeros((1, 8, 8, 3), np.int32))
  with pytest.raises(ValueError, match="empty"):
    fid.check_images(np.zeros((0, 8, 8, 3), np.uint8))


def test_folder_without_images_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("no images here")
  (tmp_path / "photo.JPEG").write_bytes(b"")
  with pytest.raises(ValueError, match="holds no images.*photo.JPEG .*rename them"):
    fid.folder_features(tmp_path, extractor=None)
  with pytest.raises(ValueError, match="not a folder of images or an .npz"):
    fid.folder_features(tmp_path / "missing", extractor=None)


def test_grayscale_files_are_converted_and_counted_unreadable_ones_refused_or_skipped(tmp_path):
  from PIL import Image

  rng = np.random.default_rng(4)
  Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), "L").save(tmp_path / "a.png")
  Image.fromarray(rng.integers(0, 256, (25, 20, 3), dtype=np.uint8)).save(tmp_path / "b.png")
  (tmp_path / "c.png").write_bytes(b"not a png")
  files, ignored = fid.list_images(tmp_path)
  assert [f.name for f in files] == ["a.png", "b.png", "c.png"] and ignored == []
  report = fid.FolderReport()
  with pytest.raises(ValueError, match="cannot read image .*c.png.*--skip_unreadable"):
    list(fid.folder_batches(files, 8, report))
  report = fid.FolderReport()
  (batch,) = list(fid.folder_batches(files, 8, report, skip_unreadable=True))
  assert batch.shape == (2, 299, 299, 3) and batch.dtype == np.float32
  # gray -> equal channels, to float32 rounding (1 ulp apart at some pixels on an AMD EPYC)
  np.testing.assert_allclose(batch[0, ..., 0], batch[0, ..., 1], rtol=0, atol=1e-6)
  summary = report.summary()
  assert summary["color_modes_read"] == {"L": 1, "RGB": 1} and summary["converted_to_rgb"] == 1
  assert [p.endswith("c.png") for p in summary["unreadable_skipped"]] == [True]
  assert summary["image_sizes_hxw"]["distinct"] == 2
  assert (summary["image_sizes_hxw"]["smallest"], summary["image_sizes_hxw"]["largest"]) == (
    "25x20",
    "20x30",
  )
  with pytest.raises(ValueError, match="needs 299x299 images"):
    list(fid.folder_batches(files[1:2], 8, fid.FolderReport(), resize="none"))


def test_statistics_files_are_checked(tmp_path):
  np.savez(tmp_path / "dims768.npz", mu=np.zeros(768), sigma=np.eye(768))
  with pytest.raises(ValueError, match="dimension 768, not the 2048 pool3"):
    fid.load_statistics(tmp_path / "dims768.npz")
  np.savez(tmp_path / "nomu.npz", sigma=np.eye(2048))
  with pytest.raises(ValueError, match="has no mu array"):
    fid.load_statistics(tmp_path / "nomu.npz")
  (tmp_path / "junk.npz").write_bytes(b"junk")
  with pytest.raises(ValueError, match="cannot be read as an .npz"):
    fid.load_statistics(tmp_path / "junk.npz")


def _stats_file(path, seed, n=None, shift=0.0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((2, fid.FEATURE_DIM))
  mu = a[0] * 0.1 + shift
  sigma = np.diag(np.exp(0.2 * a[1]))
  extra = {} if n is None else {"n": n}
  np.savez(path, mu=mu, sigma=sigma, **extra)
  return mu, sigma


def test_command_line_on_saved_statistics(tmp_path):
  """Two .npz files need no network; the card is printed and written, N < 2048 is flagged."""
  m1, s1 = _stats_file(tmp_path / "a.npz", 0, n=500)
  m2, s2 = _stats_file(tmp_path / "b.npz", 1, shift=0.05)
  card_path = tmp_path / "card.json"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "inception_jax.fid",
      f"--card={card_path}",
      str(tmp_path / "a.npz"),
      str(tmp_path / "b.npz"),
    ],
    env=subprocess_env(),
    check=False,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2)
  card = json.loads(card_path.read_text())
  assert card["fid"] == pytest.approx(expected, rel=1e-9)
  assert f"FID: {card['fid']}" in proc.stdout and "protocol card" in proc.stdout
  assert card["sides"][0]["mu_sha256"] == fid.array_sha256(m1)
  assert [s["n"] for s in card["sides"]] == [500, None]
  assert "N=500 < 2048" in proc.stderr and "biased" in card["warnings"][0]
  bad = subprocess.run(
    [sys.executable, "-m", "inception_jax.fid", str(tmp_path / "a.npz"), str(tmp_path)],
    env=subprocess_env(),
    check=False,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode == 2 and "--weights=" in bad.stderr


# ---- the network, sharded ------------------------------------------------------------------------
def test_fid_network_differs_from_the_classifier_only_where_pytorch_fid_patches_it():
  fid_net, v3 = models.create("inception_v3_fid"), models.create("inception_v3")
  assert (fid_net.num_classes, fid_net.aux_logits, fid_net.mixed_7c_pool) == (1008, False, "max")
  assert (v3.mixed_7c_pool, fid_net.pool_count_include_pad) == ("avg", False)
  differs = {
    f for f in models.valid_overrides("inception_v3") if getattr(fid_net, f) != getattr(v3, f)
  }
  assert differs == {"num_classes", "aux_logits", "mixed_7c_pool"}
  with pytest.raises(ValueError, match="mixed_7c_pool must be one of"):
    models.create("inception_v3_fid", mixed_7c_pool="min")


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from inception_jax import fid, models
    from inception_jax.training import parallel
    model = models.create("inception_v3_fid")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 299, 299, 3),
                                                                             np.float32)))
    rng = np.random.default_rng(0)
    def fill(path, leaf):
      name = path[-1].key
      if name == "kernel":
        fan_in = np.prod(leaf.shape[:-1])
        return rng.normal(size=leaf.shape).astype(np.float32) * np.sqrt(2 / fan_in)
      if name in ("scale", "var"):
        return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
      return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
    variables = jax.tree_util.tree_map_with_path(fill, shapes)
    images = rng.integers(0, 256, (13, 40, 50, 3), dtype=np.uint8)
    out = {}
    for n in (8, 1):
      mesh = parallel.make_mesh(jax.devices()[:n])
      ex = fid.FeatureExtractor(model, variables, batch_size=6, mesh=mesh)
      f = ex.run(images)
      mu, sigma = fid.statistics(f["pool3"])
      out[n] = dict(global_batch=ex.global_batch, n=len(f["pool3"]), mu=mu.tolist(),
                    sigma_diag=np.diag(sigma).tolist(), sigma=float(np.abs(sigma).sum()),
                    pool3=f["pool3"].tolist(), logits=f["logits_unbiased"][:, :5].tolist())
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_statistics_on_8_devices_equal_one_device():
  proc = subprocess.run(
    [sys.executable, "-c", SHARDED_SCRIPT],
    env=subprocess_env(8),
    cwd=ROOT,
    check=False,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-5000:]
  res = json.loads(proc.stdout.split("RESULT", 1)[1])
  eight, one = res["8"], res["1"]
  # batch_size 6 is rounded up to 8 on 8 devices; 13 images: 8 + 5 (3 masked); 6 + 6 + 1 on one.
  assert (eight["global_batch"], one["global_batch"]) == (8, 6)
  assert eight["n"] == one["n"] == 13
  a8, a1 = np.array(eight["pool3"]), np.array(one["pool3"])
  assert np.abs(a1[0] - a1[1]).max() > 1e-3 * np.abs(a1).max()  # features depend on the image
  np.testing.assert_allclose(a8, a1, rtol=0, atol=1e-5 * np.abs(a1).max())
  np.testing.assert_allclose(eight["mu"], one["mu"], rtol=0, atol=1e-5 * np.abs(one["mu"]).max())
  np.testing.assert_allclose(
    eight["sigma_diag"], one["sigma_diag"], rtol=0, atol=1e-4 * np.abs(one["sigma_diag"]).max()
  )
  assert eight["sigma"] == pytest.approx(one["sigma"], rel=1e-5)
  np.testing.assert_allclose(
    eight["logits"], one["logits"], rtol=0, atol=1e-5 * np.abs(one["logits"]).max()
  )
