"""Complete safety verification: properties, VNN-LIB, the verification engine, DLV-style region search."""

from .engine import verify
from .property import Property
from .region import RegionResult, verify_region
from .result import VerifyResult, counterexample_text

__all__ = ["Property", "verify", "VerifyResult", "verify_region", "RegionResult", "counterexample_text"]
