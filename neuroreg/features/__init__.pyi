"""Public names of ``neuroreg.features`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.features.simulate import simulate_voxels as simulate_voxels
from neuroreg.features.simulate import expected_split_half_ceiling as expected_split_half_ceiling
from neuroreg.features.simulate import gaussian_windows as gaussian_windows, DEFAULT_ROIS as DEFAULT_ROIS
from neuroreg.features.extraction import extract as extract, Features as Features, resolve_layers as resolve_layers
from neuroreg.features.extraction import EXTRACT_VERSION as EXTRACT_VERSION
from neuroreg.features.layers import LayerSweep as LayerSweep, sweep_layers as sweep_layers
from neuroreg.features.projection import srp_matrix as srp_matrix, sparse_random_projection as sparse_random_projection
from neuroreg.features.projection import SparseRandomProjection as SparseRandomProjection, jl_min_dim as jl_min_dim
