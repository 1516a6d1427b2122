"""The from-scratch world: small nets on sklearn's bundled 8x8 digits, evolved weight by weight.

M2N2's paper evolved MNIST classifiers from raw weights; this package is that testbed, kept
apart from the merge engine. Imports go one way, each module uses only those above it:

- ``data``: the fixed seeded train / validation / test splits (arrays, and items for the
  ``digits`` fitness task);
- ``net``: the 64 -> hidden (tanh) -> 10 MLP as a flat weight vector: its layout, its
  Xavier-style initialization, and a numpy forward pass that scores thousands of candidates
  in seconds (the benchmark's evaluator);
- ``torch_net``: the same net as a torch module, for the torch backend;
- ``space``: the ``kind: weights`` search space (genome = the flat vector);
- ``evaluator``: scores ``kind: weights`` recipes inside ``evomerge run`` (experiments/m2n2_digits.yaml).
"""
