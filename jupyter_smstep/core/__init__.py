"""The pure core: from recorded cells to a validated pipeline graph.

``analysis`` (one cell's reads, writes, mutations, imports) → ``registry`` (cells
in notebook order) → ``graph`` (links, parameters, captures, outputs,
validation; its model in ``model``, ``--when`` in ``guards``, ordinary cells computing from step outputs in
``taint``), with ``settings`` (precedence and checks), ``parameters``
(``NAME=VALUE`` and the one coercion), ``states`` (the typed kinds), ``codegen`` (the function each step
becomes), ``keys`` (content keys), ``studio`` (the kernel image) and the modules ARCHITECTURE.md lists.

Nothing here imports IPython, sagemaker, boto3 or ipywidgets: only the
standard library, PyYAML, ``jupyter_smstep.errors`` and ``core`` itself
(``tests/test_architecture.py`` enforces it).
"""
