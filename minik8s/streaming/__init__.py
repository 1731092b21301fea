"""Interactive streams (exec, attach, port-forward): the Kubernetes channel protocol over WebSocket.

`channels` owns the wire format (one byte of channel id, then data) and the error channel's
Status; the API server, the kubelet and the CLI each speak it through this one module.
"""
