"""Kubernetes: a pipeline run becomes a Job (and a RayCluster when parallel).

Needs the ``k8s`` extra (the official ``kubernetes`` client).
"""
