"""c2am-wsss: weakly supervised semantic segmentation with contrastive class-agnostic activation maps."""

__version__ = "0.1.0"
