"""The released weight files as files: the variants and what each needs, where the files live and how they are
fetched, and reading them tensors-only (telling what a file holds when it is not what was asked for). Everything
that reads a weight file (speech features, image models, the networks) comes here, so none reaches up into
``models``."""
