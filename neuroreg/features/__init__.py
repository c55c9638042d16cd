"""Features of a network: extraction (hooks, batching, streaming), layer sweeps, projections and the voxel simulator."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.features.simulate import (simulate_voxels as simulate_voxels,
                                            expected_split_half_ceiling as expected_split_half_ceiling,
                                            gaussian_windows as gaussian_windows, DEFAULT_ROIS as DEFAULT_ROIS)
    from neuroreg.features.extraction import (extract as extract, Features as Features,
                                              resolve_layers as resolve_layers, EXTRACT_VERSION as EXTRACT_VERSION)
    from neuroreg.features.layers import LayerSweep as LayerSweep, sweep_layers as sweep_layers
    from neuroreg.features.projection import (srp_matrix as srp_matrix,
                                              sparse_random_projection as sparse_random_projection,
                                              SparseRandomProjection as SparseRandomProjection,
                                              jl_min_dim as jl_min_dim)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "simulate_voxels": "neuroreg.features.simulate",
    "expected_split_half_ceiling": "neuroreg.features.simulate",
    "gaussian_windows": "neuroreg.features.simulate",
    "DEFAULT_ROIS": "neuroreg.features.simulate",
    "extract": "neuroreg.features.extraction",
    "Features": "neuroreg.features.extraction",
    "resolve_layers": "neuroreg.features.extraction",
    "EXTRACT_VERSION": "neuroreg.features.extraction",
    "LayerSweep": "neuroreg.features.layers",
    "sweep_layers": "neuroreg.features.layers",
    "srp_matrix": "neuroreg.features.projection",
    "sparse_random_projection": "neuroreg.features.projection",
    "SparseRandomProjection": "neuroreg.features.projection",
    "jl_min_dim": "neuroreg.features.projection",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
