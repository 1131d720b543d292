"""Synthetic reasoning data: problems with checkable answers, teacher backends, verification, rejection
sampling and the thinking / direct chat formats (docs/REASONING.md). Nothing here imports Prefect."""
