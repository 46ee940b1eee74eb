"""Dataset fingerprint (``dataset_fingerprint.json``): spacings, shapes, intensities, Nyúl landmarks, tumour."""
from synthunet.fingerprint.extractor import FINGERPRINT_FILE, compute_fingerprint, extract_fingerprint

__all__ = ["FINGERPRINT_FILE", "compute_fingerprint", "extract_fingerprint"]
