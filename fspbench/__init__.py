"""fspbench: a reproducibility benchmark for FSP knowledge distillation (Yim et al., CVPR 2017)."""

__version__ = "0.1.0"
