"""One file per Inception block; each block's docstring names the paper's figure or table row.

| file | block | paper |
|---|---|---|
| `inception_module.py` | `InceptionModule`, `NaiveInceptionModule` | GoogLeNet Figure 2b, 2a |
| `googlenet_aux.py` | `GoogLeNetAuxHead` | GoogLeNet Section 5 / torchvision `InceptionAux` |
| `factorized_5x5.py` | `Factorized5x5Module` | Rethinking Figure 5 (Mixed_5b..5d) |
| `asymmetric_7x7.py` | `Asymmetric7x7Module` | Rethinking Figure 6, n=7 (Mixed_6b..6e) |
| `expanded_8x8.py` | `ExpandedFilterBankModule` | Rethinking Figure 7 (Mixed_7b, 7c) |
| `grid_reduction.py` | `GridReduction35to17`, `...17to8` | Rethinking Fig. 10 (Mixed_6a, 7a) |
| `inception_v3_aux.py` | `InceptionV3AuxHead` | Rethinking Section 4, Table 3 "BN-auxiliary" |
| `bn_inception_module.py` | `BNInceptionModule` | BN-Inception Figure 5: 3a, 3b, 4a-4d, 5a, 5b |
| `bn_inception_reduction.py` | `BNInceptionReduction` | BN-Inception Figure 5: 3c, 4e (stride 2) |
| `separable_conv.py` | `SeparableConv` | BN-Inception's first row as slim's checkpoint has it |
"""

from inception_jax.blocks.asymmetric_7x7 import Asymmetric7x7Module
from inception_jax.blocks.bn_inception_module import BNInceptionModule
from inception_jax.blocks.bn_inception_reduction import BNInceptionReduction
from inception_jax.blocks.expanded_8x8 import ExpandedFilterBankModule
from inception_jax.blocks.factorized_5x5 import Factorized5x5Module
from inception_jax.blocks.googlenet_aux import GoogLeNetAuxHead
from inception_jax.blocks.grid_reduction import GridReduction17to8, GridReduction35to17
from inception_jax.blocks.inception_module import InceptionModule, NaiveInceptionModule
from inception_jax.blocks.inception_v3_aux import InceptionV3AuxHead
from inception_jax.blocks.separable_conv import SeparableConv

__all__ = [
  "Asymmetric7x7Module",
  "BNInceptionModule",
  "BNInceptionReduction",
  "ExpandedFilterBankModule",
  "Factorized5x5Module",
  "GoogLeNetAuxHead",
  "GridReduction17to8",
  "GridReduction35to17",
  "InceptionModule",
  "NaiveInceptionModule",
  "InceptionV3AuxHead",
  "SeparableConv",
]
