"""Training of the project's learned models; the product (CLI, app, API, pipeline, models) never imports it.

* ``python -m training.train_completer`` — the depth completers (:mod:`models.light_completer`, or Invisible
  Stitch's 5-channel ZoeDepth): supervised on procedural view pairs with true depth, teacher distillation on any
  image folder (Invisible Stitch stage 1), self-training on scenes the pipeline grew (stage 2), and SC-Depth's
  geometry-consistency loss between views with a known relative pose. Runs unchanged under ``accelerate launch``.
* ``python -m training.train_occlusion`` — the learned occlusion model (:mod:`models.occlusion`).
"""
