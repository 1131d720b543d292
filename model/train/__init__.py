"""Training plumbing around the model: the packed-row loader, SFT rendering and packing, validation of the data
against the model, the JSON run spec, the DeepSpeed entry point (``python -m model.train.main spec.json``) and the
launcher command line. Nothing here imports Prefect or ``flows/``."""
