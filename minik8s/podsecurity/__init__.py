"""Pod Security admission: Kubernetes' Pod Security Standards (privileged / baseline / restricted).

- :mod:`.checks`: the standard's checks on a pod spec, each naming the field it refuses;
- :mod:`.admission`: the validating plug-in choosing the level from the namespace's labels.
"""
