"""Human motion completion on HumanML3D (paper §4.2.3): the motion representation and its measures.

Modules (each imported on its own; this package re-exports nothing):

- ``skeleton``: the 22-joint t2m skeleton (joint names, kinematic chains, raw offsets, reference bone
  lengths, foot / facing joint indices, 20 fps).
- ``features``: the 263-feature layout (relative and CondMDI's absolute root), features -> joints,
  absolute <-> relative, joints -> features as HumanML3D's ``process_file``.
- ``geometry``: skating ratio, trajectory error and keyframe error as CondMDI/GMD evaluate them.
- ``frame_masks``: which frames are observed (first half, middle half, in-between, ...).
- ``word_vectors``, ``evaluator``, ``embedding_metrics``: the T2M evaluator's text input, the evaluator,
  and the text-to-motion measures on its embeddings.
- ``plot``, ``figures``: pictures of motions, the paper's Fig. 6.
- ``smoke``: stand-ins for a smoke run of the motion tables.
- ``procedural``: procedural human motions by forward kinematics (``dataset=synthetic_motion``,
  docs/synthetic_motion.md), the data of the embedded motion testbed.
"""
