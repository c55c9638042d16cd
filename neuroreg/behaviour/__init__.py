"""Behaviour: the read-out of choice probabilities and the behavioural metrics (I1n, I2n, error consistency).

>>> probs = nr.behaviour.choice_probabilities(model, fitting_images, fitting_labels, images, stimulus_ids)
>>> nr.behaviour.i2n(probs, trials)        # Brain-Score's Rajalingham2018-i2n, per split and averaged
"""

from neuroreg._utils.lazy import exports_from_stub as _exports_from_stub, lazy_exports as _lazy_exports

# public name -> the module that defines it, written once in __init__.pyi; imported on first use
_EXPORTS = _exports_from_stub(__name__, __file__)
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
