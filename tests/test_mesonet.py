"""The MesoNet port against the original Keras models, on the authors' released weights and test images.

The expected values are the Keras (TensorFlow 2.21.0) outputs printed by
``benchmarks/mesonet_keras_reference.py ../shared/reference/mesonet``: sigmoid = P(real), for
df00204, df01254, real00240, real00772, after PIL RGB, resize to 256 nearest when needed, / 255.
The MesoNet files are Apache-2.0 (see ../shared/reference/mesonet/NOTICE); they are read in place.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfbench.detectors import get_detector
from dfbench.video.image import read_image

MESONET = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mesonet"
IMAGES = ("df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "real/real00772.jpg")
KERAS_P_REAL = {
    ("meso4", "Meso4_DF.h5"): (0.041412, 0.048694, 0.989748, 0.997702),
    ("meso4", "Meso4_F2F.h5"): (0.831237, 0.641100, 0.881023, 0.952439),
    ("mesoinception4", "MesoInception_DF.h5"): (0.026218, 0.000952, 1.000000, 1.000000),
    ("mesoinception4", "MesoInception_F2F.h5"): (0.998743, 0.999997, 1.000000, 0.990830),
}

pytestmark = pytest.mark.skipif(not MESONET.is_dir(), reason="needs ../shared/reference/mesonet beside the checkout")


def _batch() -> torch.Tensor:
    from dfbench.faces.crop import resize_square

    images = [resize_square(read_image(MESONET / "test_images" / rel), 256, "pil_nearest") for rel in IMAGES]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("key,weights", list(KERAS_P_REAL), ids=lambda x: str(x))
def test_port_matches_keras_to_1e4(key: str, weights: str):
    adapter = get_detector(key)
    adapter.load(MESONET / "weights" / weights, device="cpu", precision="fp32")
    p_fake = adapter.predict(_batch()).numpy()
    np.testing.assert_allclose(1 - p_fake, KERAS_P_REAL[(key, weights)], atol=1e-4)


def test_predict_cli_prints_one_p_fake_per_image():
    files = [str(MESONET / "test_images" / rel) for rel in IMAGES]
    out = subprocess.run([sys.executable, "-m", "dfbench", "predict", "--detector", "meso4", "--weights",
                          str(MESONET / "weights" / "Meso4_DF.h5"), "--faces", "none", "--format", "csv",
                          "--precision", "fp32", *files], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split(",") for line in out.stdout.strip().splitlines()[1:]]
    assert [Path(r[0]).name for r in rows] == [Path(f).name for f in files]
    p_fake = [float(r[2]) for r in rows]
    np.testing.assert_allclose(p_fake, [1 - v for v in KERAS_P_REAL[("meso4", "Meso4_DF.h5")]], atol=1e-4)
