"""dfbench: how robust are deepfake detectors to the processing real media goes through?"""

__version__ = "0.1.0"
