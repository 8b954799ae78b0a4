"""Our pods in real containers: the pod-spec to ``docker run`` translation and its driver."""
