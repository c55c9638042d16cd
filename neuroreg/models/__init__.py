"""Brain-constrained models, registered in timm's registry on import."""

from neuroreg.models.zoo import area_layers, create_model, list_models

__all__ = ["create_model", "list_models", "area_layers"]
