"""The gateway: host + path routing from `DNS` objects and Ingresses to Services, served by nginx in
`kube-system/gateway`.

`routes` is the routing table both kinds share (one owner per host + path, the oldest claim wins);
`config` renders nginx.conf from it and the Services (a pure function); `controller` keeps that
rendering current from informers, serves it to the gateway pods' sidecars by long poll and writes
each DNS object's `status.paths` and each Ingress's `status.loadBalancer`, with `reporting` saying
conflicts once as events; `manifests` holds the gateway Deployment, Service and default IngressClass.
"""
