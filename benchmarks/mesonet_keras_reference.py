"""Reference outputs of the original Keras MesoNet on the authors' test images (needs TensorFlow).

Run in an environment with TensorFlow (it is not a dfbench dependency):

    python benchmarks/mesonet_keras_reference.py ../shared/reference/mesonet

It rebuilds Meso4 and MesoInception4 exactly as the authors' ``classifiers.py`` describes, loads their
``.h5`` weights with Keras, applies the original preprocessing (PIL RGB, resize to 256 x 256 nearest
when needed, / 255) and prints the sigmoid outputs (P(real)) per image. tests/test_mesonet.py keeps the
printed numbers and requires the PyTorch port to match them to 1e-4.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = ("df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "real/real00772.jpg")
WEIGHTS = {"meso4": ("Meso4_DF.h5", "Meso4_F2F.h5"), "mesoinception4": ("MesoInception_DF.h5", "MesoInception_F2F.h5")}


def keras_mesonet(inception: bool):
    from tensorflow import keras
    from tensorflow.keras import layers

    def conv(x, n, k, dilation=1):
        return layers.Conv2D(n, (k, k), dilation_rate=dilation, padding="same", activation="relu")(x)

    def inception_layer(x, a, b, c, d):
        branches = [conv(x, a, 1), conv(conv(x, b, 1), b, 3), conv(conv(x, c, 1), c, 3, 2),
                    conv(conv(x, d, 1), d, 3, 3)]
        return layers.Concatenate(axis=-1)(branches)

    inp = keras.Input(shape=(256, 256, 3))
    if inception:
        x = layers.MaxPooling2D((2, 2), padding="same")(layers.BatchNormalization()(inception_layer(inp, 1, 4, 4, 2)))
        x = layers.MaxPooling2D((2, 2), padding="same")(layers.BatchNormalization()(inception_layer(x, 2, 4, 4, 2)))
    else:
        x = layers.MaxPooling2D((2, 2), padding="same")(layers.BatchNormalization()(conv(inp, 8, 3)))
        x = layers.MaxPooling2D((2, 2), padding="same")(layers.BatchNormalization()(conv(x, 8, 5)))
    x = layers.MaxPooling2D((2, 2), padding="same")(layers.BatchNormalization()(conv(x, 16, 5)))
    x = layers.MaxPooling2D((4, 4), padding="same")(layers.BatchNormalization()(conv(x, 16, 5)))
    y = layers.Dropout(0.5)(layers.Flatten()(x))
    y = layers.LeakyReLU(0.1)(layers.Dense(16)(y))
    y = layers.Dense(1, activation="sigmoid")(layers.Dropout(0.5)(y))
    return keras.Model(inp, y)


def load_images(root: Path) -> np.ndarray:
    batch = []
    for rel in IMAGES:
        image = Image.open(root / "test_images" / rel).convert("RGB")
        if image.size != (256, 256):
            image = image.resize((256, 256), Image.Resampling.NEAREST)
        batch.append(np.asarray(image, dtype=np.float32) / 255.0)
    return np.stack(batch)


def main(root: Path) -> None:
    import tensorflow as tf

    images = load_images(root)
    print(f"# TensorFlow {tf.__version__}")
    for key, files in WEIGHTS.items():
        for name in files:
            model = keras_mesonet(inception=key == "mesoinception4")
            model.load_weights(str(root / "weights" / name))
            out = model.predict(images, verbose=0)[:, 0]
            print(f"{name}: " + ", ".join(f"{v:.6f}" for v in out))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/mesonet"))
