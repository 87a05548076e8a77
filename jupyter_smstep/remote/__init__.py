"""The real service: ``submit`` (upsert and start) and ``monitor`` (follow, stop, retry).

Everything goes through boto3 and the SDK as the user's environment configures
them (``AWS_ENDPOINT_URL``, profiles, region). Nothing here prints: the text
views live in :mod:`jupyter_smstep.text`, the panel renders its own.
"""
