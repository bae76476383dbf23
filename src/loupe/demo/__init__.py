"""The main job: ``loupe demo`` proves on a CPU that high resolution pays off, at a known token/FLOP cost.

Pipeline (``run.py``): generate the fine-grained benchmark (:mod:`loupe.data.synth`) -> stage 1, pretrain the
shared vision encoder (``pretrain.py``; a stand-in for the CLIP checkpoint LLaVA starts from, applied to
every arm alike) -> stage 2 per method, a Loupe recipe run through the training engine -> exact-match
evaluation on a test split generated from another seed -> a table (Markdown/JSON) and a plot.
"""
