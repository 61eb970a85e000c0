"""Finding faces in frames and cutting them out as each detector's card asks."""

from dfbench.faces.crop import CropSpec, Owner, SampleCrops, crop_box, crop_face, no_crops, select_faces
from dfbench.faces.finder import Face, FaceFinder, MTCNNFinder, WholeFrameFinder, make_finder

__all__ = ["CropSpec", "Face", "FaceFinder", "MTCNNFinder", "Owner", "SampleCrops", "WholeFrameFinder", "crop_box",
           "crop_face", "make_finder", "no_crops", "select_faces"]
