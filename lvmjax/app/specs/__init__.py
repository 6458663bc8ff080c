"""The specs of the command line's models, one module per model family; `lvmjax.app.registry` lists them."""

__all__: list[str] = []  # the spec modules are imported by name (`lvmjax.app.specs.neural`)
