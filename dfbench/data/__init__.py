"""Test sets: manifests, dataset loaders and the offline demo set."""

from dfbench.data.manifest import Dataset, validate
from dfbench.data.sources import load_dataset, load_folder, load_manifest, scored_samples

__all__ = ["Dataset", "load_dataset", "load_folder", "load_manifest", "scored_samples", "validate"]
