"""The ``neuroreg`` command line: the entry point (:mod:`neuroreg.cli.main`) and one module per command.

Nothing here is imported at package import, so ``neuroreg --version`` stays fast; nothing else in neuroreg imports this package."""
