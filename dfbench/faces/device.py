"""A sample's frames on the device: faces found there in batches and crops cut there (the device half of
gathering, `gather.cut_on_device`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dfbench.faces.crop import CropSpec, aligned_face, crop_rect
from dfbench.faces.face import Face
from dfbench.faces.resample import crop_uint8, exact_float32

if TYPE_CHECKING:
    import torch


class DeviceFinder(Protocol):
    """A finder that searches batches of frames already on a torch device (`FaceFinder` besides)."""

    name: str
    batch_frames: int       # frames searched per call

    def find_many(self, frames: torch.Tensor) -> list[list[Face]]:
        """Faces in each of B frames (B x H x W x 3 uint8, on the device), most confident first."""
        ...

    def where(self) -> str:
        """The device it runs on in this process."""
        ...

    def describe(self) -> dict[str, object]:
        ...


def is_device_finder(finder: object) -> bool:
    """Whether `finder` searches on a torch device (then workers only decode, and this process finds and cuts)."""
    return callable(getattr(finder, "find_many", None)) and callable(getattr(finder, "where", None))


class DeviceFrames:
    """Frames of one sample copied to `device` once, as uint8, in one B x H x W x 3 tensor per frame size.

    A frame is named by its position in the list it was built from (its handle)."""

    def __init__(self, images: Sequence[np.ndarray], device: str) -> None:
        import torch

        self.device = device
        self.slots: list[tuple[tuple[int, ...], int]] = []        # handle -> (frame size, row in its tensor)
        groups: dict[tuple[int, ...], list[np.ndarray]] = {}
        for image in images:
            group = groups.setdefault(image.shape, [])
            self.slots.append((image.shape, len(group)))
            group.append(image)
        # Each frame is copied to the device as it is and stacked there: no host-side stack (a copy of the whole
        # sample) and no pinning, which for a one-off copy of fresh memory costs more than it saves (ours).
        self.groups: dict[tuple[int, ...], torch.Tensor] = {}
        for shape, members in groups.items():
            if device == "cpu":
                self.groups[shape] = torch.from_numpy(np.stack(members))
            else:
                self.groups[shape] = torch.stack([torch.from_numpy(m).to(device) for m in members])

    def find(self, finder: DeviceFinder, handles: Sequence[int]) -> list[list[Face]]:
        """The faces of each frame in `handles`, searched in batches of frames of one size."""
        found: dict[int, list[Face]] = {}
        by_group: dict[tuple[int, ...], list[int]] = {}
        for handle in handles:
            by_group.setdefault(self.slots[handle][0], []).append(handle)
        for shape, members in by_group.items():
            step = finder.batch_frames
            for first in range(0, len(members), step):
                part = members[first:first + step]
                rows = [self.slots[h][1] for h in part]
                batch = self.groups[shape][rows[0]:rows[-1] + 1] if rows == list(range(rows[0], rows[-1] + 1)) \
                    else self.groups[shape][rows]
                found.update(zip(part, finder.find_many(batch), strict=True))
        return [found[h] for h in handles]

    def crop(self, pending: Sequence[tuple[object, Face]], spec: CropSpec) -> torch.Tensor:
        """The crops of (frame handle, face) pairs, in order: N x size x size x 3 uint8 on the device, cut with
        the crop spec's box rule and resized with its interpolation (`resample`). MesoNet's aligned crop of a
        face with landmarks is cut on the CPU (`crop.aligned_crop`, a spline rotation) and copied over."""
        import torch

        out = torch.empty((len(pending), spec.size, spec.size, 3), dtype=torch.uint8, device=self.device)
        by_group: dict[tuple[int, ...], list[tuple[int, int, tuple[int, int, int, int]]]] = {}
        for k, (handle, face) in enumerate(pending):
            shape, row = self.slots[int(handle)]       # type: ignore[call-overload]
            rect = crop_rect(face, shape[1], shape[0], spec)
            if rect is None:
                aligned = aligned_face(self.groups[shape][row].cpu().numpy(), face, spec)
                out[k] = torch.from_numpy(aligned).to(self.device)
            else:
                by_group.setdefault(shape, []).append((k, row, rect))
        with exact_float32():
            for shape, members in by_group.items():
                cut = crop_uint8(self.groups[shape], [m[1] for m in members], [m[2] for m in members], spec.size,
                                 spec.interpolation)
                out[torch.as_tensor([m[0] for m in members], device=self.device)] = cut
        return out
