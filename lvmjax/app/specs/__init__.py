"""The specs of the command line's models, one module per model family; `lvmjax.app.registry` lists them."""
