"""The accelerations of the paper's model (``inrgan.models``), each an exact rewrite tested against it.

- :mod:`.inr`: a sample's INR with the gains folded in and a level's first layer split;
- :mod:`.level`: one level evaluated channels-last, in chunks, with torch's or oneDNN's kernels (:mod:`.onednn`);
- :mod:`.render`: the fast render and the sample-parallel split of a batch (:mod:`.threads`);
- :mod:`.native`: C kernels for the affine heads and the modulated weights;
- :mod:`.features`: channels-last coordinate features, kept between inference calls.

They are chosen by :class:`RenderOptions`, passed in; ``Generator`` renders with the fastest by default.
"""

from .generator import FastSynthesisNetwork, Generator
from .options import RenderOptions

__all__ = ["FastSynthesisNetwork", "Generator", "RenderOptions"]
