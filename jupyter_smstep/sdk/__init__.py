"""The only package that imports the SageMaker SDK (v2 or v3).

``compat`` (the v2/v3 module table and the classes used, loaded once),
``session`` (a ``PipelineSession`` for the user's environment or the local
S3), ``stepargs`` (a step's ``@step`` keywords as one neutral spec, rendered to
SDK objects for the build and to source for the export), ``capture``
(picklability and sizes of captured values) and ``build`` (graph → ``Pipeline``).

Importing this package does not import sagemaker (seconds): :func:`load` does,
when a pipeline is first built.
"""

from jupyter_smstep.sdk.compat import Sdk, installed_version, load
from jupyter_smstep.sdk.session import execution_role, make_session

__all__ = ["Sdk", "execution_role", "installed_version", "load", "make_session"]
