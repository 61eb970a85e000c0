"""Finding faces in frames and cutting them out as each detector's card asks."""

from dfbench.faces.crop import CropSpec, crop_box, crop_face, select_faces
from dfbench.faces.finder import Face, FaceFinder, MTCNNFinder, WholeFrameFinder, make_finder

__all__ = ["CropSpec", "Face", "FaceFinder", "MTCNNFinder", "WholeFrameFinder", "crop_box", "crop_face",
           "make_finder", "select_faces"]
